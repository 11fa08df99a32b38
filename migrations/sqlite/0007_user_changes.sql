-- A log of user rows updated or deleted, stamped with the database's clock,
-- so a running server reloads only the users that changed instead of the
-- whole table, and learns of deletions made elsewhere (the CLI, another
-- server) without keeping every user id in memory. Rows older than a day
-- are purged; a server that was cut off longer than that reloads in full.
create table user_changes (
    user_id    text not null,
    deleted    integer not null,
    changed_at integer not null                     -- unix seconds, database clock
);
create index user_changes_changed_at on user_changes (changed_at);

create trigger users_logged_update after update on users
begin
    insert into user_changes (user_id, deleted, changed_at)
    values (new.id, 0, cast(strftime('%s', 'now') as integer));
end;
create trigger users_logged_delete after delete on users
begin
    insert into user_changes (user_id, deleted, changed_at)
    values (old.id, 1, cast(strftime('%s', 'now') as integer));
end;
