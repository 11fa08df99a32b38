-- warden's PostgreSQL schema: the same tables as the SQLite backend, in
-- PostgreSQL types. Append-only: once released, a migration is never edited.

create table users (
    id                 text primary key,            -- UUIDv7, text form
    username           text not null,
    username_folded    text not null unique,
    email              text not null,
    email_folded       text not null unique,
    full_name          text,
    password_hash      text not null,
    roles              text not null,               -- JSON array of role names
    disabled           boolean not null default false,
    tokens_valid_after bigint not null,
    security_version   bigint not null default 0,
    created_at         bigint not null,
    updated_at         bigint not null
);

create table signing_keys (
    kid         text primary key,
    algorithm   text not null,
    private_key bytea not null,
    created_at  bigint not null,
    retired_at  bigint
);

create table sessions (
    id           text primary key,
    user_id      text not null references users(id) on delete cascade,
    scope        text not null,
    user_agent   text,
    ip           text,
    created_at   bigint not null,
    last_used_at bigint not null,
    expires_at   bigint not null,
    revoked_at   bigint
);
create index sessions_user on sessions (user_id);
create index sessions_revoked on sessions (revoked_at);

create table refresh_tokens (
    hash           bytea primary key,
    session_id     text not null references sessions(id) on delete cascade,
    created_at     bigint not null,
    expires_at     bigint not null,
    used_at        bigint,
    successor_hash bytea
);
create index refresh_tokens_session on refresh_tokens (session_id);

create table secrets (
    name       text primary key,
    value      bytea not null,
    created_at bigint not null
);

-- Every instance keeps per-user and per-session state in memory. These
-- triggers tell all of them, through LISTEN/NOTIFY, that something they
-- cache changed, so a logout, password change, disable or key rotation made
-- through one instance takes effect on every instance at once.
create function warden_notify_change() returns trigger language plpgsql as $$
begin
    perform pg_notify('warden_changes', tg_table_name);
    return null;
end
$$;

create trigger users_changed after insert or update or delete on users
    for each statement execute function warden_notify_change();
create trigger sessions_revoked after update of revoked_at on sessions
    for each statement execute function warden_notify_change();
create trigger signing_keys_changed after insert or update or delete on signing_keys
    for each statement execute function warden_notify_change();
