//! The one SQL implementation of [`Store`], for SQLite and PostgreSQL.
//!
//! Every query text and every row mapping is written once. [`with_db!`]
//! instantiates a block for each backend's own pool or transaction type, so
//! sqlx binds and decodes with that backend's types (no `sqlx::Any`); rows
//! are read into `FromRow` structs of portable column types (ids as text,
//! times as `i64`, hashes as bytes) and turned into domain entities in plain
//! Rust. The SQL is the common subset: `cast(.. as ..)` rather than `::`,
//! `select cast(1 as bigint)` rather than `select 1` (an `int4` on
//! PostgreSQL), a bound `limit` before every `offset`. What really differs
//! comes from the [`Dialect`].

use async_trait::async_trait;
use futures_util::TryStreamExt;
use std::ops::DerefMut;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{AssertSqlSafe, Postgres, Sqlite, Transaction};
use uuid::Uuid;

use super::dialect::{self, ChangeMarker, Dialect};
use super::{PURGE_BATCH, Store, StoreError, StoreResult, USER_CHANGE_RETENTION};
use crate::config::DatabaseOptions;
use crate::domain::profile::fold;
use crate::domain::{
    AuditQuery, AuditRecord, BACKCHANNEL_LOGOUT, BackchannelLogout, PasswordSet, PresentedRefresh,
    RefreshLifetimes, RefreshOutcome, RefreshRecord, RefreshState, RefreshStep, SessionOpened,
    SessionRecord, SigningKeyRecord, UniqueField, UserChange, UserChangeLog, UserChanges,
    UserQuery, UserRecord, UserSecurity, UserUpdate, refresh_step, refreshed_expiry,
};

/// A value of one backend or the other: a pool, or a transaction on it.
pub(super) enum Backend<S, P> {
    Sqlite(S),
    Postgres(P),
}

pub(super) type Db = Backend<SqlitePool, PgPool>;
pub(super) type Tx = Backend<Transaction<'static, Sqlite>, Transaction<'static, Postgres>>;

/// `with_db!(value, |x| body)`: matches a [`Backend`] and runs the same
/// `body` with `x` bound to the SQLite or the PostgreSQL value. The body is
/// compiled once per backend with its concrete types; it is a block of the
/// enclosing function (not a closure), so `?`, `.await` and `return` act
/// there.
macro_rules! with_db {
    ($value:expr, |$db:ident| $body:expr) => {
        match $value {
            Backend::Sqlite($db) => $body,
            Backend::Postgres($db) => $body,
        }
    };
}
pub(super) use with_db;

impl Tx {
    pub(super) async fn commit(self) -> StoreResult<()> {
        with_db!(self, |tx| tx.commit().await?);
        Ok(())
    }
}

/// A `like` pattern that matches the JSON `roles` column of a user with
/// the built-in `admin` role ([`crate::domain::roles::ROLE_ADMIN`]): role names are
/// stored as a JSON array of strings, so the quotes delimit the name.
const ADMIN_ROLES_LIKE: &str = "%\"admin\"%";

const USER_COLUMNS: &str = "id, username, email, full_name, password_hash, roles, disabled, \
                            tokens_valid_after, security_version, revision, created_at, updated_at";

const SESSION_COLUMNS: &str = "id, user_id, scope, user_agent, ip, created_at, last_used_at, \
                               expires_at, revoked_at, client_id, browser, \
                               parent_session, auth_time, amr";

const REFRESH_COLUMNS: &str =
    "refresh_generation, refresh_hash, refresh_issued_at, previous_refresh_hash";

const SIGNING_KEY_COLUMNS: &str = "kid, algorithm, private_key, created_at, retired_at";

const AUDIT_COLUMNS: &str = "id, type, user_id, session_id, ip, detail, created_at";

pub(super) fn parse_uuid(text: &str, column: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(super) fn parse_uuids(ids: Vec<String>, column: &str) -> StoreResult<Vec<Uuid>> {
    ids.iter().map(|id| parse_uuid(id, column)).collect()
}

/// Which sessions a change ends (see [`SqlStore::end_sessions_on`]).
pub(super) enum Ending<'a> {
    /// One session, by id.
    One(&'a str),
    /// Every live session of the user.
    User(&'a str),
    /// Every live session issued through the client, of one user when set.
    Client {
        client: &'a str,
        user: Option<&'a str>,
    },
    /// The user's live sessions past the newest `keep` (the session cap).
    OverLimit { user: &'a str, keep: i64 },
}

/// Ids bound per `in (...)` list: far below both backends' limits on
/// bound parameters.
const IDS_PER_STATEMENT: usize = 500;

/// `$first, $first+1, …` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(sqlx::FromRow)]
struct LogoutTarget {
    client_id: String,
    user_id: String,
    parent_session: Option<String>,
    backchannel_logout_uri: String,
    id_token_signed_response_alg: String,
}

impl SqlStore {
    /// The one way a session ends, in `tx` with the change that ends it:
    /// marks the sessions of `ending` revoked, then the live sessions
    /// opened from any ended browser session (signing out of warden signs
    /// out of every app it signed in), and queues one back-channel logout
    /// per (client, `sid`) among the ended client sessions whose client
    /// has a `backchannel_logout_uri`. Returns every ended id, children
    /// included, for the caller's token gate.
    pub(super) async fn end_sessions_on(
        tx: &mut Tx,
        ending: Ending<'_>,
        now: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let first = with_db!(&mut *tx, |tx| match &ending {
            Ending::One(id) => {
                sqlx::query_scalar::<_, String>(
                    "update sessions set revoked_at = $2 where id = $1 and revoked_at is null \
                     returning id",
                )
                .bind(*id)
                .bind(now)
                .fetch_all(&mut **tx)
                .await?
            }
            Ending::User(user) => {
                sqlx::query_scalar::<_, String>(
                    "update sessions set revoked_at = $2 where user_id = $1 and revoked_at is null \
                     returning id",
                )
                .bind(*user)
                .bind(now)
                .fetch_all(&mut **tx)
                .await?
            }
            Ending::Client { client, user } => {
                sqlx::query_scalar::<_, String>(
                    "update sessions set revoked_at = $2 \
                     where client_id = $1 and revoked_at is null \
                       and (cast($3 as text) is null or user_id = cast($3 as text)) \
                     returning id",
                )
                .bind(*client)
                .bind(now)
                .bind(*user)
                .fetch_all(&mut **tx)
                .await?
            }
            // The newest `keep` live sessions stay (ids are UUIDv7:
            // creation order); older ones end. (`limit` before `offset`:
            // SQLite has no `offset` alone.)
            Ending::OverLimit { user, keep } => {
                sqlx::query_scalar::<_, String>(
                    "update sessions set revoked_at = $2 where id in (\
                       select id from sessions where user_id = $1 and revoked_at is null \
                         and expires_at > $2 order by id desc limit $4 offset $3) \
                     returning id",
                )
                .bind(*user)
                .bind(now)
                .bind(*keep)
                .bind(i64::MAX)
                .fetch_all(&mut **tx)
                .await?
            }
        });
        let mut ended = first;
        // Children of the ended browser sessions (client sessions have
        // none of their own, so this runs once with results at most).
        let mut parents = ended.clone();
        while !parents.is_empty() {
            let mut children = Vec::new();
            for chunk in parents.chunks(IDS_PER_STATEMENT) {
                let sql = format!(
                    "update sessions set revoked_at = $1 \
                     where revoked_at is null and expires_at > $1 \
                       and parent_session in ({}) returning id",
                    placeholders(2, chunk.len())
                );
                let found = with_db!(&mut *tx, |tx| {
                    let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).bind(now);
                    for id in chunk {
                        query = query.bind(id);
                    }
                    query.fetch_all(&mut **tx).await?
                });
                children.extend(found);
            }
            ended.extend(children.iter().cloned());
            parents = children;
        }
        Self::queue_logouts_on(tx, &ended, now).await?;
        parse_uuids(ended, "sessions.id")
    }

    /// Queues a back-channel logout for each (client, `sid`) of the ended
    /// sessions `ended` whose client has a `backchannel_logout_uri` (an
    /// expired session was over already: no logout for it).
    async fn queue_logouts_on(tx: &mut Tx, ended: &[String], now: i64) -> StoreResult<()> {
        let mut targets: Vec<BackchannelLogout> = Vec::new();
        for chunk in ended.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "select s.client_id, s.user_id, s.parent_session, c.backchannel_logout_uri, \
                        c.id_token_signed_response_alg \
                 from sessions s join clients c on c.id = s.client_id \
                 where c.backchannel_logout_uri is not null and s.expires_at > $1 \
                   and s.id in ({}) order by s.id",
                placeholders(2, chunk.len())
            );
            let rows = with_db!(&mut *tx, |tx| {
                let mut query = sqlx::query_as::<_, LogoutTarget>(AssertSqlSafe(sql)).bind(now);
                for id in chunk {
                    query = query.bind(id);
                }
                query.fetch_all(&mut **tx).await?
            });
            for row in rows {
                let target = BackchannelLogout {
                    client_id: parse_uuid(&row.client_id, "sessions.client_id")?,
                    sub: parse_uuid(&row.user_id, "sessions.user_id")?,
                    sid: row
                        .parent_session
                        .as_deref()
                        .map(|id| parse_uuid(id, "sessions.parent_session"))
                        .transpose()?,
                    uri: row.backchannel_logout_uri,
                    alg: row.id_token_signed_response_alg,
                };
                // One per (client, sid): a client that holds several
                // sessions of one browser session is told once.
                if !targets.iter().any(|t| {
                    t.client_id == target.client_id && t.sid == target.sid && t.sub == target.sub
                }) {
                    targets.push(target);
                }
            }
        }
        for target in &targets {
            let payload = serde_json::to_string(target)
                .map_err(|e| StoreError::Corrupt(format!("outbox payload: {e}")))?;
            Self::insert_outbox_on(tx, BACKCHANNEL_LOGOUT, &payload, now).await?;
        }
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    username: String,
    email: String,
    full_name: Option<String>,
    password_hash: String,
    /// A JSON array of role names.
    roles: String,
    disabled: bool,
    tokens_valid_after: i64,
    security_version: i64,
    revision: i64,
    created_at: i64,
    updated_at: i64,
}

impl UserRow {
    fn into_record(self) -> StoreResult<UserRecord> {
        Ok(UserRecord {
            id: parse_uuid(&self.id, "users.id")?,
            username: self.username,
            email: self.email,
            full_name: self.full_name,
            password_hash: self.password_hash,
            roles: serde_json::from_str(&self.roles)
                .map_err(|e| StoreError::Corrupt(format!("users.roles: {e}")))?,
            disabled: self.disabled,
            tokens_valid_after: self.tokens_valid_after,
            security_version: self.security_version,
            revision: self.revision,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn users(rows: Vec<UserRow>) -> StoreResult<Vec<UserRecord>> {
    rows.into_iter().map(UserRow::into_record).collect()
}

#[derive(sqlx::FromRow)]
struct SecurityRow {
    id: String,
    tokens_valid_after: i64,
    disabled: bool,
    security_version: i64,
    revision: i64,
}

impl SecurityRow {
    fn into_security(self) -> StoreResult<UserSecurity> {
        Ok(UserSecurity {
            id: parse_uuid(&self.id, "users.id")?,
            tokens_valid_after: self.tokens_valid_after,
            disabled: self.disabled,
            security_version: self.security_version,
            revision: self.revision,
        })
    }
}

/// A `user_changes` entry joined with the user; the user's columns are
/// null once the user is deleted.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    user_id: String,
    changed_at: i64,
    id: Option<String>,
    tokens_valid_after: Option<i64>,
    disabled: Option<bool>,
    security_version: Option<i64>,
    revision: Option<i64>,
}

impl ChangeRow {
    fn into_change(self) -> StoreResult<UserChange> {
        let id = parse_uuid(&self.user_id, "user_changes.user_id")?;
        let current = match (
            self.id,
            self.tokens_valid_after,
            self.disabled,
            self.security_version,
            self.revision,
        ) {
            (None, ..) => None,
            (
                Some(_),
                Some(tokens_valid_after),
                Some(disabled),
                Some(security_version),
                Some(revision),
            ) => Some(UserSecurity {
                id,
                tokens_valid_after,
                disabled,
                security_version,
                revision,
            }),
            (Some(_), ..) => {
                return Err(StoreError::Corrupt(format!("users {id}: null column")));
            }
        };
        Ok(UserChange {
            id,
            current,
            changed_at: self.changed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_id: String,
    scope: String,
    user_agent: Option<String>,
    ip: Option<String>,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    client_id: Option<String>,
    browser: bool,
    parent_session: Option<String>,
    auth_time: Option<i64>,
    amr: Option<String>,
}

impl SessionRow {
    fn into_record(self) -> StoreResult<SessionRecord> {
        Ok(SessionRecord {
            id: parse_uuid(&self.id, "sessions.id")?,
            user_id: parse_uuid(&self.user_id, "sessions.user_id")?,
            scope: self.scope,
            user_agent: self.user_agent,
            ip: self.ip,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            client_id: self
                .client_id
                .map(|id| parse_uuid(&id, "sessions.client_id"))
                .transpose()?,
            browser: self.browser,
            parent_session: self
                .parent_session
                .map(|id| parse_uuid(&id, "sessions.parent_session"))
                .transpose()?,
            auth_time: self.auth_time,
            amr: self.amr,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    #[sqlx(flatten)]
    session: SessionRow,
    refresh_generation: i64,
    refresh_hash: Option<Vec<u8>>,
    refresh_issued_at: i64,
    previous_refresh_hash: Option<Vec<u8>>,
}

impl RefreshRow {
    fn into_record(self) -> StoreResult<RefreshRecord> {
        Ok(RefreshRecord {
            session: self.session.into_record()?,
            refresh: RefreshState {
                generation: self.refresh_generation,
                hash: self.refresh_hash,
                issued_at: self.refresh_issued_at,
                previous_hash: self.previous_refresh_hash,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
struct LegacyRefreshRow {
    session_id: String,
    used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SigningKeyRow {
    kid: String,
    algorithm: String,
    private_key: Vec<u8>,
    created_at: i64,
    retired_at: Option<i64>,
}

impl From<SigningKeyRow> for SigningKeyRecord {
    fn from(row: SigningKeyRow) -> Self {
        Self {
            kid: row.kid,
            algorithm: row.algorithm,
            private_key: row.private_key,
            created_at: row.created_at,
            retired_at: row.retired_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    #[sqlx(rename = "type")]
    kind: String,
    user_id: Option<String>,
    session_id: Option<String>,
    ip: Option<String>,
    detail: Option<String>,
    created_at: i64,
}

impl AuditRow {
    fn into_record(self) -> StoreResult<AuditRecord> {
        let optional =
            |v: Option<String>, column: &str| v.map(|s| parse_uuid(&s, column)).transpose();
        Ok(AuditRecord {
            id: parse_uuid(&self.id, "audit_events.id")?,
            kind: self.kind,
            user_id: optional(self.user_id, "audit_events.user_id")?,
            session_id: optional(self.session_id, "audit_events.session_id")?,
            ip: self.ip,
            detail: self.detail,
            created_at: self.created_at,
        })
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

fn roles_json(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

/// [`Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    pub(super) db: Db,
    pub(super) dialect: &'static Dialect,
    changes: ChangeMarker,
}

impl SqlStore {
    /// Opens the store named by `url`: PostgreSQL for `postgres://` and
    /// `postgresql://`, an SQLite file otherwise. `options` apply to
    /// PostgreSQL; SQLite uses fixed ones.
    pub async fn connect(url: &str, options: &DatabaseOptions) -> StoreResult<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (pool, changes) = dialect::connect_postgres(url, options).await?;
            Ok(Self {
                db: Backend::Postgres(pool),
                dialect: &dialect::POSTGRES,
                changes,
            })
        } else {
            let (pool, changes) = dialect::connect_sqlite(url).await?;
            Ok(Self {
                db: Backend::Sqlite(pool),
                dialect: &dialect::SQLITE,
                changes,
            })
        }
    }

    /// Starts a transaction that will write.
    pub(super) async fn begin(&self) -> StoreResult<Tx> {
        let begin = self.dialect.begin_write;
        Ok(match &self.db {
            Backend::Sqlite(pool) => Backend::Sqlite(pool.begin_with(begin).await?),
            Backend::Postgres(pool) => Backend::Postgres(pool.begin_with(begin).await?),
        })
    }

    /// Runs `sql` (a lock of the dialect) in `tx`.
    async fn take_lock(tx: &mut Tx, sql: &'static str) -> StoreResult<()> {
        with_db!(&mut *tx, |tx| {
            sqlx::query(sql).execute(&mut **tx).await?;
        });
        Ok(())
    }

    /// Locks user `id`'s row for the rest of the transaction and says
    /// whether they are an enabled admin; for an admin it also takes the
    /// dialect's admins lock (see [`Dialect::admins_lock`]).
    async fn lock_user_and_admins(&self, tx: &mut Tx, id: &str) -> StoreResult<bool> {
        let sql = format!(
            "select not disabled and roles like $2 from users where id = $1{}",
            self.dialect.lock_for_update
        );
        let admin = with_db!(&mut *tx, |tx| {
            sqlx::query_scalar::<_, bool>(AssertSqlSafe(sql))
                .bind(id)
                .bind(ADMIN_ROLES_LIKE)
                .fetch_optional(&mut **tx)
                .await?
        }) == Some(true);
        if admin && let Some(lock) = self.dialect.admins_lock {
            Self::take_lock(tx, lock).await?;
        }
        Ok(admin)
    }

    async fn enabled_admins(tx: &mut Tx) -> StoreResult<i64> {
        let sql = "select count(*) from users where not disabled and roles like $1";
        Ok(with_db!(&mut *tx, |tx| {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(ADMIN_ROLES_LIKE)
                .fetch_one(&mut **tx)
                .await?
        }))
    }

    /// Stores `e` on a transaction or a pooled connection of either backend.
    pub(super) async fn insert_audit_on<S, P>(
        conn: &mut Backend<S, P>,
        e: &AuditRecord,
    ) -> StoreResult<()>
    where
        S: DerefMut<Target = SqliteConnection> + Send,
        P: DerefMut<Target = PgConnection> + Send,
    {
        let sql = "insert into audit_events (id, type, user_id, session_id, ip, detail, created_at) \
                   values ($1, $2, $3, $4, $5, $6, $7)";
        with_db!(&mut *conn, |conn| {
            sqlx::query(sql)
                .bind(e.id.to_string())
                .bind(&e.kind)
                .bind(e.user_id.map(|u| u.to_string()))
                .bind(e.session_id.map(|u| u.to_string()))
                .bind(&e.ip)
                .bind(&e.detail)
                .bind(e.created_at)
                .execute(&mut **conn)
                .await?;
        });
        Ok(())
    }

    /// Runs `delete from {table} where {key} in (select {key} ... where
    /// {condition} limit N)` until fewer than N rows go: each batch is its
    /// own short write, so other writers get the lock in between.
    async fn delete_in_batches(
        &self,
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
            let done = with_db!(&self.db, |pool| {
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(bound)
                    .bind(PURGE_BATCH)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            total += done;
            if done < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> StoreResult<()> {
        with_db!(&self.db, |pool| self.dialect.migrations.run(pool).await?);
        Ok(())
    }

    async fn is_migrated(&self) -> StoreResult<bool> {
        let tables: i64 = with_db!(&self.db, |pool| {
            sqlx::query_scalar(self.dialect.migrations_table)
                .fetch_one(pool)
                .await?
        });
        Ok(tables > 0)
    }

    async fn ping(&self) -> StoreResult<()> {
        with_db!(&self.db, |pool| {
            sqlx::query("select 1").execute(pool).await?;
        });
        Ok(())
    }

    async fn close(&self) {
        // The watch first: the PostgreSQL listener holds a pooled
        // connection, and closing the pool waits for all of them.
        self.changes.close().await;
        with_db!(&self.db, |pool| pool.close().await);
        if let Backend::Sqlite(pool) = &self.db {
            // SQLite removes the WAL files when the last connection closes,
            // but the pool closes its connections at once, and two closing
            // together can each see the other and both leave the files. One
            // more connection, closed alone, is then the last.
            use sqlx::Connection;
            let options = pool.connect_options();
            if let Ok(last) = sqlx::SqliteConnection::connect_with(&options).await {
                let _ = last.close().await;
            }
        }
    }

    async fn insert_user(&self, u: &UserRecord) -> StoreResult<()> {
        let sql = "insert into users (id, username, username_folded, email, email_folded, \
                   full_name, password_hash, roles, disabled, tokens_valid_after, created_at, \
                   updated_at) \
                   values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        with_db!(&self.db, |pool| {
            sqlx::query(sql)
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
                .execute(pool)
                .await
                .map_err(map_unique)?;
        });
        Ok(())
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let sql = format!("select {USER_COLUMNS} from users where id = $1");
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, UserRow>(AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(UserRow::into_record).transpose()
    }

    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>> {
        let folded = crate::domain::profile::fold_login(login);
        let sql = format!(
            "select {USER_COLUMNS} from users where username_folded = $1 or email_folded = $1"
        );
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, UserRow>(AssertSqlSafe(sql))
                .bind(&folded)
                .fetch_optional(pool)
                .await?
        });
        row.map(UserRow::into_record).transpose()
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
        let security = c.is_security_change();
        let id_text = id.to_string();
        let mut tx = self.begin().await?;
        let was_admin = security && self.lock_user_and_admins(&mut tx, &id_text).await?;
        let sql = format!(
            "update users set \
               username = coalesce($2, username), \
               username_folded = coalesce($3, username_folded), \
               email = coalesce($4, email), \
               email_folded = coalesce($5, email_folded), \
               full_name = case when cast($6 as boolean) then cast($7 as text) else full_name end, \
               roles = coalesce($8, roles), \
               disabled = coalesce($9, disabled), \
               tokens_valid_after = case when cast($10 as boolean) then cast($11 as bigint) \
                 else tokens_valid_after end, \
               security_version = security_version + case when cast($10 as boolean) then 1 else 0 end, \
               revision = revision + 1, \
               updated_at = $12 \
             where id = $1 returning {USER_COLUMNS}"
        );
        let row = with_db!(&mut tx, |tx| {
            sqlx::query_as::<_, UserRow>(AssertSqlSafe(sql))
                .bind(&id_text)
                .bind(&c.username)
                .bind(c.username.as_deref().map(fold))
                .bind(&c.email)
                .bind(c.email.as_deref().map(fold))
                .bind(set_full_name)
                .bind(&full_name)
                .bind(c.roles.as_deref().map(roles_json))
                .bind(c.disabled)
                .bind(security)
                .bind(valid_after)
                .bind(now)
                .fetch_optional(&mut **tx)
                .await
                .map_err(map_unique)?
        });
        let Some(row) = row else { return Ok(None) };
        let user = row.into_record()?;
        if was_admin && Self::enabled_admins(&mut tx).await? == 0 {
            return Err(StoreError::LastAdmin);
        }
        let mut ended_sessions = Vec::new();
        if security {
            ended_sessions = Self::end_sessions_on(&mut tx, Ending::User(&id_text), now).await?;
        }
        if let Some(audit) = audit {
            Self::insert_audit_on(&mut tx, audit).await?;
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
        let mut tx = self.begin().await?;
        let sql = format!(
            "update users set password_hash = $2, tokens_valid_after = $3, \
             security_version = security_version + 1, revision = revision + 1, updated_at = $4 \
             where id = $1 and security_version = $5 returning {USER_COLUMNS}"
        );
        let row = with_db!(&mut tx, |tx| {
            sqlx::query_as::<_, UserRow>(AssertSqlSafe(sql))
                .bind(&id_text)
                .bind(password_hash)
                .bind(valid_after)
                .bind(now)
                .bind(expected_version)
                .fetch_optional(&mut **tx)
                .await?
        });
        let Some(row) = row else {
            let exists = with_db!(&mut tx, |tx| {
                sqlx::query_scalar::<_, i64>("select cast(1 as bigint) from users where id = $1")
                    .bind(&id_text)
                    .fetch_optional(&mut **tx)
                    .await?
            });
            return Ok(if exists.is_some() {
                PasswordSet::Stale
            } else {
                PasswordSet::Missing
            });
        };
        let user = row.into_record()?;
        let ended_sessions = Self::end_sessions_on(&mut tx, Ending::User(&id_text), now).await?;
        Self::insert_audit_on(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(PasswordSet::Changed(Box::new(UserUpdate {
            user,
            ended_sessions,
        })))
    }

    async fn delete_user(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let id_text = id.to_string();
        let mut tx = self.begin().await?;
        let was_admin = self.lock_user_and_admins(&mut tx, &id_text).await?;
        // Ended (and their logouts queued) before the rows go with the user.
        Self::end_sessions_on(&mut tx, Ending::User(&id_text), audit.created_at).await?;
        let deleted = with_db!(&mut tx, |tx| {
            sqlx::query("delete from users where id = $1")
                .bind(&id_text)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        if deleted != 1 {
            return Ok(false);
        }
        if was_admin && Self::enabled_admins(&mut tx).await? == 0 {
            return Err(StoreError::LastAdmin);
        }
        Self::insert_audit_on(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("select {USER_COLUMNS} from users order by id");
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, UserRow>(AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?
        });
        users(rows)
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
             where (cast($1 as text) is null or id > cast($1 as text)) \
               and (cast($2 as text) is null \
                    or username_folded like cast($2 as text) escape '\\' \
                    or email_folded like cast($2 as text) escape '\\') \
             order by id limit $3"
        );
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, UserRow>(AssertSqlSafe(sql))
                .bind(q.after.map(|id| id.to_string()))
                .bind(&pattern)
                .bind(i64::from(q.limit))
                .fetch_all(pool)
                .await?
        });
        users(rows)
    }

    async fn users_to_watch(&self, since: i64) -> StoreResult<Vec<UserSecurity>> {
        let sql = "select id, tokens_valid_after, disabled, security_version, revision from users \
                   where disabled or tokens_valid_after >= $1";
        // Row by row: the scan visits every user, and only a few match.
        let mut found = Vec::new();
        with_db!(&self.db, |pool| {
            let mut rows = sqlx::query_as::<_, SecurityRow>(sql)
                .bind(since)
                .fetch(pool);
            while let Some(row) = rows.try_next().await? {
                found.push(row.into_security()?);
            }
        });
        Ok(found)
    }

    async fn user_changes(&self, since: i64) -> StoreResult<UserChangeLog> {
        let clock = self.dialect.clock;
        // `u.id` is the key of `u`, so its other columns may be selected
        // ungrouped; it is null once the user is deleted.
        let sql = "select c.user_id, max(c.changed_at) as changed_at, u.id, \
                   u.tokens_valid_after, u.disabled, u.security_version, u.revision \
                   from user_changes c left join users u on u.id = c.user_id \
                   where c.changed_at >= $1 group by c.user_id, u.id";
        let (read_at, rows) = with_db!(&self.db, |pool| {
            let read_at = sqlx::query_scalar::<_, i64>(clock).fetch_one(pool).await?;
            let rows = sqlx::query_as::<_, ChangeRow>(sql)
                .bind(since)
                .fetch_all(pool)
                .await?;
            (read_at, rows)
        });
        let changes = rows
            .into_iter()
            .map(ChangeRow::into_change)
            .collect::<StoreResult<_>>()?;
        Ok(UserChangeLog { read_at, changes })
    }

    async fn change_marker(&self) -> StoreResult<i64> {
        self.changes.read().await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let sql =
            format!("select {SIGNING_KEY_COLUMNS} from signing_keys order by created_at, kid");
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, SigningKeyRow>(AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(SigningKeyRecord::from).collect())
    }

    async fn insert_first_signing_key(&self, k: &SigningKeyRecord) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        if let Some(lock) = self.dialect.first_key_lock {
            Self::take_lock(&mut tx, lock).await?;
        }
        let sql = "insert into signing_keys (kid, algorithm, private_key, created_at, retired_at) \
                   select $1, cast($2 as text), $3, $4, null where not exists \
                     (select 1 from signing_keys \
                      where algorithm = cast($2 as text) and retired_at is null)";
        let inserted = with_db!(&mut tx, |tx| {
            sqlx::query(sql)
                .bind(&k.kid)
                .bind(&k.algorithm)
                .bind(&k.private_key)
                .bind(k.created_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn rotate_signing_key(&self, k: &SigningKeyRecord, now: i64) -> StoreResult<()> {
        let retire =
            "update signing_keys set retired_at = $1 where algorithm = $2 and retired_at is null";
        let insert = "insert into signing_keys (kid, algorithm, private_key, created_at, retired_at) \
                      values ($1, $2, $3, $4, null)";
        let mut tx = self.begin().await?;
        with_db!(&mut tx, |tx| {
            sqlx::query(retire)
                .bind(now)
                .bind(&k.algorithm)
                .execute(&mut **tx)
                .await?;
            sqlx::query(insert)
                .bind(&k.kid)
                .bind(&k.algorithm)
                .bind(&k.private_key)
                .bind(k.created_at)
                .execute(&mut **tx)
                .await?;
        });
        tx.commit().await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, value: &[u8], now: i64) -> StoreResult<Vec<u8>> {
        let insert = "insert into secrets (name, value, created_at) values ($1, $2, $3) \
                      on conflict (name) do nothing";
        let select = "select value from secrets where name = $1";
        Ok(with_db!(&self.db, |pool| {
            sqlx::query(insert)
                .bind(name)
                .bind(value)
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query_scalar::<_, Vec<u8>>(select)
                .bind(name)
                .fetch_one(pool)
                .await?
        }))
    }

    async fn create_session(
        &self,
        s: &SessionRecord,
        refresh_hash: &[u8],
        expected_version: i64,
        max_live: u32,
    ) -> StoreResult<SessionOpened> {
        let user = s.user_id.to_string();
        let mut tx = self.begin().await?;
        // The share lock (PostgreSQL) waits for a security change in flight
        // on this user (it holds the row lock) and then reads its result; a
        // change that starts later waits for this transaction, and so ends
        // this session with the others. SQLite's write transactions run one
        // at a time, which gives the same. Either way no session outlives a
        // change that its login preceded.
        let sql = format!(
            "select security_version, disabled from users where id = $1{}",
            self.dialect.lock_for_share
        );
        let current = with_db!(&mut tx, |tx| {
            sqlx::query_as::<_, (i64, bool)>(AssertSqlSafe(sql))
                .bind(&user)
                .fetch_optional(&mut **tx)
                .await?
        });
        if current != Some((expected_version, false)) {
            return Ok(SessionOpened::Stale);
        }
        let insert = "insert into sessions (id, user_id, scope, user_agent, ip, created_at, \
                      last_used_at, expires_at, revoked_at, refresh_hash, refresh_generation, \
                      refresh_issued_at, client_id, browser, parent_session, auth_time, amr) \
                      values ($1, $2, $3, $4, $5, $6, $7, $8, null, $9, 0, $6, $10, $11, $12, $13, $14)";
        with_db!(&mut tx, |tx| {
            sqlx::query(insert)
                .bind(s.id.to_string())
                .bind(&user)
                .bind(&s.scope)
                .bind(&s.user_agent)
                .bind(&s.ip)
                .bind(s.created_at)
                .bind(s.last_used_at)
                .bind(s.expires_at)
                .bind(refresh_hash)
                .bind(s.client_id.map(|id| id.to_string()))
                .bind(s.browser)
                .bind(s.parent_session.map(|id| id.to_string()))
                .bind(s.auth_time)
                .bind(&s.amr)
                .execute(&mut **tx)
                .await?;
        });
        let ended = Self::end_sessions_on(
            &mut tx,
            Ending::OverLimit {
                user: &user,
                keep: i64::from(max_live.max(1)),
            },
            s.created_at,
        )
        .await?;
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
        // The row lock (`for update` on PostgreSQL, the write transaction on
        // SQLite): concurrent presentations of one session's tokens run one
        // after another, each deciding on the row as the previous one left it.
        let mut tx = self.begin().await?;
        let sql = format!(
            "select {SESSION_COLUMNS}, {REFRESH_COLUMNS} from sessions where id = $1{}",
            self.dialect.lock_for_update
        );
        let row = with_db!(&mut tx, |tx| {
            sqlx::query_as::<_, RefreshRow>(AssertSqlSafe(sql))
                .bind(presented.session.to_string())
                .fetch_optional(&mut **tx)
                .await?
        });
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(RefreshOutcome::Invalid);
        };
        let record = row.into_record()?;
        let mut session = record.session.clone();
        let id = session.id.to_string();
        let outcome = match refresh_step(&record, presented, successor_hash, now, lifetimes) {
            RefreshStep::Rotate => {
                let expires_at = refreshed_expiry(
                    session.created_at,
                    now,
                    lifetimes.ttl,
                    lifetimes.max_lifetime,
                );
                let rotate = "update sessions set previous_refresh_hash = refresh_hash, \
                              refresh_hash = $2, refresh_generation = refresh_generation + 1, \
                              refresh_issued_at = $3, last_used_at = $3, expires_at = $4 \
                              where id = $1";
                with_db!(&mut tx, |tx| {
                    sqlx::query(rotate)
                        .bind(&id)
                        .bind(successor_hash)
                        .bind(now)
                        .bind(expires_at)
                        .execute(&mut **tx)
                        .await?;
                });
                session.last_used_at = now;
                session.expires_at = expires_at;
                RefreshOutcome::Rotated(session)
            }
            RefreshStep::Retry => RefreshOutcome::Retry(session),
            RefreshStep::Reuse => {
                Self::end_sessions_on(&mut tx, Ending::One(&id), now).await?;
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
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, RefreshRow>(AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(RefreshRow::into_record).transpose()
    }

    async fn legacy_refresh_token(&self, hash: &[u8]) -> StoreResult<Option<(Uuid, bool)>> {
        let sql = "select session_id, used_at from legacy_refresh_tokens where hash = $1";
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, LegacyRefreshRow>(sql)
                .bind(hash)
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| {
            let session = parse_uuid(&r.session_id, "legacy_refresh_tokens.session_id")?;
            Ok((session, r.used_at.is_some()))
        })
        .transpose()
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("select {SESSION_COLUMNS} from sessions where id = $1");
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(SessionRow::into_record).transpose()
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
               and (cast($3 as text) is null or id < cast($3 as text)) \
             order by id desc limit $4"
        );
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
                .bind(user.to_string())
                .bind(now)
                .bind(before.map(|id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(SessionRow::into_record).collect()
    }

    async fn revoke_session(&self, id: Uuid, now: i64) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.begin().await?;
        let ended = Self::end_sessions_on(&mut tx, Ending::One(&id.to_string()), now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn revoke_user_sessions(
        &self,
        user: Uuid,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.begin().await?;
        let ended = Self::end_sessions_on(&mut tx, Ending::User(&user.to_string()), now).await?;
        if let Some(audit) = audit {
            Self::insert_audit_on(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn revoked_sessions(&self, since: i64) -> StoreResult<Vec<(Uuid, i64)>> {
        let sql = "select id, revoked_at from sessions where revoked_at >= $1";
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, (String, i64)>(sql)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, at)| Ok((parse_uuid(&id, "sessions.id")?, at)))
            .collect()
    }

    async fn insert_audit(&self, e: &AuditRecord) -> StoreResult<()> {
        // One statement: no transaction of its own.
        let mut conn = match &self.db {
            Backend::Sqlite(pool) => Backend::Sqlite(pool.acquire().await?),
            Backend::Postgres(pool) => Backend::Postgres(pool.acquire().await?),
        };
        Self::insert_audit_on(&mut conn, e).await
    }

    async fn query_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!(
            "select {AUDIT_COLUMNS} from audit_events \
             where (cast($1 as text) is null or id < cast($1 as text)) \
               and (cast($2 as text) is null or user_id = cast($2 as text)) \
               and (cast($3 as text) is null or type = cast($3 as text)) \
             order by id desc limit $4"
        );
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, AuditRow>(AssertSqlSafe(sql))
                .bind(q.before.map(|u| u.to_string()))
                .bind(q.user_id.map(|u| u.to_string()))
                .bind(&q.kind)
                .bind(i64::from(q.limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(AuditRow::into_record).collect()
    }

    async fn purge(
        &self,
        now: i64,
        ended_before: i64,
        audit_before: Option<i64>,
    ) -> StoreResult<u64> {
        let tokens = self
            .delete_in_batches("legacy_refresh_tokens", "hash", "expires_at <= $1", now)
            .await?;
        let sessions = self
            .delete_in_batches(
                "sessions",
                "id",
                "coalesce(revoked_at, expires_at) < $1",
                ended_before,
            )
            .await?;
        // A spent code's row is what recognises its replay: kept until the
        // code expired as long ago as ended sessions are kept.
        let codes = self
            .delete_in_batches(
                "authorization_codes",
                "hash",
                "expires_at < $1",
                ended_before,
            )
            .await?;
        let changes_before = (now - USER_CHANGE_RETENTION).min(ended_before - 3600);
        let changes = with_db!(&self.db, |pool| {
            sqlx::query("delete from user_changes where changed_at < $1")
                .bind(changes_before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        let audit = match audit_before {
            Some(before) => {
                self.delete_in_batches("audit_events", "id", "created_at < $1", before)
                    .await?
            }
            None => 0,
        };
        Ok(tokens + sessions + codes + changes + audit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_pattern_names_the_admin_role() {
        assert_eq!(
            ADMIN_ROLES_LIKE,
            format!("%\"{}\"%", crate::domain::roles::ROLE_ADMIN)
        );
    }
}
