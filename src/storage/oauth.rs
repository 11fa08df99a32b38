//! The authorization server's part of [`SqlStore`]: clients, consents and
//! authorization codes, written once for both backends like `sql.rs`.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::sql::{Backend, Ending, SqlStore, parse_uuid, with_db};
use super::{OAuthStore, StoreError, StoreResult};
use crate::domain::{
    AuditRecord, AuthorizationCodeRecord, ClientRecord, CodeRedemption, ConsentRecord,
};

const CLIENT_COLUMNS: &str = "id, name, public, first_party, secret_hash, secret_created_at, \
                              redirect_uris, post_logout_redirect_uris, backchannel_logout_uri, \
                              grant_types, scopes, id_token_signed_response_alg, created_at, \
                              updated_at";

const CODE_COLUMNS: &str = "hash, client_id, user_id, browser_session, redirect_uri, \
                            code_challenge, scope, nonce, auth_time, created_at, expires_at, \
                            used_at, session_id";

fn json_list(text: &str, column: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serialises")
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    name: String,
    public: bool,
    first_party: bool,
    secret_hash: Option<Vec<u8>>,
    secret_created_at: Option<i64>,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    backchannel_logout_uri: Option<String>,
    grant_types: String,
    scopes: String,
    id_token_signed_response_alg: String,
    created_at: i64,
    updated_at: i64,
}

impl ClientRow {
    fn into_record(self) -> StoreResult<ClientRecord> {
        Ok(ClientRecord {
            id: parse_uuid(&self.id, "clients.id")?,
            name: self.name,
            public: self.public,
            first_party: self.first_party,
            secret_hash: self.secret_hash,
            secret_created_at: self.secret_created_at,
            redirect_uris: json_list(&self.redirect_uris, "clients.redirect_uris")?,
            post_logout_redirect_uris: json_list(
                &self.post_logout_redirect_uris,
                "clients.post_logout_redirect_uris",
            )?,
            backchannel_logout_uri: self.backchannel_logout_uri,
            grant_types: json_list(&self.grant_types, "clients.grant_types")?,
            scopes: json_list(&self.scopes, "clients.scopes")?,
            id_token_signed_response_alg: self.id_token_signed_response_alg,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ConsentRow {
    user_id: String,
    client_id: String,
    scopes: String,
    granted_at: i64,
}

impl ConsentRow {
    fn into_record(self) -> StoreResult<ConsentRecord> {
        Ok(ConsentRecord {
            user_id: parse_uuid(&self.user_id, "consents.user_id")?,
            client_id: parse_uuid(&self.client_id, "consents.client_id")?,
            scopes: json_list(&self.scopes, "consents.scopes")?,
            granted_at: self.granted_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    hash: Vec<u8>,
    client_id: String,
    user_id: String,
    browser_session: String,
    redirect_uri: Option<String>,
    code_challenge: String,
    scope: String,
    nonce: Option<String>,
    auth_time: i64,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    session_id: Option<String>,
}

impl CodeRow {
    fn into_record(self) -> StoreResult<AuthorizationCodeRecord> {
        Ok(AuthorizationCodeRecord {
            hash: self.hash,
            client_id: parse_uuid(&self.client_id, "authorization_codes.client_id")?,
            user_id: parse_uuid(&self.user_id, "authorization_codes.user_id")?,
            browser_session: parse_uuid(
                &self.browser_session,
                "authorization_codes.browser_session",
            )?,
            redirect_uri: self.redirect_uri,
            code_challenge: self.code_challenge,
            scope: self.scope,
            nonce: self.nonce,
            auth_time: self.auth_time,
            created_at: self.created_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
            session_id: self
                .session_id
                .map(|id| parse_uuid(&id, "authorization_codes.session_id"))
                .transpose()?,
        })
    }
}

#[async_trait]
impl OAuthStore for SqlStore {
    async fn insert_client(&self, c: &ClientRecord, audit: &AuditRecord) -> StoreResult<()> {
        let sql = format!(
            "insert into clients ({CLIENT_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let mut tx = self.begin().await?;
        with_db!(&mut tx, |tx| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(c.id.to_string())
                .bind(&c.name)
                .bind(c.public)
                .bind(c.first_party)
                .bind(&c.secret_hash)
                .bind(c.secret_created_at)
                .bind(to_json(&c.redirect_uris))
                .bind(to_json(&c.post_logout_redirect_uris))
                .bind(&c.backchannel_logout_uri)
                .bind(to_json(&c.grant_types))
                .bind(to_json(&c.scopes))
                .bind(&c.id_token_signed_response_alg)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&mut **tx)
                .await?;
        });
        Self::insert_audit_on(&mut tx, audit).await?;
        tx.commit().await
    }

    async fn client(&self, id: Uuid) -> StoreResult<Option<ClientRecord>> {
        let sql = format!("select {CLIENT_COLUMNS} from clients where id = $1");
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(ClientRow::into_record).transpose()
    }

    async fn client_id_token_algorithms(&self) -> StoreResult<Vec<String>> {
        let sql = "select distinct id_token_signed_response_alg from clients";
        let rows: Vec<(String,)> = with_db!(&self.db, |pool| {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(alg,)| alg).collect())
    }

    async fn query_clients(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ClientRecord>> {
        let sql = format!(
            "select {CLIENT_COLUMNS} from clients \
             where cast($1 as text) is null or id > cast($1 as text) \
             order by id limit $2"
        );
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, ClientRow>(AssertSqlSafe(sql))
                .bind(after.map(|id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(ClientRow::into_record).collect()
    }

    async fn update_client(&self, c: &ClientRecord, audit: &AuditRecord) -> StoreResult<bool> {
        let sql = "update clients set name = $2, public = $3, first_party = $4, \
                   redirect_uris = $5, post_logout_redirect_uris = $6, \
                   backchannel_logout_uri = $7, grant_types = $8, scopes = $9, \
                   id_token_signed_response_alg = $10, updated_at = $11 \
                   where id = $1";
        let mut tx = self.begin().await?;
        let updated = with_db!(&mut tx, |tx| {
            sqlx::query(sql)
                .bind(c.id.to_string())
                .bind(&c.name)
                .bind(c.public)
                .bind(c.first_party)
                .bind(to_json(&c.redirect_uris))
                .bind(to_json(&c.post_logout_redirect_uris))
                .bind(&c.backchannel_logout_uri)
                .bind(to_json(&c.grant_types))
                .bind(to_json(&c.scopes))
                .bind(&c.id_token_signed_response_alg)
                .bind(c.updated_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        if updated == 1 {
            Self::insert_audit_on(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn set_client_secret(
        &self,
        id: Uuid,
        secret_hash: &[u8],
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let sql = "update clients set secret_hash = $2, secret_created_at = $3, updated_at = $3 \
                   where id = $1";
        let mut tx = self.begin().await?;
        let updated = with_db!(&mut tx, |tx| {
            sqlx::query(sql)
                .bind(id.to_string())
                .bind(secret_hash)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        if updated == 1 {
            Self::insert_audit_on(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn delete_client(
        &self,
        id: Uuid,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Vec<Uuid>>> {
        let client = id.to_string();
        let mut tx = self.begin().await?;
        // Its sessions end first, while the client row is still there to
        // say where their logout tokens go.
        let ended = Self::end_sessions_on(
            &mut tx,
            Ending::Client {
                client: &client,
                user: None,
            },
            now,
        )
        .await?;
        // Codes and consents go with the client (their foreign keys say so
        // on PostgreSQL; SQLite may run without foreign keys enforced, so
        // they are deleted here on both).
        let deleted = with_db!(&mut tx, |tx| {
            sqlx::query("delete from authorization_codes where client_id = $1")
                .bind(&client)
                .execute(&mut **tx)
                .await?;
            sqlx::query("delete from consents where client_id = $1")
                .bind(&client)
                .execute(&mut **tx)
                .await?;
            sqlx::query("delete from clients where id = $1")
                .bind(&client)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        if deleted == 0 {
            // Dropped: rolls back (there was nothing to end).
            return Ok(None);
        }
        Self::insert_audit_on(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(ended))
    }

    async fn put_consent(&self, c: &ConsentRecord) -> StoreResult<()> {
        let sql = "insert into consents (user_id, client_id, scopes, granted_at) \
                   values ($1, $2, $3, $4) \
                   on conflict (user_id, client_id) \
                   do update set scopes = excluded.scopes, granted_at = excluded.granted_at";
        with_db!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(c.user_id.to_string())
                .bind(c.client_id.to_string())
                .bind(to_json(&c.scopes))
                .bind(c.granted_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn consent(&self, user: Uuid, client: Uuid) -> StoreResult<Option<ConsentRecord>> {
        let sql = "select user_id, client_id, scopes, granted_at from consents \
                   where user_id = $1 and client_id = $2";
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, ConsentRow>(sql)
                .bind(user.to_string())
                .bind(client.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(ConsentRow::into_record).transpose()
    }

    async fn user_consents(&self, user: Uuid) -> StoreResult<Vec<(ConsentRecord, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            consent: ConsentRow,
            name: String,
        }
        let sql = "select c.user_id, c.client_id, c.scopes, c.granted_at, k.name \
                   from consents c join clients k on k.id = c.client_id \
                   where c.user_id = $1 order by c.granted_at desc, c.client_id";
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, Row>(sql)
                .bind(user.to_string())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| Ok((r.consent.into_record()?, r.name)))
            .collect()
    }

    async fn delete_consent(
        &self,
        user: Uuid,
        client: Uuid,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Vec<Uuid>>> {
        let (user, client) = (user.to_string(), client.to_string());
        let mut tx = self.begin().await?;
        let deleted = with_db!(&mut tx, |tx| {
            sqlx::query("delete from consents where user_id = $1 and client_id = $2")
                .bind(&user)
                .bind(&client)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        if deleted == 0 {
            tx.commit().await?;
            return Ok(None);
        }
        let ended = Self::end_sessions_on(
            &mut tx,
            Ending::Client {
                client: &client,
                user: Some(&user),
            },
            now,
        )
        .await?;
        Self::insert_audit_on(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(ended))
    }

    async fn insert_code(&self, c: &AuthorizationCodeRecord) -> StoreResult<()> {
        let sql = format!(
            "insert into authorization_codes ({CODE_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        with_db!(&self.db, |pool| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(&c.hash)
                .bind(c.client_id.to_string())
                .bind(c.user_id.to_string())
                .bind(c.browser_session.to_string())
                .bind(&c.redirect_uri)
                .bind(&c.code_challenge)
                .bind(&c.scope)
                .bind(&c.nonce)
                .bind(c.auth_time)
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.used_at)
                .bind(c.session_id.map(|id| id.to_string()))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn redeem_code(
        &self,
        hash: &[u8],
        session: Uuid,
        now: i64,
    ) -> StoreResult<CodeRedemption> {
        // One conditional update decides: only the first redemption finds
        // `used_at` null (PostgreSQL re-checks the condition after waiting
        // for a concurrent one's row lock; SQLite runs writes one at a
        // time).
        let spend = format!(
            "update authorization_codes set used_at = $2, session_id = $3 \
             where hash = $1 and used_at is null and expires_at > $2 \
             returning {CODE_COLUMNS}"
        );
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, CodeRow>(AssertSqlSafe(spend))
                .bind(hash)
                .bind(now)
                .bind(session.to_string())
                .fetch_optional(pool)
                .await?
        });
        if let Some(row) = row {
            return Ok(CodeRedemption::Redeemed(row.into_record()?));
        }
        // Not spendable: used before (a replay, even once expired, as long
        // as the row is kept), or unknown or expired.
        let sql = format!(
            "select {CODE_COLUMNS} from authorization_codes where hash = $1 and used_at is not null"
        );
        let row = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, CodeRow>(AssertSqlSafe(sql))
                .bind(hash)
                .fetch_optional(pool)
                .await?
        });
        Ok(match row {
            Some(row) => CodeRedemption::Replayed(row.into_record()?),
            None => CodeRedemption::Unknown,
        })
    }
}
