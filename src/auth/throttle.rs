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
//! The per-account limit slows down rather than blocks (lock-out
//! resistance): over it, an account still admits one attempt every
//! [`Limits::slow_interval`] seconds (at most 30), so `Retry-After` is short
//! and its owner gets in after a short wait while a distributed guesser gets
//! a few tries a minute. A known device (a valid `warden_device` cookie of
//! the account, see `devices.rs`) is exempt from the per-account and the
//! per-address limits; the pair limit still holds.
//!
//! "Account" is the login as typed (folded): a username and an email of one
//! user have separate counters, so that the throttle's answers do not tell
//! an attacker which email belongs to which username.
//!
//! Refusals are reported (audit) once per blocking key and window, with the
//! number of refusals since: a flood of refused attempts writes a handful of
//! rows, not one per request.
//!
//! State is per process (see the README's multi-instance notes), in memory,
//! and bounded: every failure also goes into a time-ordered queue, and each
//! attempt expires at most [`EXPIRE_PER_CALL`] of the oldest entries per
//! map, dropping windows that have emptied. An attempt's cost stays
//! bounded however many keys are tracked (a full sweep per attempt, past
//! 200 k pairs, cost a scan of every map); the background purge sweeps the
//! rest.

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// Entries each attempt expires per map, at most. More than one, so that
/// expiry outpaces recording (each attempt records at most one failure
/// per map) and a backlog — after a quiet spell — drains.
const EXPIRE_PER_CALL: usize = 8;

/// Limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window: i64,
    pub per_pair: u32,
    pub per_address: u32,
    pub per_account: u32,
}

/// The longest `Retry-After` of the per-account limit (API.md).
const MAX_SLOW_INTERVAL: i64 = 30;

impl Limits {
    /// Seconds between attempts an account over its limit still admits:
    /// the limit's own average rate (900 s / 100 failures = one per 9 s by
    /// default), at least 1 and at most 30.
    pub fn slow_interval(&self) -> i64 {
        (self.window / i64::from(self.per_account.max(1))).clamp(1, MAX_SLOW_INTERVAL)
    }
}

/// Which limit refused an attempt, and the key it counts under; a refusal
/// is reported once per such key and window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Blocked {
    Pair(String, String),
    Address(String),
    Account(String),
}

impl Blocked {
    /// The limit's name, for the audit event's detail.
    pub fn limit(&self) -> &'static str {
        match self {
            Blocked::Pair(..) => "account_and_address",
            Blocked::Address(_) => "address",
            Blocked::Account(_) => "account",
        }
    }
}

/// A refused attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Seconds until the attempt may be made again (`Retry-After`).
    pub wait: i64,
    pub blocked: Blocked,
    /// `Some(n)`: write an audit event now, saying that `n` refusals of
    /// the same key went unreported since the last one. `None`: already
    /// reported in this window.
    pub report: Option<u64>,
}

/// Entries of a map in the order they leave the window: each with its key,
/// and the time it was recorded at.
struct ExpiryQueue<K> {
    queue: Mutex<VecDeque<(i64, K)>>,
}

impl<K> ExpiryQueue<K> {
    fn new() -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
        }
    }

    fn push(&self, at: i64, key: K) {
        self.lock().push_back((at, key));
    }

    /// Takes out at most `limit` entries recorded at or before `cutoff`,
    /// oldest first. (Clocks of concurrent callers may disagree by a
    /// second, so the queue is nearly, not strictly, in order; an entry
    /// behind a newer one leaves a little late, never early.)
    fn pop_expired(&self, cutoff: i64, limit: usize) -> Vec<(i64, K)> {
        let mut queue = self.lock();
        let mut expired = Vec::new();
        while expired.len() < limit && queue.front().is_some_and(|(at, _)| *at <= cutoff) {
            expired.extend(queue.pop_front());
        }
        expired
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(i64, K)>> {
        // A panic while holding the lock leaves the queue consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One sliding window per key: the times (unix seconds) of its failures.
struct Windows<K> {
    map: DashMap<K, VecDeque<i64>>,
    /// Every failure recorded, so windows expire without a scan.
    expiry: ExpiryQueue<K>,
}

impl<K: Eq + Hash + Clone> Windows<K> {
    fn new() -> Self {
        Self {
            map: DashMap::new(),
            expiry: ExpiryQueue::new(),
        }
    }

    /// Drops what at most `limit` of the oldest failures leave behind
    /// (their times, and their keys' windows once empty); returns how many
    /// entries it looked at.
    fn expire(&self, window: i64, now: i64, limit: usize) -> usize {
        let expired = self.expiry.pop_expired(now - window, limit);
        for (_, key) in &expired {
            let empty = self.map.get_mut(key).is_some_and(|mut times| {
                while times.front().is_some_and(|&t| t <= now - window) {
                    times.pop_front();
                }
                times.is_empty()
            });
            if empty {
                self.map.remove_if(key, |_, times| times.is_empty());
            }
        }
        expired.len()
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

    /// The time of the newest failure counted for `key`.
    fn newest(&self, key: &K) -> Option<i64> {
        self.map.get(key).and_then(|times| times.back().copied())
    }

    fn record(&self, key: K, now: i64) {
        self.map.entry(key.clone()).or_default().push_back(now);
        self.expiry.push(now, key);
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

    /// Expires everything that has left the window; returns how many
    /// entries it looked at.
    fn sweep(&self, window: i64, now: i64) -> usize {
        let mut visited = self.expire(window, now, usize::MAX);
        // Windows emptied by a success (`clear`, `forget_one`) before
        // their entries' turn in the queue.
        self.map.retain(|_, times| {
            visited += 1;
            times.back().is_some_and(|&t| t > now - window)
        });
        visited
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A login attempt let through; report how it ended.
#[must_use]
#[derive(Debug)]
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
    /// Refusals per blocking key: (when last reported, refusals since).
    refusals: DashMap<Blocked, (i64, u64)>,
    /// Each report of `refusals`, in order, so reports expire without a
    /// scan like the windows do.
    refusals_expiry: ExpiryQueue<Blocked>,
    /// Entries looked at by expiry and sweeps: the work the throttle's
    /// bookkeeping costs (for tests: counted, never timed).
    work: AtomicU64,
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pairs: Windows::new(),
            addresses: Windows::new(),
            accounts: Windows::new(),
            registrations: Windows::new(),
            refusals: DashMap::new(),
            refusals_expiry: ExpiryQueue::new(),
            work: AtomicU64::new(0),
        }
    }

    /// Expires a bounded number of the oldest entries of every map.
    fn expire(&self, now: i64) {
        let w = self.limits.window;
        let mut work = self.pairs.expire(w, now, EXPIRE_PER_CALL)
            + self.addresses.expire(w, now, EXPIRE_PER_CALL)
            + self.accounts.expire(w, now, EXPIRE_PER_CALL)
            + self.registrations.expire(w, now, EXPIRE_PER_CALL);
        work += self.expire_refusals(now, EXPIRE_PER_CALL);
        self.work.fetch_add(work as u64, Ordering::Relaxed);
    }

    fn expire_refusals(&self, now: i64, limit: usize) -> usize {
        let w = self.limits.window;
        let expired = self.refusals_expiry.pop_expired(now - w, limit);
        for (at, key) in &expired {
            // Reported again since: a later entry of the queue is its. With
            // refusals since the report, the entry carries their count to
            // the next window's report (the background sweep drops it).
            self.refusals.remove_if(key, |_, (reported_at, since)| {
                reported_at == at && *since == 0
            });
        }
        expired.len()
    }

    /// Entries the throttle's expiry and sweeps have looked at so far.
    pub fn work(&self) -> u64 {
        self.work.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Lets a login attempt through, or says how long to wait. `known_device`:
    /// the request carries a valid device cookie of this account, which
    /// exempts it from the per-address and per-account limits.
    pub fn begin_login(
        &self,
        account: &str,
        address: &str,
        known_device: bool,
        now: i64,
    ) -> Result<Attempt, Refusal> {
        self.check_login(account, address, known_device, now)?;
        self.pairs
            .record((account.to_owned(), address.to_owned()), now);
        self.addresses.record(address.to_owned(), now);
        self.accounts.record(account.to_owned(), now);
        Ok(Attempt {
            account: account.to_owned(),
            address: address.to_owned(),
            at: now,
        })
    }

    /// Whether a login attempt would be refused, without letting it
    /// through: a refusal is counted (and reported) like one of
    /// [`Throttle::begin_login`], a pass records nothing. Needs no
    /// database: the password grant asks it before looking the account
    /// up, with `known_device` true when the request carries any valid
    /// device cookie (which account it belongs to, only the lookup tells),
    /// and [`Throttle::begin_login`] decides again after.
    pub fn check_login(
        &self,
        account: &str,
        address: &str,
        known_device: bool,
        now: i64,
    ) -> Result<(), Refusal> {
        let l = self.limits;
        self.expire(now);
        let pair = (account.to_owned(), address.to_owned());
        let mut refused: Option<(i64, Blocked)> = None;
        let mut refuse = |wait: Option<i64>, blocked: &dyn Fn() -> Blocked| {
            if let Some(wait) = wait
                && refused.as_ref().is_none_or(|(w, _)| wait > *w)
            {
                refused = Some((wait, blocked()));
            }
        };
        refuse(
            self.pairs.blocked_for(&pair, l.per_pair, l.window, now),
            &|| Blocked::Pair(account.to_owned(), address.to_owned()),
        );
        if !known_device {
            refuse(
                self.addresses
                    .blocked_for(&address.to_owned(), l.per_address, l.window, now),
                &|| Blocked::Address(address.to_owned()),
            );
        }
        // Over the per-account limit: the slow lane, one attempt per
        // interval after the newest counted one, whoever asks first.
        if !known_device {
            let key = account.to_owned();
            if self
                .accounts
                .blocked_for(&key, l.per_account, l.window, now)
                .is_some()
                && let Some(newest) = self.accounts.newest(&key)
                && now < newest + l.slow_interval()
            {
                refuse(Some(newest + l.slow_interval() - now), &|| {
                    Blocked::Account(account.to_owned())
                });
            }
        }
        if let Some((wait, blocked)) = refused {
            let report = self.count_refusal(&blocked, now);
            return Err(Refusal {
                wait,
                blocked,
                report,
            });
        }
        Ok(())
    }

    /// Counts a refusal of `blocked`; `Some(unreported)` when it is the
    /// first of its window and should be written to the audit log.
    fn count_refusal(&self, blocked: &Blocked, now: i64) -> Option<u64> {
        let window = self.limits.window;
        let mut entry = self
            .refusals
            .entry(blocked.clone())
            .or_insert((i64::MIN, 0));
        let (reported_at, since) = entry.value_mut();
        if *reported_at > now - window {
            *since += 1;
            None
        } else {
            let unreported = *since;
            *reported_at = now;
            *since = 0;
            drop(entry);
            self.refusals_expiry.push(now, blocked.clone());
            Some(unreported)
        }
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
        self.expire(now);
        if let Some(wait) =
            self.registrations
                .blocked_for(&address.to_owned(), l.per_address, l.window, now)
        {
            return Err(wait);
        }
        self.registrations.record(address.to_owned(), now);
        Ok(())
    }

    /// Drops everything that has left the window (the background purge).
    pub fn sweep(&self, now: i64) {
        let w = self.limits.window;
        let mut work = self.pairs.sweep(w, now)
            + self.addresses.sweep(w, now)
            + self.accounts.sweep(w, now)
            + self.registrations.sweep(w, now)
            + self.expire_refusals(now, usize::MAX);
        self.refusals.retain(|_, (reported_at, _)| {
            work += 1;
            *reported_at > now - w
        });
        self.work.fetch_add(work as u64, Ordering::Relaxed);
    }

    /// Keys tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.pairs.len()
            + self.addresses.len()
            + self.accounts.len()
            + self.registrations.len()
            + self.refusals.len()
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
            let a = t.begin_login("alice", "1.2.3.4", false, 1000 + i).unwrap();
            t.failed(a);
        }
        assert_eq!(
            t.begin_login("alice", "1.2.3.4", false, 1010)
                .err()
                .map(|r| r.wait),
            Some(890)
        );
        // Another address, or another account, is not blocked by the pair.
        assert!(t.begin_login("alice", "5.6.7.8", false, 1010).is_ok());
        assert!(t.begin_login("bob", "1.2.3.4", false, 1010).is_ok());
        // The first failure leaves the window at 1900.
        assert!(t.begin_login("alice", "1.2.3.4", false, 1899).is_err());
        assert!(t.begin_login("alice", "1.2.3.4", false, 1900).is_ok());
    }

    #[test]
    fn success_clears_the_pair_and_is_not_a_failure() {
        let t = throttle();
        for i in 0..4 {
            t.failed(t.begin_login("alice", "1.2.3.4", false, 1000 + i).unwrap());
        }
        t.succeeded(t.begin_login("alice", "1.2.3.4", false, 1005).unwrap());
        for i in 0..5 {
            t.failed(t.begin_login("alice", "1.2.3.4", false, 1010 + i).unwrap());
        }
        assert!(t.begin_login("alice", "1.2.3.4", false, 1020).is_err());
    }

    #[test]
    fn in_flight_attempts_count_so_bursts_cannot_overshoot() {
        let t = throttle();
        let held: Vec<Attempt> = (0..5)
            .map(|_| t.begin_login("alice", "1.2.3.4", false, 1000).unwrap())
            .collect();
        assert!(t.begin_login("alice", "1.2.3.4", false, 1000).is_err());
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
            t.failed(
                t.begin_login(user, "9.9.9.9", false, 1000 + i as i64)
                    .unwrap(),
            );
        }
        assert!(
            t.begin_login("d", "9.9.9.9", false, 1005).is_err(),
            "per address"
        );
        for (i, addr) in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]
            .iter()
            .enumerate()
        {
            t.failed(
                t.begin_login("victim", addr, false, 1000 + i as i64)
                    .unwrap(),
            );
        }
        assert!(
            t.begin_login("victim", "5.5.5.5", false, 1005).is_err(),
            "per account"
        );
    }

    #[test]
    fn past_200k_pairs_an_attempt_still_looks_at_a_bounded_number_of_entries() {
        // A spray of 200,001 (account, address) pairs inside one window
        // used to make every later attempt sweep every map in full.
        let t = throttle();
        let sprayed = 200_001u32;
        for i in 0..sprayed {
            let address = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            t.failed(
                t.begin_login(&format!("u{i}"), &address, false, 1000)
                    .unwrap(),
            );
        }
        assert_eq!(t.pairs.len(), sprayed as usize);
        let bound = 5 * EXPIRE_PER_CALL as u64;
        let attempts = |from: i64| {
            (from..from + 100)
                .map(|now| {
                    let before = t.work();
                    if let Ok(a) = t.begin_login("alice", "192.0.2.1", false, now) {
                        t.succeeded(a);
                    }
                    t.work() - before
                })
                .max()
                .unwrap()
        };
        // Inside the window: nothing has expired, nothing is looked at.
        assert_eq!(attempts(1001), 0);
        // Once the spray leaves the window, each attempt expires a bounded
        // share of it...
        assert!(attempts(1900) <= bound);
        assert!(t.pairs.len() < sprayed as usize);
        // ...and the background sweep the rest: memory comes back.
        t.sweep(3000);
        assert_eq!(t.tracked(), 0);
        assert_eq!(t.pairs.expiry.len(), 0);
    }

    #[test]
    fn expiry_keeps_a_key_whose_window_was_refilled() {
        let t = throttle();
        t.failed(t.begin_login("alice", "1.2.3.4", false, 1000).unwrap());
        for i in 0..4 {
            t.failed(t.begin_login("alice", "1.2.3.4", false, 1800 + i).unwrap());
        }
        // At 1900 the first failure leaves; the four later ones still
        // count, so a fifth is the last allowed.
        t.failed(t.begin_login("alice", "1.2.3.4", false, 1900).unwrap());
        assert_eq!(t.pairs.len(), 1);
        assert!(t.begin_login("alice", "1.2.3.4", false, 1901).is_err());
    }

    #[test]
    fn sweeping_forgets_old_windows() {
        let t = throttle();
        t.failed(t.begin_login("alice", "1.2.3.4", false, 1000).unwrap());
        assert_eq!(t.tracked(), 3);
        t.sweep(1000 + 900);
        assert_eq!(t.tracked(), 0);
    }

    fn flood(t: &Throttle, account: &str, failures: u32, at: i64) {
        // From as many addresses as it takes, 5 each (the pair limit).
        for i in 0..failures {
            let address = format!("10.0.{}.{}", i / 5 / 256, i / 5 % 256);
            t.failed(t.begin_login(account, &address, false, at).unwrap());
        }
    }

    #[test]
    fn over_the_account_limit_attempts_are_slowed_not_blocked() {
        let t = throttle();
        assert_eq!(t.limits().slow_interval(), 9);
        flood(&t, "victim", 100, 1000);
        // A fresh address: not exempt, but the wait is short, never the
        // rest of the window.
        let r = t
            .begin_login("victim", "192.0.2.1", false, 1001)
            .unwrap_err();
        assert_eq!(r.wait, 8);
        assert_eq!(r.blocked, Blocked::Account("victim".to_owned()));
        // After the interval, one attempt (whoever is first) goes through,
        // and the next waits the interval again.
        let a = t.begin_login("victim", "192.0.2.1", false, 1009).unwrap();
        t.failed(a);
        assert_eq!(
            t.begin_login("victim", "192.0.2.2", false, 1010)
                .unwrap_err()
                .wait,
            8
        );
        // At most one admitted per interval over a minute: a few tries.
        let admitted = (1010..1070)
            .filter(|&now| {
                t.begin_login("victim", &format!("198.51.100.{}", now % 200), false, now)
                    .map(|a| t.failed(a))
                    .is_ok()
            })
            .count();
        assert!((6..=7).contains(&admitted), "{admitted} in a minute");
    }

    #[test]
    fn a_known_device_passes_the_account_and_address_limits_not_the_pair_limit() {
        let t = throttle();
        flood(&t, "victim", 100, 1000);
        t.succeeded(t.begin_login("victim", "192.0.2.1", true, 1001).unwrap());
        // The address limit: 50 failures from one address on other
        // accounts.
        for i in 0..50 {
            t.failed(
                t.begin_login(&format!("u{i}"), "203.0.113.9", false, 1000)
                    .unwrap(),
            );
        }
        assert!(t.begin_login("victim", "203.0.113.9", false, 1001).is_err());
        t.succeeded(t.begin_login("victim", "203.0.113.9", true, 1001).unwrap());
        // The pair limit still holds for a device.
        for _ in 0..5 {
            t.failed(t.begin_login("victim", "192.0.2.7", true, 1002).unwrap());
        }
        let r = t
            .begin_login("victim", "192.0.2.7", true, 1003)
            .unwrap_err();
        assert_eq!(r.blocked.limit(), "account_and_address");
    }

    #[test]
    fn refusals_are_reported_once_per_key_and_window() {
        let t = throttle();
        for _ in 0..5 {
            t.failed(t.begin_login("alice", "1.2.3.4", false, 1000).unwrap());
        }
        let reports: Vec<Option<u64>> = (0..1000)
            .map(|_| {
                t.begin_login("alice", "1.2.3.4", false, 1001)
                    .unwrap_err()
                    .report
            })
            .collect();
        assert_eq!(reports[0], Some(0));
        assert!(reports[1..].iter().all(Option::is_none));
        // Another key is reported on its own.
        for _ in 0..5 {
            t.failed(t.begin_login("bob", "1.2.3.4", false, 1000).unwrap());
        }
        assert_eq!(
            t.begin_login("bob", "1.2.3.4", false, 1001)
                .unwrap_err()
                .report,
            Some(0)
        );
        // The next window's first refusal says how many went unreported.
        for _ in 0..5 {
            t.failed(t.begin_login("alice", "1.2.3.4", false, 1901).unwrap());
        }
        assert_eq!(
            t.begin_login("alice", "1.2.3.4", false, 1902)
                .unwrap_err()
                .report,
            Some(999)
        );
    }
}
