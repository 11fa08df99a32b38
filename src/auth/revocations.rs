//! The revocation feed: the token gate ([`UserGate`]) published to resource
//! servers, so a service that verifies warden's tokens offline (with
//! `warden-guard`) also refuses those of ended sessions and of users whose
//! tokens died — within about a second, without a shared database.
//!
//! `GET /token/revocations?cursor=C&wait=S` answers the gate's state in
//! full, or what changed after the cursor; with nothing new it waits (a
//! long-poll) until the gate changes or `wait` seconds have passed. The
//! cursor names this process (a boot id drawn at start), the gate's
//! sequence number (every entry gets one when it is inserted or changes),
//! and a fingerprint of the published state (XOR of a fixed-key hash of
//! each entry). A cursor of this process gets the entries changed after its
//! sequence number. A cursor of another process — another instance on the
//! same database behind a load balancer, or this one before a restart —
//! cannot be compared by sequence number; if its fingerprint equals the
//! current one the consumer already holds this state and gets a delta from
//! here, otherwise the whole state. A missing or unreadable cursor gets the
//! whole state.
//!
//! Nothing here touches the token check: the gate's writers bump a watch
//! channel, which is what a waiting poll listens to.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::tokens::{self, FeedEntry, FeedView, UserGate};

/// The longest a poll may wait for a change, in seconds (`wait`'s bound).
pub const MAX_WAIT_SECS: u64 = 55;

/// Slack (seconds) past an access-token lifetime during which an entry is
/// still published: the clocks of warden and the resource servers differ a
/// little. The same slack the gate keeps entries for.
pub const SLACK: i64 = 60;

/// Where a consumer stands, as read from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    boot: u64,
    seq: u64,
    fingerprint: u64,
}

impl Cursor {
    fn encode(&self) -> String {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.boot.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.seq.to_be_bytes());
        bytes[16..].copy_from_slice(&self.fingerprint.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let word = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        (bytes.len() == 24).then(|| Self {
            boot: word(0),
            seq: word(8),
            fingerprint: word(16),
        })
    }
}

/// One answer of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// Where the next poll continues.
    pub cursor: String,
    /// `true`: `entries` is the whole state (replace yours); `false`: what
    /// changed (merge it).
    pub full: bool,
    pub entries: Vec<FeedEntry>,
}

/// This process's side of the feed: its boot id, and the signal that ends
/// every waiting poll when the server shuts down.
pub struct RevocationFeed {
    boot: u64,
    closing: watch::Sender<bool>,
}

impl Default for RevocationFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl RevocationFeed {
    /// A feed with a fresh random boot id.
    pub fn new() -> Self {
        Self {
            boot: uuid::Uuid::new_v4().as_u64_pair().0,
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every waiting poll (each answers at once) and keeps new ones
    /// from waiting: the server is shutting down, and a poll should not
    /// hold the graceful shutdown for up to [`MAX_WAIT_SECS`].
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn cursor(&self, view: &FeedView) -> String {
        Cursor {
            boot: self.boot,
            seq: view.watermark,
            fingerprint: view.fingerprint,
        }
        .encode()
    }

    /// Answers a poll of `gate` from `cursor`, waiting up to `wait` for a
    /// change when there is nothing new. `access_token_ttl` (seconds)
    /// bounds what is published: entries that can no longer affect an
    /// unexpired token are left out.
    pub async fn poll(
        &self,
        gate: &Arc<UserGate>,
        cursor: Option<&str>,
        wait: Duration,
        access_token_ttl: u64,
    ) -> FeedPage {
        let horizon = || tokens::now() - access_token_ttl as i64 - SLACK;
        // Subscribed before the first read: a change after it wakes the
        // wait below.
        let mut changes = gate.subscribe();
        let mut closing = self.closing.subscribe();
        let since = match cursor.and_then(Cursor::decode) {
            Some(c) if c.boot == self.boot && c.seq <= gate.watermark() => Some(c.seq),
            Some(c) if c.boot != self.boot => {
                // Another process's cursor: up to date if it saw this state.
                let view = gate.feed(Some(u64::MAX), horizon());
                (view.fingerprint == c.fingerprint).then_some(view.watermark)
            }
            _ => None,
        };
        let Some(since) = since else {
            let view = gate.feed(None, horizon());
            return FeedPage {
                cursor: self.cursor(&view),
                full: true,
                entries: view.entries,
            };
        };
        let deadline = Instant::now() + wait;
        loop {
            let view = gate.feed(Some(since), horizon());
            let done = !view.entries.is_empty() || *closing.borrow() || Instant::now() >= deadline;
            if done {
                return FeedPage {
                    cursor: self.cursor(&view),
                    full: false,
                    entries: view.entries,
                };
            }
            tokio::select! {
                // `Err`: the gate is gone, which a running server never sees.
                r = changes.changed() => if r.is_err() { tokio::time::sleep_until(deadline).await },
                _ = closing.changed() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_cursor_reads_back_and_garbage_does_not() {
        let c = Cursor {
            boot: 7,
            seq: u64::MAX,
            fingerprint: 0xdead_beef,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "x", "not a cursor at all, not at all!", "%%%%"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_delta_has_only_what_changed_after_the_cursor() {
        let gate = Arc::new(UserGate::default());
        let feed = RevocationFeed::new();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let now = tokens::now();
        gate.revoke_session(a, now);
        let first = feed.poll(&gate, None, Duration::ZERO, 900).await;
        assert!(first.full);
        assert_eq!(
            first.entries,
            [FeedEntry::Session {
                sid: a,
                ended_at: now
            }]
        );
        let empty = feed
            .poll(&gate, Some(&first.cursor), Duration::ZERO, 900)
            .await;
        assert!(!empty.full && empty.entries.is_empty());
        gate.revoke_session(b, now);
        let delta = feed
            .poll(&gate, Some(&empty.cursor), Duration::ZERO, 900)
            .await;
        assert!(!delta.full);
        assert_eq!(
            delta.entries,
            [FeedEntry::Session {
                sid: b,
                ended_at: now
            }]
        );
    }

    #[tokio::test]
    async fn another_processes_cursor_is_up_to_date_only_with_the_same_state() {
        let gate = Arc::new(UserGate::default());
        let sid = Uuid::now_v7();
        gate.revoke_session(sid, tokens::now());
        let (here, there) = (RevocationFeed::new(), RevocationFeed::new());
        let theirs = there.poll(&gate, None, Duration::ZERO, 900).await;
        let page = here
            .poll(&gate, Some(&theirs.cursor), Duration::ZERO, 900)
            .await;
        assert!(!page.full && page.entries.is_empty(), "{page:?}");

        let other_gate = Arc::new(UserGate::default());
        let page = here
            .poll(&other_gate, Some(&theirs.cursor), Duration::ZERO, 900)
            .await;
        assert!(page.full, "a different state is sent in full");
    }

    #[tokio::test]
    async fn a_waiting_poll_wakes_on_a_change_and_on_close() {
        let gate = Arc::new(UserGate::default());
        let feed = Arc::new(RevocationFeed::new());
        let start = feed.poll(&gate, None, Duration::ZERO, 900).await;
        let waiting = {
            let (gate, feed, cursor) = (gate.clone(), feed.clone(), start.cursor.clone());
            tokio::spawn(async move {
                feed.poll(&gate, Some(&cursor), Duration::from_secs(30), 900)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sid = Uuid::now_v7();
        gate.revoke_session(sid, tokens::now());
        let page = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the change")
            .unwrap();
        assert_eq!(page.entries.len(), 1);

        let waiting = {
            let (gate, feed, cursor) = (gate.clone(), feed.clone(), page.cursor.clone());
            tokio::spawn(async move {
                feed.poll(&gate, Some(&cursor), Duration::from_secs(30), 900)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        feed.close();
        let page = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by close")
            .unwrap();
        assert!(page.entries.is_empty());
    }
}
