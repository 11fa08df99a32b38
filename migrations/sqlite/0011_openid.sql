-- OpenID Connect (issue 18): what an id token and a back-channel logout
-- need to know about a session, and a durable outbox for side effects.

-- A session opened through a client from a browser session (the code
-- flow) names that browser session: its id is the OpenID `sid` of the
-- id tokens and logout tokens, and ending it ends this session too.
alter table sessions add column parent_session text;
-- When and how the user authenticated (OpenID `auth_time`, RFC 8176
-- `amr` as a space-separated list), kept for the id tokens of refreshes.
alter table sessions add column auth_time integer;
alter table sessions add column amr text;
create index sessions_parent on sessions (parent_session);

-- Side effects committed with the change that causes them (a logout token
-- to a client, later mail), carried out by a background worker that
-- claims rows with a lease, retries with backoff, and marks them done.
-- With several instances each row is claimed by one at a time.
create table outbox (
    id           text primary key not null,     -- UUIDv7
    kind         text not null,                 -- 'backchannel_logout', ...
    payload      text not null,                 -- JSON: what the worker needs
    created_at   integer not null,
    due_at       integer not null,             -- next attempt, Unix seconds
    attempts     integer not null default 0,
    locked_until integer,                      -- a worker's lease
    last_error   text,
    done_at      integer,                      -- delivered or given up
    failed       integer not null default 0
);
create index outbox_due on outbox (due_at) where done_at is null;
