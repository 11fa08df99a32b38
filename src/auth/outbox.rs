//! The outbox worker: carries out the side effects the store queued with
//! the changes that cause them (today the back-channel logouts of ended
//! sessions; the rows say their `kind`, so mail can join later).
//!
//! Rows are claimed with a lease ([`OUTBOX_LEASE`]), so with several
//! instances on one database each row is run by one at a time, and a row
//! whose worker died is claimed again when its lease runs out. A failed
//! attempt is retried after 2 s, 4 s, 8 s, … at most ten minutes apart, and
//! given up (marked done and failed, logged at warn) a day after it was
//! queued. The rows live in the database, so a restart loses none.
//!
//! The worker wakes at once when this process queued something
//! ([`wake`], called by the session-ending service), and polls every
//! [`POLL_INTERVAL`] for what other processes (the CLI, another instance)
//! queued or what is due again.

use std::time::Duration;

use tokio::sync::Notify;

use crate::auth::{Services, backchannel, tokens};
use crate::domain::outbox::{OUTBOX_GIVE_UP_AFTER, OUTBOX_LEASE, outbox_backoff};
use crate::domain::{BACKCHANNEL_LOGOUT, BackchannelLogout, OutboxItem};

/// How often the worker looks for due rows when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Rows claimed (and delivered concurrently) per round.
const BATCH: u32 = 32;

/// How often the outbox depth gauge is refreshed (a count query).
const DEPTH_INTERVAL: i64 = 10;

/// The kinds this worker carries out.
const KINDS: &[&str] = &[BACKCHANNEL_LOGOUT];

static WAKE: Notify = Notify::const_new();

/// Wakes the workers of this process: something was just queued.
pub fn wake() {
    WAKE.notify_waiters();
}

/// Runs until dropped (the server's shutdown ends it at an await point: a
/// row being delivered then keeps its lease and is claimed again when it
/// runs out, so it is delivered late rather than lost).
pub async fn run(state: &Services) {
    let client = backchannel::http_client();
    let mut depth_at = 0_i64;
    loop {
        // Registered before the claim, so a wake during it is not missed.
        let woken = WAKE.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let mut claimed_any = false;
        for &kind in KINDS {
            let now = tokens::now();
            match state
                .store
                .claim_outbox(kind, now, now + OUTBOX_LEASE, BATCH)
                .await
            {
                Ok(items) => {
                    claimed_any |= !items.is_empty();
                    futures_util::future::join_all(
                        items.iter().map(|item| carry_out(state, &client, item)),
                    )
                    .await;
                }
                Err(e) => tracing::warn!(error = %e, kind, "claiming outbox rows failed"),
            }
        }
        let now = tokens::now();
        if claimed_any || now.saturating_sub(depth_at) >= DEPTH_INTERVAL {
            depth_at = now;
            match state.store.outbox_depth().await {
                Ok(depth) => metrics::gauge!("warden_outbox_depth").set(depth as f64),
                Err(e) => tracing::warn!(error = %e, "counting outbox rows failed"),
            }
        }
        if claimed_any {
            // There may be more due: look again at once.
            continue;
        }
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// One claimed row: delivered and marked done, or rescheduled, or given
/// up. Errors of the store are logged; the lease then runs out and the
/// row is claimed again.
async fn carry_out(state: &Services, client: &reqwest::Client, item: &OutboxItem) {
    let now = tokens::now();
    let attempt = match item.kind.as_str() {
        BACKCHANNEL_LOGOUT => match serde_json::from_str::<BackchannelLogout>(&item.payload) {
            Ok(logout) => backchannel::deliver(state, client, &logout, now)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => {
                // Nothing a retry could change.
                give_up(state, item, now, &format!("unreadable payload: {e}")).await;
                return;
            }
        },
        other => {
            give_up(state, item, now, &format!("unknown kind {other:?}")).await;
            return;
        }
    };
    let result = match attempt {
        Ok(()) => {
            metrics::counter!("warden_backchannel_logout_total", "result" => "delivered")
                .increment(1);
            tracing::debug!(outbox_id = %item.id, attempts = item.attempts, "back-channel logout delivered");
            state.store.outbox_done(item.id, now).await
        }
        Err(error) if now - item.created_at >= OUTBOX_GIVE_UP_AFTER => {
            give_up(state, item, now, &error).await;
            return;
        }
        Err(error) => {
            metrics::counter!("warden_backchannel_logout_total", "result" => "retry").increment(1);
            let delay = outbox_backoff(item.attempts);
            tracing::info!(
                outbox_id = %item.id,
                attempts = item.attempts,
                retry_in_seconds = delay,
                error = %error,
                "back-channel logout not delivered; will retry"
            );
            state.store.outbox_retry(item.id, now + delay, &error).await
        }
    };
    if let Err(e) = result {
        tracing::warn!(outbox_id = %item.id, error = %e, "updating an outbox row failed");
    }
}

async fn give_up(state: &Services, item: &OutboxItem, now: i64, error: &str) {
    if item.kind == BACKCHANNEL_LOGOUT {
        metrics::counter!("warden_backchannel_logout_total", "result" => "failed").increment(1);
    }
    tracing::warn!(
        outbox_id = %item.id,
        kind = %item.kind,
        attempts = item.attempts,
        error = %error,
        "outbox row given up"
    );
    if let Err(e) = state.store.outbox_failed(item.id, now, error).await {
        tracing::warn!(outbox_id = %item.id, error = %e, "updating an outbox row failed");
    }
}
