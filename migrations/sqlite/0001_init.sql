-- warden's SQLite schema. Append-only: once released, a migration is never
-- edited; changes go in a new file.

create table users (
    id                 text primary key not null,   -- UUIDv7, text form
    username           text not null,               -- as given
    username_folded    text not null unique,        -- lowercase, for uniqueness and login
    email              text not null,
    email_folded       text not null unique,
    full_name          text,
    password_hash      text not null,               -- argon2id PHC string
    roles              text not null,               -- JSON array of role names
    disabled           integer not null default 0,
    tokens_valid_after integer not null,            -- unix seconds; tokens with iat < this fail
    created_at         integer not null,            -- unix seconds
    updated_at         integer not null
);

create table signing_keys (
    kid         text primary key not null,
    algorithm   text not null,                      -- EdDSA, ES256, RS256, HS256
    private_key blob not null,                      -- PKCS#8 PEM, or the raw HMAC secret
    created_at  integer not null,
    retired_at  integer                             -- null while it signs new tokens
);
