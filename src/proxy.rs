//! The client's address behind a reverse proxy.
//!
//! `X-Forwarded-For` is trusted only when the TCP peer is one of the
//! configured proxies (`WARDEN_TRUSTED_PROXIES`); then the client is the
//! rightmost address in the header that is not itself a trusted proxy.
//! Anyone can send the header, so from any other peer it is ignored.

use std::net::IpAddr;

/// Addresses and networks (`10.0.0.0/8`, `::1`) of trusted proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR networks.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{item:?} is not an IP address or CIDR network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => match p.parse::<u8>() {
                    Ok(p) if p <= max => p,
                    _ => return Err(format!("{item:?}: the prefix length must be 0 to {max}")),
                },
            };
            networks.push((addr.to_canonical(), prefix));
        }
        Ok(Self { networks })
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|&(net, prefix)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// The client's address for a request from `peer` carrying
    /// `forwarded_for` (the `X-Forwarded-For` header, if any).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in header.rsplit(',').map(str::trim) {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let t = TrustedProxies::parse("10.0.0.1").unwrap();
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.0.0.1"), Some("1.2.3.4")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8, ::1").unwrap();
        // A client-supplied fake first entry does not win.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), Some("6.6.6.6, 198.51.100.7, 10.1.2.3")),
            ip("198.51.100.7")
        );
        assert_eq!(
            t.client_ip(ip("::1"), Some("198.51.100.7")),
            ip("198.51.100.7")
        );
        assert_eq!(t.client_ip(ip("10.0.0.1"), None), ip("10.0.0.1"));
        assert_eq!(t.client_ip(ip("10.0.0.1"), Some("garbage")), ip("10.0.0.1"));
    }

    #[test]
    fn networks_match_by_prefix() {
        let t = TrustedProxies::parse("192.168.0.0/16,2001:db8::/32").unwrap();
        assert!(t.contains(ip("192.168.44.1")));
        assert!(!t.contains(ip("192.169.0.1")));
        assert!(t.contains(ip("2001:db8::5")));
        assert!(t.contains(ip("::ffff:192.168.1.1")), "IPv4-mapped peers");
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
    }
}
