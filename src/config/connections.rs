//! Defaults of the connection settings (`header_read_timeout`,
//! `max_connections`, `idle_timeout`). The limits themselves are enforced
//! by `http::connections`.

use std::time::Duration;

/// How long a client may take to send its first byte, and then each
/// request's headers, before the connection is closed, by default: a
/// handful of silent or slow (slowloris) clients must not hold connections
/// open forever.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time after which a connection is closed, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// File descriptors the default cap leaves for everything but client
/// connections: the database pool, the SQLite files, the log, key files,
/// the listener and the runtime's own.
pub const FD_RESERVE: u64 = 64;

/// Bounds of the derived default cap (an explicit setting is not clamped).
pub const DEFAULT_MAX_CONNECTIONS_RANGE: (usize, usize) = (16, 16_384);

/// The soft limit on open files (`RLIMIT_NOFILE`), if there is one.
pub fn open_files_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The default cap: the open-files limit less [`FD_RESERVE`], within
/// [`DEFAULT_MAX_CONNECTIONS_RANGE`]; the upper bound when there is no
/// limit.
pub fn default_max_connections() -> usize {
    derive_max_connections(open_files_limit())
}

fn derive_max_connections(open_files: Option<u64>) -> usize {
    let (low, high) = DEFAULT_MAX_CONNECTIONS_RANGE;
    match open_files {
        None => high,
        Some(n) => usize::try_from(n.saturating_sub(FD_RESERVE))
            .unwrap_or(high)
            .clamp(low, high),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_reserve_and_stays_in_bounds() {
        assert_eq!(derive_max_connections(Some(256)), 192);
        assert_eq!(derive_max_connections(Some(1024)), 960);
        assert_eq!(derive_max_connections(Some(20)), 16);
        assert_eq!(derive_max_connections(Some(1 << 20)), 16_384);
        assert_eq!(derive_max_connections(None), 16_384);
    }
}
