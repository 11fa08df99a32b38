-- The authorization server (issue 17): registered OAuth clients, the
-- consents users gave them, authorization codes, and which client (if any)
-- a session was issued through.

create table clients (
    id                           text primary key not null,  -- UUIDv7, the client_id
    name                         text not null,
    public                       integer not null,           -- no secret; PKCE only
    first_party                  integer not null,           -- skips the consent screen
    secret_hash                  blob,                       -- SHA-256 of the secret (confidential only)
    secret_created_at            integer,
    redirect_uris                text not null,              -- JSON array, exactly as registered
    post_logout_redirect_uris    text not null,              -- JSON array
    backchannel_logout_uri       text,
    grant_types                  text not null,              -- JSON array
    scopes                       text not null,              -- JSON array: what the client may ever obtain
    id_token_signed_response_alg text not null,
    created_at                   integer not null,
    updated_at                   integer not null
);

-- Per (user, client): the scopes the user agreed to. Withdrawing it ends
-- that client's sessions of the user.
create table consents (
    user_id    text not null references users(id) on delete cascade,
    client_id  text not null references clients(id) on delete cascade,
    scopes     text not null,                                -- JSON array
    granted_at integer not null,
    primary key (user_id, client_id)
);
create index consents_client on consents (client_id);

-- Authorization codes, stored only as SHA-256 hashes; single-use. A used
-- code keeps its row (until it expires and the purge takes it) so that a
-- replay is recognised and ends the session its first use opened.
create table authorization_codes (
    hash             blob primary key not null,
    client_id        text not null references clients(id) on delete cascade,
    user_id          text not null references users(id) on delete cascade,
    browser_session  text not null,                          -- the warden_session it was issued in
    redirect_uri     text,                                   -- as sent to /authorize; null if omitted
    code_challenge   text not null,                          -- PKCE S256
    scope            text not null,
    nonce            text,
    auth_time        integer not null,
    created_at       integer not null,
    expires_at       integer not null,
    used_at          integer,
    session_id       text                                    -- the session its redemption opened
);
create index authorization_codes_expires on authorization_codes (expires_at);

-- A session issued through a client (code flow, refresh) names it, so that
-- deleting the client or withdrawing consent ends it. No foreign key: a
-- deleted client's sessions are revoked, not deleted, so every instance's
-- token gate learns of the revocation.
alter table sessions add column client_id text;
-- The browser session of the hosted pages (the warden_session cookie).
alter table sessions add column browser integer not null default 0;
create index sessions_client on sessions (client_id);
