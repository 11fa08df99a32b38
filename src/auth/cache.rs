//! Users by id, in memory: `GET /users/me` and every route that needs the
//! current user's record answer without a database round trip, and keep
//! answering while the database is unreachable.
//!
//! Kept current by this process's writes ([`UserCache::put`],
//! [`UserCache::remove`]); a user changed elsewhere is dropped as soon as
//! the sync loop reads the change from the database's log, so another
//! instance's change is visible here as soon as its notification arrives.

use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use uuid::Uuid;

use crate::domain::profile::UserView;
use crate::storage::{Store, StoreResult, UserChange, UserRecord};

/// A cached user, with the JSON clients see of them serialized once: `GET
/// /users/me` answers with these bytes, without copying or formatting a
/// field.
pub struct CachedUser {
    record: UserRecord,
    view_json: Bytes,
}

impl CachedUser {
    fn new(record: UserRecord) -> Self {
        // A `UserView` is strings, a bool and a list of strings: serializing
        // it cannot fail.
        let json = serde_json::to_vec(&UserView::from(&record)).unwrap_or_default();
        Self {
            record,
            view_json: Bytes::from(json),
        }
    }

    /// The user's [`UserView`], as JSON.
    pub fn view_json(&self) -> Bytes {
        self.view_json.clone()
    }
}

impl Deref for CachedUser {
    type Target = UserRecord;

    fn deref(&self) -> &UserRecord {
        &self.record
    }
}

/// At most this many users are cached; past it the cache is cleared and
/// refills with whoever is active. Bounds memory without bookkeeping on the
/// hot path.
const MAX_USERS: usize = 100_000;

#[derive(Default)]
pub struct UserCache {
    users: DashMap<Uuid, Arc<CachedUser>, foldhash::fast::RandomState>,
}

impl UserCache {
    /// The user, from memory or else from the store.
    pub async fn get(&self, store: &dyn Store, id: Uuid) -> StoreResult<Option<Arc<CachedUser>>> {
        if let Some(u) = self.users.get(&id) {
            return Ok(Some(u.clone()));
        }
        let Some(user) = store.user_by_id(id).await? else {
            return Ok(None);
        };
        let user = Arc::new(CachedUser::new(user));
        self.insert(user.clone());
        Ok(Some(user))
    }

    /// Records a user this process just wrote.
    pub fn put(&self, user: &UserRecord) {
        self.insert(Arc::new(CachedUser::new(user.clone())));
    }

    fn insert(&self, user: Arc<CachedUser>) {
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
