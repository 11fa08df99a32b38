-- Sessions (one per password login; `sid` in access tokens) and their
-- rotating refresh tokens, stored only as SHA-256 hashes.

create table sessions (
    id           text primary key not null,           -- UUIDv7, the `sid` claim
    user_id      text not null references users(id) on delete cascade,
    scope        text not null,                       -- granted at login; refreshes may narrow, never widen
    user_agent   text,
    ip           text,
    created_at   integer not null,
    last_used_at integer not null,
    expires_at   integer not null,                    -- expiry of its newest refresh token
    revoked_at   integer
);
create index sessions_user on sessions (user_id);
create index sessions_revoked on sessions (revoked_at);

create table refresh_tokens (
    hash           blob primary key not null,         -- SHA-256 of the token
    session_id     text not null references sessions(id) on delete cascade,
    created_at     integer not null,
    expires_at     integer not null,
    used_at        integer,                           -- set when rotated
    successor_hash blob                               -- the token it was rotated into
);
create index refresh_tokens_session on refresh_tokens (session_id);

-- Server-side secrets that are not signing keys (the refresh-successor key).
create table secrets (
    name       text primary key not null,
    value      blob not null,
    created_at integer not null
);
