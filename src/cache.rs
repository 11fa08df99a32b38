//! Users by id, in memory: `GET /users/me` and every route that needs the
//! current user's record answer without a database round trip, and keep
//! answering while the database is unreachable.
//!
//! Kept current by this process's writes ([`UserCache::put`],
//! [`UserCache::remove`]); a user changed elsewhere is dropped as soon as
//! the sync loop reads the change from the database's log, so another
//! instance's change is visible here as soon as its notification arrives.

use std::sync::Arc;

use dashmap::DashMap;
use uuid::Uuid;

use crate::storage::{Store, StoreResult, UserChange, UserRecord};

/// At most this many users are cached; past it the cache is cleared and
/// refills with whoever is active. Bounds memory without bookkeeping on the
/// hot path.
const MAX_USERS: usize = 100_000;

#[derive(Default)]
pub struct UserCache {
    users: DashMap<Uuid, Arc<UserRecord>>,
}

impl UserCache {
    /// The user, from memory or else from the store.
    pub async fn get(&self, store: &dyn Store, id: Uuid) -> StoreResult<Option<Arc<UserRecord>>> {
        if let Some(u) = self.users.get(&id) {
            return Ok(Some(u.clone()));
        }
        let Some(user) = store.user_by_id(id).await? else {
            return Ok(None);
        };
        let user = Arc::new(user);
        self.insert(user.clone());
        Ok(Some(user))
    }

    /// Records a user this process just wrote.
    pub fn put(&self, user: &UserRecord) {
        self.insert(Arc::new(user.clone()));
    }

    fn insert(&self, user: Arc<UserRecord>) {
        if self.users.len() >= MAX_USERS {
            self.users.clear();
        }
        self.users.insert(user.id, user);
    }

    pub fn remove(&self, id: Uuid) {
        self.users.remove(&id);
    }

    /// Drops the cached copies that `changes` (from the database's change
    /// log) make stale.
    pub fn apply_changes(&self, changes: &[UserChange]) {
        for c in changes {
            self.users.remove_if(&c.id, |_, cached| {
                c.current.is_none_or(|now| now.revision != cached.revision)
            });
        }
    }

    pub fn clear(&self) {
        self.users.clear();
    }
}
