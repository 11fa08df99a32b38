//! Users by id, in memory: `GET /users/me` and every route that needs the
//! current user's record answer without a database round trip, and keep
//! answering while the database is unreachable.
//!
//! Kept current by this process's writes ([`UserCache::put`],
//! [`UserCache::remove`]); cleared whenever the sync loop sees a write made
//! elsewhere, so another instance's change is visible here as soon as its
//! notification arrives.

use std::sync::Arc;

use dashmap::DashMap;
use uuid::Uuid;

use crate::storage::{Store, StoreResult, UserRecord};

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

    /// Keeps only users whose cached copy is still current: present in
    /// `revisions` (id → revision, read from the database) at the same
    /// revision.
    pub fn retain_current(&self, revisions: &std::collections::HashMap<Uuid, i64>) {
        self.users
            .retain(|id, u| revisions.get(id) == Some(&u.revision));
    }
}
