-- Every change of a user's password, roles or disabled flag bumps this
-- counter. The in-memory token gate of each server process keeps the
-- version it has seen, so a periodic resync can never roll a newer local
-- change back to an older snapshot.
alter table users add column security_version integer not null default 0;
