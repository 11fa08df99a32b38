//! Failed-login throttling: sliding windows per (account, client address)
//! pair, per client address, and per account.
//!
//! Each limit is the number of failures allowed in the window; after that
//! many, the next attempt is refused (429) until the oldest failure leaves
//! the window. An attempt counts as a failure from the moment it is let
//! through — so a burst of parallel guesses cannot all slip past the limit
//! while the first ones are still being hashed — and is taken back if the
//! password turns out right, which also clears the pair's counter. There is
//! no permanent lock-out.
//!
//! State is per process (see the README's multi-instance notes), in memory,
//! and bounded: windows are pruned as they are touched and swept with the
//! background purge.

use std::collections::VecDeque;
use std::hash::Hash;

use dashmap::DashMap;

/// Past this many tracked pairs, a sweep runs on the next attempt.
const MAX_TRACKED: usize = 200_000;

/// Limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window: i64,
    pub per_pair: u32,
    pub per_address: u32,
    pub per_account: u32,
}

/// One sliding window per key: the times (unix seconds) of its failures.
struct Windows<K> {
    map: DashMap<K, VecDeque<i64>>,
}

impl<K: Eq + Hash + Clone> Windows<K> {
    fn new() -> Self {
        Self {
            map: DashMap::new(),
        }
    }

    /// Seconds until `key` may try again, if it is over `limit`.
    fn blocked_for(&self, key: &K, limit: u32, window: i64, now: i64) -> Option<i64> {
        let mut entry = self.map.get_mut(key)?;
        let times = entry.value_mut();
        while times.front().is_some_and(|&t| t <= now - window) {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            times.front().map(|&oldest| (oldest + window - now).max(1))
        } else {
            None
        }
    }

    fn record(&self, key: K, now: i64) {
        self.map.entry(key).or_default().push_back(now);
    }

    /// Takes back one failure recorded at `at`.
    fn forget_one(&self, key: &K, at: i64) {
        if let Some(mut times) = self.map.get_mut(key)
            && let Some(pos) = times.iter().rposition(|&t| t == at)
        {
            times.remove(pos);
        }
    }

    fn clear(&self, key: &K) {
        self.map.remove(key);
    }

    fn sweep(&self, window: i64, now: i64) {
        self.map
            .retain(|_, times| times.back().is_some_and(|&t| t > now - window));
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A login attempt let through; report how it ended.
#[must_use]
pub struct Attempt {
    account: String,
    address: String,
    at: i64,
}

pub struct Throttle {
    limits: Limits,
    pairs: Windows<(String, String)>,
    addresses: Windows<String>,
    accounts: Windows<String>,
    registrations: Windows<String>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pairs: Windows::new(),
            addresses: Windows::new(),
            accounts: Windows::new(),
            registrations: Windows::new(),
        }
    }

    /// Lets a login attempt through, or says how many seconds to wait.
    pub fn begin_login(&self, account: &str, address: &str, now: i64) -> Result<Attempt, i64> {
        let l = self.limits;
        if self.pairs.len() > MAX_TRACKED {
            // Someone is spraying many accounts or addresses: drop windows
            // that have emptied, keeping memory bounded.
            self.sweep(now);
        }
        let pair = (account.to_owned(), address.to_owned());
        let wait = [
            self.pairs.blocked_for(&pair, l.per_pair, l.window, now),
            self.addresses
                .blocked_for(&address.to_owned(), l.per_address, l.window, now),
            self.accounts
                .blocked_for(&account.to_owned(), l.per_account, l.window, now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        self.pairs.record(pair, now);
        self.addresses.record(address.to_owned(), now);
        self.accounts.record(account.to_owned(), now);
        Ok(Attempt {
            account: account.to_owned(),
            address: address.to_owned(),
            at: now,
        })
    }

    /// The password was right: the attempt was no failure, and the pair
    /// starts afresh.
    pub fn succeeded(&self, attempt: Attempt) {
        self.pairs
            .clear(&(attempt.account.clone(), attempt.address.clone()));
        self.addresses.forget_one(&attempt.address, attempt.at);
        self.accounts.forget_one(&attempt.account, attempt.at);
    }

    /// The attempt failed: it stays counted.
    pub fn failed(&self, attempt: Attempt) {
        drop(attempt);
    }

    /// Lets a registration from `address` through (at most `per_address`
    /// per window, successful or not), or says how long to wait.
    pub fn begin_registration(&self, address: &str, now: i64) -> Result<(), i64> {
        let l = self.limits;
        if let Some(wait) =
            self.registrations
                .blocked_for(&address.to_owned(), l.per_address, l.window, now)
        {
            return Err(wait);
        }
        self.registrations.record(address.to_owned(), now);
        Ok(())
    }

    /// Drops windows with nothing left in them.
    pub fn sweep(&self, now: i64) {
        let w = self.limits.window;
        self.pairs.sweep(w, now);
        self.addresses.sweep(w, now);
        self.accounts.sweep(w, now);
        self.registrations.sweep(w, now);
    }

    /// Keys tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.pairs.len() + self.addresses.len() + self.accounts.len() + self.registrations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(Limits {
            window: 900,
            per_pair: 5,
            per_address: 50,
            per_account: 100,
        })
    }

    #[test]
    fn five_failures_then_429_until_the_oldest_leaves_the_window() {
        let t = throttle();
        for i in 0..5 {
            let a = t.begin_login("alice", "1.2.3.4", 1000 + i).unwrap();
            t.failed(a);
        }
        assert_eq!(t.begin_login("alice", "1.2.3.4", 1010).err(), Some(890));
        // Another address, or another account, is not blocked by the pair.
        assert!(t.begin_login("alice", "5.6.7.8", 1010).is_ok());
        assert!(t.begin_login("bob", "1.2.3.4", 1010).is_ok());
        // The first failure leaves the window at 1900.
        assert!(t.begin_login("alice", "1.2.3.4", 1899).is_err());
        assert!(t.begin_login("alice", "1.2.3.4", 1900).is_ok());
    }

    #[test]
    fn success_clears_the_pair_and_is_not_a_failure() {
        let t = throttle();
        for i in 0..4 {
            t.failed(t.begin_login("alice", "1.2.3.4", 1000 + i).unwrap());
        }
        t.succeeded(t.begin_login("alice", "1.2.3.4", 1005).unwrap());
        for i in 0..5 {
            t.failed(t.begin_login("alice", "1.2.3.4", 1010 + i).unwrap());
        }
        assert!(t.begin_login("alice", "1.2.3.4", 1020).is_err());
    }

    #[test]
    fn in_flight_attempts_count_so_bursts_cannot_overshoot() {
        let t = throttle();
        let held: Vec<Attempt> = (0..5)
            .map(|_| t.begin_login("alice", "1.2.3.4", 1000).unwrap())
            .collect();
        assert!(t.begin_login("alice", "1.2.3.4", 1000).is_err());
        drop(held);
    }

    #[test]
    fn the_address_and_account_limits_catch_spraying() {
        let t = Throttle::new(Limits {
            window: 900,
            per_pair: 5,
            per_address: 3,
            per_account: 4,
        });
        for (i, user) in ["a", "b", "c"].iter().enumerate() {
            t.failed(t.begin_login(user, "9.9.9.9", 1000 + i as i64).unwrap());
        }
        assert!(t.begin_login("d", "9.9.9.9", 1005).is_err(), "per address");
        for (i, addr) in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]
            .iter()
            .enumerate()
        {
            t.failed(t.begin_login("victim", addr, 1000 + i as i64).unwrap());
        }
        assert!(
            t.begin_login("victim", "5.5.5.5", 1005).is_err(),
            "per account"
        );
    }

    #[test]
    fn sweeping_forgets_old_windows() {
        let t = throttle();
        t.failed(t.begin_login("alice", "1.2.3.4", 1000).unwrap());
        assert_eq!(t.tracked(), 3);
        t.sweep(1000 + 900);
        assert_eq!(t.tracked(), 0);
    }
}
