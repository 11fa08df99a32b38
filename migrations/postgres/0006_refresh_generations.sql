-- Refresh tokens move into their session's row: the hash of the current
-- token, its generation, when it was issued, and the hash of the previous
-- one (for the grace retry). Rotation rewrites that one row instead of
-- inserting a row per token, so storage no longer grows with refreshes.
-- Reuse of an older generation is recognised by the token's own tag (see
-- src/sessions.rs), not by a stored row.
alter table sessions add column refresh_hash bytea;
alter table sessions add column refresh_generation bigint not null default 0;
alter table sessions add column refresh_issued_at bigint not null default 0;
alter table sessions add column previous_refresh_hash bytea;

-- A session's unused token becomes its generation 0.
update sessions set
    refresh_hash = (select r.hash from refresh_tokens r
                    where r.session_id = sessions.id and r.used_at is null
                    order by r.created_at desc limit 1),
    refresh_issued_at = coalesce((select max(r.created_at) from refresh_tokens r
                                  where r.session_id = sessions.id and r.used_at is null),
                                 created_at);

-- Tokens issued before this migration keep working (and their reuse is
-- still detected) through this table; nothing is inserted into it any
-- more, and the purge empties it as they expire.
alter table refresh_tokens rename to legacy_refresh_tokens;

-- Newest-first keyset pages of a user's sessions.
create index sessions_user_id on sessions (user_id, id);
-- The audit purge deletes by age.
create index audit_events_created on audit_events (created_at);
