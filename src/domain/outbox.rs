//! The outbox: side effects committed in the same transaction as the change
//! that causes them and carried out afterwards by a background worker, with
//! retries, so a crash or a restart between the two loses none.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of a back-channel logout delivery.
pub const BACKCHANNEL_LOGOUT: &str = "backchannel_logout";

/// One row a worker has claimed (leased): what to do and how often it was
/// tried, this attempt included.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: Uuid,
    pub kind: String,
    /// JSON, whose shape depends on `kind`.
    pub payload: String,
    pub created_at: i64,
    pub attempts: i64,
}

/// The payload of a [`BACKCHANNEL_LOGOUT`] row: everything the delivery
/// needs, copied from the client when the session ended, so a client
/// deleted in the same transaction is still notified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackchannelLogout {
    /// The logout token's `aud`.
    pub client_id: Uuid,
    /// The user (`sub`).
    pub sub: Uuid,
    /// The browser session the client's session came from (`sid`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// The client's `backchannel_logout_uri`.
    pub uri: String,
    /// The client's `id_token_signed_response_alg`, the logout token's.
    pub alg: String,
}

/// How long (seconds) a worker holds a claimed row before another may
/// claim it again: longer than a delivery's timeout, so a live worker's
/// row is never taken from it.
pub const OUTBOX_LEASE: i64 = 30;

/// How long (seconds) a row is retried before it is given up.
pub const OUTBOX_GIVE_UP_AFTER: i64 = 24 * 3600;

/// The longest pause (seconds) between two attempts.
pub const OUTBOX_MAX_BACKOFF: i64 = 600;

/// Seconds until the next attempt after `attempts` failed ones: 2, 4, 8, …
/// capped at [`OUTBOX_MAX_BACKOFF`].
pub fn outbox_backoff(attempts: i64) -> i64 {
    let exponent = attempts.clamp(1, 20) as u32;
    2_i64.pow(exponent).min(OUTBOX_MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_two_seconds_up_to_ten_minutes() {
        assert_eq!(outbox_backoff(1), 2);
        assert_eq!(outbox_backoff(2), 4);
        assert_eq!(outbox_backoff(3), 8);
        assert_eq!(outbox_backoff(9), 512);
        assert_eq!(outbox_backoff(10), 600);
        assert_eq!(outbox_backoff(1000), 600);
        assert_eq!(outbox_backoff(0), 2);
    }

    #[test]
    fn a_payload_without_sid_leaves_it_out() {
        let p = BackchannelLogout {
            client_id: Uuid::nil(),
            sub: Uuid::nil(),
            sid: None,
            uri: "https://rp.example/bc".into(),
            alg: "RS256".into(),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("sid"));
        assert_eq!(serde_json::from_str::<BackchannelLogout>(&json).unwrap(), p);
    }
}
