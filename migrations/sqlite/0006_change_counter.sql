-- What running servers must reload: users changed or deleted, sessions
-- ended, signing keys added or retired. Triggers bump one counter that every
-- server polls (the SQLite counterpart of PostgreSQL's NOTIFY triggers).
-- Logins and refresh-token rotation write no row these triggers watch, so a
-- busy /token does not make every server reload its users.
create table change_counter (
    id  integer primary key check (id = 1),
    seq integer not null
);
insert into change_counter (id, seq) values (1, 0);

create trigger users_updated after update on users
begin update change_counter set seq = seq + 1 where id = 1; end;
create trigger users_deleted after delete on users
begin update change_counter set seq = seq + 1 where id = 1; end;
create trigger sessions_ended after update of revoked_at on sessions
when new.revoked_at is not null and old.revoked_at is null
begin update change_counter set seq = seq + 1 where id = 1; end;
create trigger signing_keys_inserted after insert on signing_keys
begin update change_counter set seq = seq + 1 where id = 1; end;
create trigger signing_keys_updated after update on signing_keys
begin update change_counter set seq = seq + 1 where id = 1; end;
create trigger signing_keys_deleted after delete on signing_keys
begin update change_counter set seq = seq + 1 where id = 1; end;
