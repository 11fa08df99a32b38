-- A log of user rows updated or deleted, stamped with the database's clock,
-- so a running server reloads only the users that changed instead of the
-- whole table, and learns of deletions made elsewhere (the CLI, another
-- instance) without keeping every user id in memory. Rows older than a day
-- are purged; an instance that was cut off longer than that reloads in full.
-- clock_timestamp(), not now(): the stamp should be as close to the commit
-- as it can be, since readers look back a fixed margin from their last read.
create table user_changes (
    user_id    text not null,
    deleted    boolean not null,
    changed_at bigint not null
);
create index user_changes_changed_at on user_changes (changed_at);

create function warden_log_user_change() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        insert into user_changes (user_id, deleted, changed_at)
        values (old.id, true, extract(epoch from clock_timestamp())::bigint);
    else
        insert into user_changes (user_id, deleted, changed_at)
        values (new.id, false, extract(epoch from clock_timestamp())::bigint);
    end if;
    return null;
end
$$;

create trigger users_logged after update or delete on users
    for each row execute function warden_log_user_change();
