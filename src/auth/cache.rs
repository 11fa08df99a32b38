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
use crate::domain::{UserChange, UserRecord};
use crate::storage::{Store, StoreResult};

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
        Ok(Some(self.fill(user)))
    }

    /// Caches `read`, a record read from the store, unless the cache
    /// already holds the same or a newer revision of the user: a write of
    /// this process that committed after the read began (and was
    /// [`UserCache::put`] while the read was in flight) must not be undone
    /// by the older row. Returns what the cache holds now.
    fn fill(&self, read: UserRecord) -> Arc<CachedUser> {
        use dashmap::mapref::entry::Entry;
        if self.users.len() >= MAX_USERS {
            self.users.clear();
        }
        match self.users.entry(read.id) {
            Entry::Occupied(cached) if cached.get().revision >= read.revision => {
                cached.get().clone()
            }
            Entry::Occupied(mut cached) => {
                let fresh = Arc::new(CachedUser::new(read));
                cached.insert(fresh.clone());
                fresh
            }
            Entry::Vacant(slot) => slot.insert(Arc::new(CachedUser::new(read))).clone(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(revision: i64, full_name: &str) -> UserRecord {
        let mut u = UserRecord::new(
            "alice".to_owned(),
            "alice@example.com".to_owned(),
            Some(full_name.to_owned()),
            "$argon2id$placeholder".to_owned(),
            vec!["user".to_owned()],
            1000,
        );
        u.id = Uuid::from_u128(7);
        u.revision = revision;
        u
    }

    #[test]
    fn a_read_older_than_a_local_write_does_not_replace_it() {
        let cache = UserCache::default();
        // A read of revision 3 is in flight when this process writes
        // revision 4; the read finishes last.
        cache.put(&alice(4, "Alice Written"));
        let held = cache.fill(alice(3, "Alice Read"));
        assert_eq!(
            (held.revision, held.full_name.as_deref()),
            (4, Some("Alice Written"))
        );
        let cached = cache.users.get(&Uuid::from_u128(7)).unwrap().clone();
        assert_eq!(cached.revision, 4);
        assert!(
            String::from_utf8_lossy(&cached.view_json()).contains("Alice Written"),
            "the served JSON is the written user's"
        );
    }

    #[test]
    fn a_newer_read_replaces_an_older_entry_and_fills_an_empty_one() {
        let cache = UserCache::default();
        assert_eq!(cache.fill(alice(2, "Two")).revision, 2);
        cache.put(&alice(2, "Two"));
        let held = cache.fill(alice(5, "Five"));
        assert_eq!(
            (held.revision, held.full_name.as_deref()),
            (5, Some("Five"))
        );
        assert_eq!(cache.users.get(&Uuid::from_u128(7)).unwrap().revision, 5);
    }
}
