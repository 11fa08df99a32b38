-- Security events: logins, throttling, refresh reuse, logouts, password,
-- role and account changes, key rotations. Never tokens or passwords.
create table audit_events (
    id         text primary key,             -- UUIDv7: time-ordered, the cursor
    type       text not null,
    user_id    text,
    session_id text,
    ip         text,
    detail     text,                         -- JSON object with event specifics
    created_at bigint not null
);
create index audit_events_user on audit_events (user_id, id);
create index audit_events_type on audit_events (type, id);
