//! The outbox queries (see [`OutboxStore`]): rows are inserted in the
//! transaction of the change that causes them, then claimed with a lease,
//! marked done or rescheduled by the worker in `auth::outbox`.

use async_trait::async_trait;
use uuid::Uuid;

use super::sql::{Backend, SqlStore, Tx, parse_uuid, with_db};
use super::{OutboxStore, StoreResult};
use crate::domain::OutboxItem;

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: String,
    kind: String,
    payload: String,
    created_at: i64,
    attempts: i64,
}

impl SqlStore {
    /// Queues a side effect of `kind`, due at once, in `tx`.
    pub(super) async fn insert_outbox_on(
        tx: &mut Tx,
        kind: &str,
        payload: &str,
        now: i64,
    ) -> StoreResult<()> {
        let sql = "insert into outbox (id, kind, payload, created_at, due_at, attempts, failed) \
                   values ($1, $2, $3, $4, $4, 0, $5)";
        with_db!(&mut *tx, |tx| {
            sqlx::query(sql)
                .bind(Uuid::now_v7().to_string())
                .bind(kind)
                .bind(payload)
                .bind(now)
                .bind(false)
                .execute(&mut **tx)
                .await?;
        });
        Ok(())
    }
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn claim_outbox(
        &self,
        kind: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxItem>> {
        // The conditions again in the outer WHERE: on PostgreSQL a second
        // instance whose subquery picked the same row waits for the first
        // one's update, re-reads the row and finds it leased, so no row is
        // claimed twice. SQLite runs one write at a time.
        let sql = "update outbox set locked_until = $3, attempts = attempts + 1 \
                   where id in (select id from outbox \
                                where kind = $1 and done_at is null and due_at <= $2 \
                                  and (locked_until is null or locked_until < $2) \
                                order by due_at limit $4) \
                     and kind = $1 and done_at is null and due_at <= $2 \
                     and (locked_until is null or locked_until < $2) \
                   returning id, kind, payload, created_at, attempts";
        let rows = with_db!(&self.db, |pool| {
            sqlx::query_as::<_, OutboxRow>(sql)
                .bind(kind)
                .bind(now)
                .bind(lease_until)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: parse_uuid(&r.id, "outbox.id")?,
                    kind: r.kind,
                    payload: r.payload,
                    created_at: r.created_at,
                    attempts: r.attempts,
                })
            })
            .collect()
    }

    async fn outbox_done(&self, id: Uuid, now: i64) -> StoreResult<()> {
        let sql = "update outbox set done_at = $2, locked_until = null, last_error = null \
                   where id = $1";
        with_db!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(id.to_string())
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn outbox_retry(&self, id: Uuid, due_at: i64, error: &str) -> StoreResult<()> {
        let sql = "update outbox set due_at = $2, locked_until = null, last_error = $3 \
                   where id = $1";
        with_db!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(id.to_string())
                .bind(due_at)
                .bind(error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn outbox_failed(&self, id: Uuid, now: i64, error: &str) -> StoreResult<()> {
        let sql = "update outbox set done_at = $2, failed = $3, locked_until = null, \
                   last_error = $4 where id = $1";
        with_db!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(id.to_string())
                .bind(now)
                .bind(true)
                .bind(error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn outbox_depth(&self) -> StoreResult<i64> {
        let sql = "select count(*) from outbox where done_at is null";
        Ok(with_db!(&self.db, |pool| {
            sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?
        }))
    }
}
