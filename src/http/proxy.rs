//! The client's address behind a reverse proxy.
//!
//! Anyone can send `X-Forwarded-For` or `Forwarded`, so they are read only
//! when the TCP peer is one of the configured proxies
//! (`WARDEN_TRUSTED_PROXIES`), and only the one header the proxies are said
//! to write (`WARDEN_FORWARDED_HEADER`): a proxy passes on the headers it
//! does not handle itself, so reading the other one too would let a client
//! write its own address there. Both settings are parsed by the
//! configuration ([`TrustedProxies`], [`ForwardedHeader`]); this module
//! reads the header with them.
//!
//! The rule (docs/hardening.md has it for users, with examples):
//!
//! 1. The hops are every line of the header, in order, joined: HAProxy's
//!    `option forwardfor` appends a line of its own below the client's.
//! 2. Walk them from the right, starting at the peer. While the current
//!    address is a trusted proxy, step to the hop on its left: that is the
//!    address this proxy says it received the request from.
//! 3. The first address that is not a trusted proxy is the client.
//! 4. A hop that is no address (`unknown`, an obfuscated `_name`, garbage,
//!    an element without `for=`) ends the walk: whatever is left of it was
//!    written by someone no trusted proxy vouches for. The client is then
//!    the last address reached, the trusted proxy right of it, which could
//!    not name its own client. So a client never chooses its address, and
//!    only the clients that one proxy could not identify share its bucket.
//! 5. Running out of hops (every hop a trusted proxy) also leaves the last
//!    address reached: the leftmost trusted proxy.
//!
//! Ports are stripped (`1.2.3.4:5678`, `[2001:db8::1]:443`), and IPv6
//! brackets accepted without a port; IPv4-mapped IPv6 is the IPv4 address.

use std::net::{IpAddr, SocketAddr};

use crate::config::{ForwardedHeader, TrustedProxies};

/// The client's address for a request from `peer` whose `header` (the one
/// the proxies write) came as `lines`, in order. A line that is not text
/// counts as one hop that is no address.
pub fn client_ip<'a>(
    proxies: &TrustedProxies,
    peer: IpAddr,
    header: ForwardedHeader,
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !proxies.contains(peer) {
        return peer;
    }
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    for line in lines {
        match std::str::from_utf8(line) {
            Ok(line) => match header {
                ForwardedHeader::XForwardedFor => {
                    hops.extend(line.split(',').map(|hop| parse_node(hop.trim())))
                }
                ForwardedHeader::Forwarded => hops.extend(forwarded_for(line)),
            },
            Err(_) => hops.push(None),
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        if !proxies.contains(client) {
            break;
        }
        match hop {
            Some(ip) => client = ip.to_canonical(),
            None => break,
        }
    }
    client
}

/// An address with an optional port: `192.0.2.1`, `192.0.2.1:8080`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`. Anything else
/// (`unknown`, `_hidden`, a zone id, garbage) is `None`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The `for=` node of each element of one `Forwarded` line (RFC 7239 §4),
/// in order; `None` for an element without `for=` or whose node is not an
/// address.
fn forwarded_for(line: &str) -> Vec<Option<IpAddr>> {
    split_unquoted(line, ',')
        .into_iter()
        .filter(|element| !element.trim().is_empty())
        .map(|element| {
            split_unquoted(element, ';').into_iter().find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(&unquote(value.trim())))
            })?
        })
        .collect()
}

/// `s` split at every `sep` outside a quoted string.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A token as is, a quoted string without its quotes and escapes.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The client for `peer` with X-Forwarded-For `lines`.
    fn xff(t: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        client_ip(
            t,
            ip(peer),
            ForwardedHeader::XForwardedFor,
            lines.iter().map(|l| l.as_bytes()),
        )
    }

    /// The client for `peer` with Forwarded `lines`.
    fn fwd(t: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        client_ip(
            t,
            ip(peer),
            ForwardedHeader::Forwarded,
            lines.iter().map(|l| l.as_bytes()),
        )
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let t = TrustedProxies::parse("10.0.0.1").unwrap();
        assert_eq!(xff(&t, "203.0.113.9", &["1.2.3.4"]), ip("203.0.113.9"));
        assert_eq!(fwd(&t, "203.0.113.9", &["for=1.2.3.4"]), ip("203.0.113.9"));
        let none = TrustedProxies::default();
        assert_eq!(xff(&none, "10.0.0.1", &["1.2.3.4"]), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8, ::1").unwrap();
        // A client-supplied fake first entry does not win.
        assert_eq!(
            xff(&t, "10.0.0.1", &["6.6.6.6, 198.51.100.7, 10.1.2.3"]),
            ip("198.51.100.7")
        );
        assert_eq!(xff(&t, "::1", &["198.51.100.7"]), ip("198.51.100.7"));
        assert_eq!(xff(&t, "10.0.0.1", &[]), ip("10.0.0.1"));
        // Every hop a trusted proxy: the leftmost of them.
        assert_eq!(xff(&t, "10.0.0.1", &["10.0.0.9, 10.0.0.8"]), ip("10.0.0.9"));
    }

    #[test]
    fn every_header_line_is_read_in_order() {
        // HAProxy's `option forwardfor` appends its own line below the
        // client's: the client-written first line must not win.
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        assert_eq!(
            xff(&t, "127.0.0.1", &["6.6.6.6", "203.0.113.5"]),
            ip("203.0.113.5")
        );
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.2").unwrap();
        assert_eq!(
            xff(&t, "127.0.0.1", &["6.6.6.6, 203.0.113.5", "10.0.0.2"]),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn ports_and_brackets_are_stripped() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            xff(&t, "10.0.0.1", &["203.0.113.5:5678"]),
            ip("203.0.113.5")
        );
        assert_eq!(
            xff(&t, "10.0.0.1", &["[2001:db8::7]:80"]),
            ip("2001:db8::7")
        );
        assert_eq!(xff(&t, "10.0.0.1", &["[2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(xff(&t, "10.0.0.1", &["2001:db8::7"]), ip("2001:db8::7"));
        // A trusted hop with a port is still trusted.
        assert_eq!(
            xff(&t, "10.0.0.1", &["203.0.113.5:1, 10.0.0.3:2"]),
            ip("203.0.113.5")
        );
        assert_eq!(
            xff(&t, "10.0.0.1", &["::ffff:203.0.113.5"]),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_hop_that_is_no_address_is_the_trusted_boundary() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The proxy that wrote `unknown` is the client: never the
        // client-written address left of it...
        assert_eq!(xff(&t, "10.0.0.1", &["6.6.6.6, unknown"]), ip("10.0.0.1"));
        assert_eq!(
            xff(&t, "10.0.0.1", &["6.6.6.6, garbage, 10.0.0.2"]),
            ip("10.0.0.2")
        );
        // ...and a client that writes `unknown` itself is still found.
        assert_eq!(
            xff(&t, "10.0.0.1", &["unknown", "203.0.113.5"]),
            ip("203.0.113.5")
        );
        assert_eq!(xff(&t, "10.0.0.1", &["fe80::1%eth0"]), ip("10.0.0.1"));
        assert_eq!(xff(&t, "10.0.0.1", &[""]), ip("10.0.0.1"));
        // A line that is not text is one such hop.
        let lines: [&[u8]; 2] = [b"6.6.6.6", b"\xff\xfe"];
        assert_eq!(
            client_ip(&t, ip("10.0.0.1"), ForwardedHeader::XForwardedFor, lines),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn rfc_7239_forwarded() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(fwd(&t, "10.0.0.1", &["for=203.0.113.5"]), ip("203.0.113.5"));
        assert_eq!(
            fwd(&t, "10.0.0.1", &[r#"for="[2001:db8:cafe::17]:4711""#]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            fwd(
                &t,
                "10.0.0.1",
                &["For=\"203.0.113.5:80\";proto=https;by=10.0.0.1"]
            ),
            ip("203.0.113.5")
        );
        assert_eq!(
            fwd(
                &t,
                "10.0.0.1",
                &[
                    "for=6.6.6.6, for=203.0.113.5;host=\"a,b;c\"",
                    "for=10.0.0.2"
                ]
            ),
            ip("203.0.113.5")
        );
        // Obfuscated, unknown, or no `for=` at all: the boundary.
        assert_eq!(
            fwd(&t, "10.0.0.1", &["for=6.6.6.6, for=_hidden"]),
            ip("10.0.0.1")
        );
        assert_eq!(
            fwd(&t, "10.0.0.1", &["for=6.6.6.6, for=unknown"]),
            ip("10.0.0.1")
        );
        assert_eq!(
            fwd(&t, "10.0.0.1", &["for=6.6.6.6, proto=http"]),
            ip("10.0.0.1")
        );
        assert_eq!(
            fwd(&t, "10.0.0.1", &["for=6.6.6.6, for=_hidden, for=10.0.0.2"]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn quoted_strings_keep_their_separators() {
        assert_eq!(split_unquoted(r#"a="x,y",b"#, ','), [r#"a="x,y""#, "b"]);
        assert_eq!(unquote(r#""a\"b""#), r#"a"b"#);
        assert_eq!(unquote("token"), "token");
    }
}
