//! Verified tokens, remembered: a token seen before skips the JOSE header
//! parse, the signature check (tens of microseconds for EdDSA) and the claims
//! decode. What the cache may not skip is re-checked on every hit by the
//! verifier: `exp` and `nbf` against the clock, and the revocation hook.
//!
//! Keyed by the exact token bytes (compared in full, not just by hash), so
//! only a byte-identical token can hit. Bounded: each shard holds at most
//! `capacity / SHARDS` entries; a full shard first drops expired entries,
//! then evicts one arbitrary entry. An entry also records the key-set
//! generation it was verified under, so replacing the keys invalidates every
//! entry at once, even one inserted by a verification that raced the swap.

use std::hash::BuildHasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;

use crate::claims::Verified;

/// Shards keep one core's inserts from blocking another core's lookups.
const SHARDS: usize = 16;

struct Entry {
    token: Box<str>,
    claims: Verified,
    generation: u64,
}

pub(crate) struct TokenCache {
    shards: Box<[RwLock<HashTable<Entry>>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
    generation: AtomicU64,
}

impl TokenCache {
    /// A cache of about `capacity` tokens; 0 disables caching.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            per_shard,
            hasher: foldhash::fast::RandomState::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation to pass to [`TokenCache::insert`]: read it *before*
    /// loading the keys used to verify.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets every entry (logically at once; memory is reclaimed as
    /// shards are next written).
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Entry>> {
        // The high bits pick the shard; hashbrown uses the low bits and the
        // top 7 for its control bytes, so reuse across the two is harmless.
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    pub(crate) fn get(&self, token: &str) -> Option<Verified> {
        if self.per_shard == 0 {
            return None;
        }
        let hash = self.hasher.hash_one(token);
        let generation = self.generation();
        let shard = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
        shard
            .find(hash, |e| &*e.token == token)
            .filter(|e| e.generation == generation)
            .map(|e| e.claims.clone())
    }

    pub(crate) fn insert(&self, token: &str, claims: Verified, generation: u64, now: i64) {
        if self.per_shard == 0 || generation != self.generation() {
            return;
        }
        let hash = self.hasher.hash_one(token);
        let mut shard = self.shard(hash).write().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut found) = shard.find_entry(hash, |e| &*e.token == token) {
            let e = found.get_mut();
            e.claims = claims;
            e.generation = generation;
            return;
        }
        if shard.len() >= self.per_shard {
            let current = self.generation();
            shard.retain(|e| e.generation == current && e.claims.exp() > now);
        }
        if shard.len() >= self.per_shard {
            // hashbrown's iteration order follows the hash, which is keyed
            // per process: the first entry is an arbitrary one.
            shard.extract_if(|_| true).next();
        }
        shard.insert_unique(
            hash,
            Entry {
                token: token.into(),
                claims,
                generation,
            },
            |e| self.hasher.hash_one(&*e.token),
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}
