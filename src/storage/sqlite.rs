//! The embedded backend: one SQLite file in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use uuid::Uuid;

use super::{
    ProfileChanges, SigningKeyRecord, Store, StoreError, StoreResult, UniqueField, UserRecord,
    UserSecurity,
};
use crate::model::fold;

const USER_COLUMNS: &str = "id, username, email, full_name, password_hash, roles, disabled, \
                            tokens_valid_after, created_at, updated_at";

pub struct SqliteStore {
    pool: SqlitePool,
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
            .connect_with(options)
            .await?;
        Ok(Self { pool })
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
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
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
        let folded = fold(login);
        let sql = format!(
            "select {USER_COLUMNS} from users where username_folded = $1 or email_folded = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(folded)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn update_profile(
        &self,
        id: Uuid,
        c: &ProfileChanges,
        now: i64,
    ) -> StoreResult<Option<UserRecord>> {
        let (set_full_name, full_name) = match &c.full_name {
            Some(v) => (true, v.clone()),
            None => (false, None),
        };
        let sql = format!(
            "update users set \
               username = coalesce($2, username), \
               username_folded = coalesce($3, username_folded), \
               email = coalesce($4, email), \
               email_folded = coalesce($5, email_folded), \
               full_name = case when $6 then $7 else full_name end, \
               updated_at = $8 \
             where id = $1 returning {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(&c.username)
            .bind(c.username.as_deref().map(fold))
            .bind(&c.email)
            .bind(c.email.as_deref().map(fold))
            .bind(set_full_name)
            .bind(full_name)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_unique)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn set_password(
        &self,
        id: Uuid,
        password_hash: &str,
        tokens_valid_after: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "update users set password_hash = $2, tokens_valid_after = $3, updated_at = $4 \
             where id = $1",
        )
        .bind(id.to_string())
        .bind(password_hash)
        .bind(tokens_valid_after)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_roles(
        &self,
        id: Uuid,
        roles: &[String],
        tokens_valid_after: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "update users set roles = $2, tokens_valid_after = $3, updated_at = $4 where id = $1",
        )
        .bind(id.to_string())
        .bind(roles_json(roles))
        .bind(tokens_valid_after)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("delete from users where id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("select {USER_COLUMNS} from users order by id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn user_security(&self) -> StoreResult<Vec<UserSecurity>> {
        let rows = sqlx::query("select id, tokens_valid_after, disabled from users")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(UserSecurity {
                    id: Uuid::parse_str(&id)
                        .map_err(|e| StoreError::Corrupt(format!("users.id: {e}")))?,
                    tokens_valid_after: row.try_get("tokens_valid_after")?,
                    disabled: row.try_get("disabled")?,
                })
            })
            .collect()
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

    async fn insert_signing_key(&self, k: &SigningKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "insert into signing_keys (kid, algorithm, private_key, created_at, retired_at) \
             values ($1, $2, $3, $4, $5)",
        )
        .bind(&k.kid)
        .bind(&k.algorithm)
        .bind(&k.private_key)
        .bind(k.created_at)
        .bind(k.retired_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
