//! The embedded backend: one SQLite file in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use uuid::Uuid;

use super::{
    ADMIN_ROLES_LIKE, AuditQuery, AuditRecord, PURGE_BATCH, PasswordSet, PresentedRefresh,
    RefreshLifetimes, RefreshOutcome, RefreshRecord, RefreshState, RefreshStep, SessionOpened,
    SessionRecord, SigningKeyRecord, Store, StoreError, StoreResult, UniqueField, UserChange,
    UserChangeLog, UserChanges, UserQuery, UserRecord, UserSecurity, UserUpdate, refresh_step,
    refreshed_expiry,
};
use crate::domain::profile::fold;

const USER_COLUMNS: &str = "id, username, email, full_name, password_hash, roles, disabled, \
                            tokens_valid_after, security_version, revision, created_at, updated_at";

pub struct SqliteStore {
    pool: SqlitePool,
    /// A connection of its own for polling the change counter ten times a
    /// second, so the poll never waits behind the pool's writers.
    watcher: tokio::sync::Mutex<Option<sqlx::SqliteConnection>>,
    options: SqliteConnectOptions,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            // Writers wait for each other instead of failing with SQLITE_BUSY.
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pool,
            watcher: tokio::sync::Mutex::new(None),
            options,
        })
    }
}

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
    let id: String = row.try_get("id")?;
    let roles: String = row.try_get("roles")?;
    Ok(UserRecord {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("users.id: {e}")))?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        full_name: row.try_get("full_name")?,
        password_hash: row.try_get("password_hash")?,
        roles: serde_json::from_str(&roles)
            .map_err(|e| StoreError::Corrupt(format!("users.roles: {e}")))?,
        disabled: row.try_get("disabled")?,
        tokens_valid_after: row.try_get("tokens_valid_after")?,
        security_version: row.try_get("security_version")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const SESSION_COLUMNS: &str =
    "id, user_id, scope, user_agent, ip, created_at, last_used_at, expires_at, revoked_at";

fn uuid_column(row: &SqliteRow, column: &str) -> StoreResult<Uuid> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: uuid_column(row, "id")?,
        user_id: uuid_column(row, "user_id")?,
        scope: row.try_get("scope")?,
        user_agent: row.try_get("user_agent")?,
        ip: row.try_get("ip")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const REFRESH_COLUMNS: &str =
    "refresh_generation, refresh_hash, refresh_issued_at, previous_refresh_hash";

fn refresh_record_from_row(row: &SqliteRow) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        session: session_from_row(row)?,
        refresh: RefreshState {
            generation: row.try_get("refresh_generation")?,
            hash: row.try_get("refresh_hash")?,
            issued_at: row.try_get("refresh_issued_at")?,
            previous_hash: row.try_get("previous_refresh_hash")?,
        },
    })
}

/// Runs `delete from {table} where {key} in (select {key} ... where
/// {condition} limit N)` until fewer than N rows go: each batch is its own
/// short write, so other writers get the lock in between.
async fn delete_in_batches(
    pool: &SqlitePool,
    table: &str,
    key: &str,
    condition: &str,
    bound: i64,
) -> StoreResult<u64> {
    let sql = format!(
        "delete from {table} where {key} in \
         (select {key} from {table} where {condition} limit $2)"
    );
    let mut total = 0;
    loop {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(bound)
            .bind(PURGE_BATCH)
            .execute(pool)
            .await?
            .rows_affected();
        total += done;
        if done < PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Turns a unique-constraint violation into the field it concerns.
fn map_unique(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        let msg = db.message();
        if msg.contains("username_folded") {
            return StoreError::Conflict(UniqueField::Username);
        }
        if msg.contains("email_folded") {
            return StoreError::Conflict(UniqueField::Email);
        }
    }
    StoreError::Database(err)
}

/// Escapes `%`, `_` and `\` for a `like ... escape '\'` pattern.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A transaction that takes SQLite's write lock at once: one that read
/// first and wrote later could fail with `SQLITE_BUSY` (which the busy
/// timeout does not retry) when another connection wrote in between.
const BEGIN_WRITE: &str = "begin immediate";

/// Whether user `id` is enabled and has the `admin` role.
async fn is_enabled_admin(conn: &mut SqliteConnection, id: &str) -> StoreResult<bool> {
    let admin: Option<bool> =
        sqlx::query_scalar("select not disabled and roles like $2 from users where id = $1")
            .bind(id)
            .bind(ADMIN_ROLES_LIKE)
            .fetch_optional(conn)
            .await?;
    Ok(admin == Some(true))
}

async fn enabled_admins(conn: &mut SqliteConnection) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from users where not disabled and roles like $1")
            .bind(ADMIN_ROLES_LIKE)
            .fetch_one(conn)
            .await?,
    )
}

async fn insert_audit_on(conn: &mut SqliteConnection, e: &AuditRecord) -> StoreResult<()> {
    sqlx::query(
        "insert into audit_events (id, type, user_id, session_id, ip, detail, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.id.to_string())
    .bind(&e.kind)
    .bind(e.user_id.map(|u| u.to_string()))
    .bind(e.session_id.map(|u| u.to_string()))
    .bind(&e.ip)
    .bind(&e.detail)
    .bind(e.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn revoke_user_sessions_on(
    conn: &mut SqliteConnection,
    user: &str,
    now: i64,
) -> StoreResult<Vec<Uuid>> {
    let rows = sqlx::query(
        "update sessions set revoked_at = $2 where user_id = $1 and revoked_at is null \
         returning id",
    )
    .bind(user)
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| uuid_column(r, "id")).collect()
}

fn roles_json(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_user(&self, u: &UserRecord) -> StoreResult<()> {
        sqlx::query(
            "insert into users (id, username, username_folded, email, email_folded, full_name, \
             password_hash, roles, disabled, tokens_valid_after, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(u.id.to_string())
        .bind(&u.username)
        .bind(fold(&u.username))
        .bind(&u.email)
        .bind(fold(&u.email))
        .bind(&u.full_name)
        .bind(&u.password_hash)
        .bind(roles_json(&u.roles))
        .bind(u.disabled)
        .bind(u.tokens_valid_after)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.pool)
        .await
        .map_err(map_unique)?;
        Ok(())
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let sql = format!("select {USER_COLUMNS} from users where id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>> {
        let folded = crate::domain::profile::fold_login(login);
        let sql = format!(
            "select {USER_COLUMNS} from users where username_folded = $1 or email_folded = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(folded)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn update_user(
        &self,
        id: Uuid,
        c: &UserChanges,
        valid_after: i64,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<Option<UserUpdate>> {
        let (set_full_name, full_name) = match &c.full_name {
            Some(v) => (true, v.clone()),
            None => (false, None),
        };
        let id_text = id.to_string();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let was_admin = c.is_security_change() && is_enabled_admin(&mut tx, &id_text).await?;
        let sql = format!(
            "update users set \
               username = coalesce($2, username), \
               username_folded = coalesce($3, username_folded), \
               email = coalesce($4, email), \
               email_folded = coalesce($5, email_folded), \
               full_name = case when $6 then $7 else full_name end, \
               roles = coalesce($8, roles), \
               disabled = coalesce($9, disabled), \
               tokens_valid_after = case when $10 then $11 else tokens_valid_after end, \
               security_version = security_version + case when $10 then 1 else 0 end, \
               revision = revision + 1, \
               updated_at = $12 \
             where id = $1 returning {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&id_text)
            .bind(&c.username)
            .bind(c.username.as_deref().map(fold))
            .bind(&c.email)
            .bind(c.email.as_deref().map(fold))
            .bind(set_full_name)
            .bind(full_name)
            .bind(c.roles.as_deref().map(roles_json))
            .bind(c.disabled)
            .bind(c.is_security_change())
            .bind(valid_after)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_unique)?;
        let Some(row) = row else { return Ok(None) };
        let user = user_from_row(&row)?;
        if was_admin && enabled_admins(&mut tx).await? == 0 {
            return Err(StoreError::LastAdmin);
        }
        let mut ended_sessions = Vec::new();
        if c.is_security_change() {
            ended_sessions = revoke_user_sessions_on(&mut tx, &id_text, now).await?;
        }
        if let Some(audit) = audit {
            insert_audit_on(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(Some(UserUpdate {
            user,
            ended_sessions,
        }))
    }

    async fn set_password(
        &self,
        id: Uuid,
        password_hash: &str,
        expected_version: i64,
        valid_after: i64,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<PasswordSet> {
        let id_text = id.to_string();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let sql = format!(
            "update users set password_hash = $2, tokens_valid_after = $3, \
             security_version = security_version + 1, revision = revision + 1, updated_at = $4 \
             where id = $1 and security_version = $5 returning {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&id_text)
            .bind(password_hash)
            .bind(valid_after)
            .bind(now)
            .bind(expected_version)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            let exists: Option<i64> = sqlx::query_scalar("select 1 from users where id = $1")
                .bind(&id_text)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(if exists.is_some() {
                PasswordSet::Stale
            } else {
                PasswordSet::Missing
            });
        };
        let user = user_from_row(&row)?;
        let ended_sessions = revoke_user_sessions_on(&mut tx, &id_text, now).await?;
        insert_audit_on(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(PasswordSet::Changed(Box::new(UserUpdate {
            user,
            ended_sessions,
        })))
    }

    async fn delete_user(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let id_text = id.to_string();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let was_admin = is_enabled_admin(&mut tx, &id_text).await?;
        let done = sqlx::query("delete from users where id = $1")
            .bind(&id_text)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if was_admin && enabled_admins(&mut tx).await? == 0 {
            return Err(StoreError::LastAdmin);
        }
        insert_audit_on(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("select {USER_COLUMNS} from users order by id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn query_users(&self, q: &UserQuery) -> StoreResult<Vec<UserRecord>> {
        // Keyset pagination on the primary key: rows inserted while a client
        // pages through get larger ids (UUIDv7), so no page repeats or skips
        // a row that existed when the walk began.
        let pattern = q
            .prefix
            .as_deref()
            .map(|p| format!("{}%", escape_like(&fold(p))));
        let sql = format!(
            "select {USER_COLUMNS} from users \
             where ($1 is null or id > $1) \
               and ($2 is null or username_folded like $2 escape '\\' or email_folded like $2 escape '\\') \
             order by id limit $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.after.map(|id| id.to_string()))
            .bind(pattern)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn users_to_watch(&self, since: i64) -> StoreResult<Vec<UserSecurity>> {
        // Row by row: the scan visits every user, and only a few match.
        let mut rows = sqlx::query(
            "select id, tokens_valid_after, disabled, security_version, revision from users \
             where disabled or tokens_valid_after >= $1",
        )
        .bind(since)
        .fetch(&self.pool);
        let mut found = Vec::new();
        while let Some(row) = rows.try_next().await? {
            found.push(UserSecurity {
                id: uuid_column(&row, "id")?,
                tokens_valid_after: row.try_get("tokens_valid_after")?,
                disabled: row.try_get("disabled")?,
                security_version: row.try_get("security_version")?,
                revision: row.try_get("revision")?,
            });
        }
        Ok(found)
    }

    async fn user_changes(&self, since: i64) -> StoreResult<UserChangeLog> {
        let read_at: i64 = sqlx::query_scalar("select cast(strftime('%s', 'now') as integer)")
            .fetch_one(&self.pool)
            .await?;
        // `u.id` is the key of `u`, so its other columns may be selected
        // ungrouped; it is null once the user is deleted.
        let rows = sqlx::query(
            "select c.user_id, max(c.changed_at) as changed_at, u.id, u.tokens_valid_after, \
             u.disabled, u.security_version, u.revision \
             from user_changes c left join users u on u.id = c.user_id \
             where c.changed_at >= $1 group by c.user_id, u.id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let changes = rows
            .iter()
            .map(|row| {
                let present: Option<String> = row.try_get("id")?;
                let id = uuid_column(row, "user_id")?;
                let current = match present {
                    None => None,
                    Some(_) => Some(UserSecurity {
                        id,
                        tokens_valid_after: row.try_get("tokens_valid_after")?,
                        disabled: row.try_get("disabled")?,
                        security_version: row.try_get("security_version")?,
                        revision: row.try_get("revision")?,
                    }),
                };
                Ok(UserChange {
                    id,
                    current,
                    changed_at: row.try_get("changed_at")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok(UserChangeLog { read_at, changes })
    }

    async fn change_marker(&self) -> StoreResult<i64> {
        use sqlx::ConnectOptions;
        let mut guard = self.watcher.lock().await;
        if guard.is_none() {
            *guard = Some(self.options.connect().await?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(StoreError::Corrupt("watcher connection missing".to_owned()));
        };
        // Bumped by triggers (migration 0006) on the writes other servers
        // must see — not by logins, unlike `pragma data_version`.
        match sqlx::query_scalar::<_, i64>("select seq from change_counter where id = 1")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(v) => Ok(v),
            Err(e) => {
                // Reconnect on the next call.
                *guard = None;
                Err(e.into())
            }
        }
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "select kid, algorithm, private_key, created_at, retired_at from signing_keys \
             order by created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid")?,
                    algorithm: row.try_get("algorithm")?,
                    private_key: row.try_get("private_key")?,
                    created_at: row.try_get("created_at")?,
                    retired_at: row.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn insert_first_signing_key(&self, k: &SigningKeyRecord) -> StoreResult<bool> {
        // One statement: SQLite runs writers one at a time.
        let done = sqlx::query(
            "insert into signing_keys (kid, algorithm, private_key, created_at, retired_at) \
             select $1, $2, $3, $4, null where not exists \
               (select 1 from signing_keys where algorithm = $2 and retired_at is null)",
        )
        .bind(&k.kid)
        .bind(&k.algorithm)
        .bind(&k.private_key)
        .bind(k.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn rotate_signing_key(&self, k: &SigningKeyRecord, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "update signing_keys set retired_at = $1 where algorithm = $2 and retired_at is null",
        )
        .bind(now)
        .bind(&k.algorithm)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "insert into signing_keys (kid, algorithm, private_key, created_at, retired_at) \
             values ($1, $2, $3, $4, null)",
        )
        .bind(&k.kid)
        .bind(&k.algorithm)
        .bind(&k.private_key)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, value: &[u8], now: i64) -> StoreResult<Vec<u8>> {
        sqlx::query(
            "insert into secrets (name, value, created_at) values ($1, $2, $3) \
             on conflict (name) do nothing",
        )
        .bind(name)
        .bind(value)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let value: Vec<u8> = sqlx::query_scalar("select value from secrets where name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    async fn create_session(
        &self,
        s: &SessionRecord,
        refresh_hash: &[u8],
        expected_version: i64,
        max_live: u32,
    ) -> StoreResult<SessionOpened> {
        let user = s.user_id.to_string();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // Conditional on the user as the login saw them: a password, role
        // or disabled change committed since (it ended every session of
        // the user) makes this insert store nothing.
        let inserted = sqlx::query(
            "insert into sessions (id, user_id, scope, user_agent, ip, created_at, last_used_at, \
             expires_at, revoked_at, refresh_hash, refresh_generation, refresh_issued_at) \
             select $1, $2, $3, $4, $5, $6, $7, $8, null, $9, 0, $6 from users \
             where id = $2 and security_version = $10 and not disabled",
        )
        .bind(s.id.to_string())
        .bind(&user)
        .bind(&s.scope)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(s.created_at)
        .bind(s.last_used_at)
        .bind(s.expires_at)
        .bind(refresh_hash)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            return Ok(SessionOpened::Stale);
        }
        // The newest `max_live` live sessions stay (ids are UUIDv7: creation
        // order); older ones end.
        let rows = sqlx::query(
            "update sessions set revoked_at = $2 where id in (\
               select id from sessions where user_id = $1 and revoked_at is null \
                 and expires_at > $2 order by id desc limit -1 offset $3) \
             returning id",
        )
        .bind(&user)
        .bind(s.created_at)
        .bind(i64::from(max_live.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let ended = rows
            .iter()
            .map(|r| uuid_column(r, "id"))
            .collect::<StoreResult<_>>()?;
        tx.commit().await?;
        Ok(SessionOpened::Opened { ended })
    }

    async fn rotate_refresh_token(
        &self,
        presented: &PresentedRefresh,
        successor_hash: &[u8],
        now: i64,
        lifetimes: RefreshLifetimes,
    ) -> StoreResult<RefreshOutcome> {
        // BEGIN IMMEDIATE takes SQLite's write lock at once: concurrent
        // presentations of one session's tokens run one after another, each
        // deciding on the row as the previous one left it.
        let mut tx = self.pool.begin_with("begin immediate").await?;
        let sql =
            format!("select {SESSION_COLUMNS}, {REFRESH_COLUMNS} from sessions where id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(presented.session.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.commit().await?;
            return Ok(RefreshOutcome::Invalid);
        };
        let record = refresh_record_from_row(&row)?;
        let mut session = record.session.clone();
        let outcome = match refresh_step(&record, presented, successor_hash, now, lifetimes) {
            RefreshStep::Rotate => {
                let expires_at = refreshed_expiry(
                    session.created_at,
                    now,
                    lifetimes.ttl,
                    lifetimes.max_lifetime,
                );
                sqlx::query(
                    "update sessions set previous_refresh_hash = refresh_hash, \
                     refresh_hash = $2, refresh_generation = refresh_generation + 1, \
                     refresh_issued_at = $3, last_used_at = $3, expires_at = $4 \
                     where id = $1",
                )
                .bind(session.id.to_string())
                .bind(successor_hash)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                session.last_used_at = now;
                session.expires_at = expires_at;
                RefreshOutcome::Rotated(session)
            }
            RefreshStep::Retry => RefreshOutcome::Retry(session),
            RefreshStep::Reuse => {
                sqlx::query(
                    "update sessions set revoked_at = $2 where id = $1 and revoked_at is null",
                )
                .bind(session.id.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                RefreshOutcome::Reused {
                    session: session.id,
                    user: session.user_id,
                }
            }
            RefreshStep::Invalid => RefreshOutcome::Invalid,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn refresh_record(&self, id: Uuid) -> StoreResult<Option<RefreshRecord>> {
        let sql =
            format!("select {SESSION_COLUMNS}, {REFRESH_COLUMNS} from sessions where id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(refresh_record_from_row).transpose()
    }

    async fn legacy_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<(Uuid, bool)>> {
        let row = sqlx::query(
            "select session_id, used_at from legacy_refresh_tokens \
             where hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let used_at: Option<i64> = r.try_get("used_at")?;
            Ok((uuid_column(&r, "session_id")?, used_at.is_some()))
        })
        .transpose()
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("select {SESSION_COLUMNS} from sessions where id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn user_sessions(
        &self,
        user: Uuid,
        now: i64,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<SessionRecord>> {
        let sql = format!(
            "select {SESSION_COLUMNS} from sessions \
             where user_id = $1 and revoked_at is null and expires_at > $2 \
               and ($3 is null or id < $3) \
             order by id desc limit $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .bind(now)
            .bind(before.map(|id| id.to_string()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn revoke_session(&self, id: Uuid, now: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("update sessions set revoked_at = $2 where id = $1 and revoked_at is null")
                .bind(id.to_string())
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user: Uuid,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let ended = revoke_user_sessions_on(&mut tx, &user.to_string(), now).await?;
        if let Some(audit) = audit {
            insert_audit_on(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn revoked_sessions(&self, since: i64) -> StoreResult<Vec<(Uuid, i64)>> {
        let rows = sqlx::query("select id, revoked_at from sessions where revoked_at >= $1")
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((uuid_column(r, "id")?, r.try_get("revoked_at")?)))
            .collect()
    }

    async fn insert_audit(&self, e: &AuditRecord) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit_on(&mut conn, e).await
    }

    async fn query_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "select id, type, user_id, session_id, ip, detail, created_at from audit_events \
             where ($1 is null or id < $1) and ($2 is null or user_id = $2) \
               and ($3 is null or type = $3) \
             order by id desc limit $4",
        )
        .bind(q.before.map(|u| u.to_string()))
        .bind(q.user_id.map(|u| u.to_string()))
        .bind(&q.kind)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let opt_uuid = |col: &str| -> StoreResult<Option<Uuid>> {
                    let v: Option<String> = r.try_get(col)?;
                    v.map(|s| {
                        Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
                    })
                    .transpose()
                };
                Ok(AuditRecord {
                    id: uuid_column(r, "id")?,
                    kind: r.try_get("type")?,
                    user_id: opt_uuid("user_id")?,
                    session_id: opt_uuid("session_id")?,
                    ip: r.try_get("ip")?,
                    detail: r.try_get("detail")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn purge(
        &self,
        now: i64,
        ended_before: i64,
        audit_before: Option<i64>,
    ) -> StoreResult<u64> {
        let tokens = delete_in_batches(
            &self.pool,
            "legacy_refresh_tokens",
            "hash",
            "expires_at <= $1",
            now,
        )
        .await?;
        let sessions = delete_in_batches(
            &self.pool,
            "sessions",
            "id",
            "coalesce(revoked_at, expires_at) < $1",
            ended_before,
        )
        .await?;
        let changes = sqlx::query("delete from user_changes where changed_at < $1")
            .bind((now - super::USER_CHANGE_RETENTION).min(ended_before - 3600))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let audit = match audit_before {
            Some(before) => {
                delete_in_batches(&self.pool, "audit_events", "id", "created_at < $1", before)
                    .await?
            }
            None => 0,
        };
        Ok(tokens + sessions + changes + audit)
    }
}
