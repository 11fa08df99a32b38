-- Bumped by every update of a user row, so caches can tell a stale copy
-- from a current one.
alter table users add column revision bigint not null default 0;
