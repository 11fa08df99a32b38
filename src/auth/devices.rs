//! Known devices: a signed `warden_device` cookie, set by a successful
//! password check in a browser, that lets its owner past the per-account
//! login limit (see docs/throttling.md).
//!
//! Under a distributed guessing attack an account's failure count stays over
//! its limit for as long as the attacker likes. The owner's browser proves it
//! is not the attacker with a cookie only a successful login on that browser
//! obtained: `v1.<user id>.<issued at>.<tag>`, the tag an HMAC under a
//! server key shared by every instance. The cookie authenticates nothing — it
//! only exempts the password check that follows from the per-account and
//! per-address limits (the (account, address) limit still applies) — so it
//! is not revoked with sessions; it expires after [`DEVICE_COOKIE_TTL`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::storage::Store;

/// The cookie's name (`__Host-` prefixed when cookies are `Secure`).
pub const DEVICE_COOKIE: &str = "warden_device";

/// How long a device stays known after its last successful login: 180 days.
pub const DEVICE_COOKIE_TTL: i64 = 180 * 24 * 3600;

const SECRET_NAME: &str = "device_cookie_key";
const TAG_BYTES: usize = 16;

/// Signs and checks device cookies.
#[derive(Clone)]
pub struct DeviceCookies {
    key: Vec<u8>,
    secure: bool,
}

impl std::fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceCookies(<key redacted>)")
    }
}

impl DeviceCookies {
    /// Loads the signing key, creating it on first start; every instance on
    /// one database shares it. `secure` as for the refresh cookie.
    pub async fn load(store: &dyn Store, secure: bool, now: i64) -> anyhow::Result<Self> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("OS random source failed: {e}"))?;
        let key = store.secret_or_insert(SECRET_NAME, &fresh, now).await?;
        Ok(Self { key, secure })
    }

    /// `__Host-warden_device` where the browser allows it (a `Secure`
    /// cookie with `Path=/` and no `Domain`), else plain `warden_device` (plain
    /// HTTP on loopback, where `Secure` cookies cannot be stored).
    pub fn name(&self) -> &'static str {
        if self.secure {
            "__Host-warden_device"
        } else {
            DEVICE_COOKIE
        }
    }

    fn tag(&self, user: Uuid, issued: i64) -> [u8; TAG_BYTES] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(b"warden device cookie\0");
        mac.update(user.as_bytes());
        mac.update(&issued.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    /// The cookie's value for `user`, issued `now`.
    pub fn value(&self, user: Uuid, now: i64) -> String {
        format!(
            "v1.{}.{now}.{}",
            user.simple(),
            URL_SAFE_NO_PAD.encode(self.tag(user, now))
        )
    }

    /// The `Set-Cookie` value marking this browser as a known device of
    /// `user` (ASCII, no control characters).
    pub fn set_cookie(&self, user: Uuid, now: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={}; Path=/; Max-Age={DEVICE_COOKIE_TTL}; HttpOnly; SameSite=Strict{secure}",
            self.name(),
            self.value(user, now)
        )
    }

    /// Whether one of `values` (the request's cookies named
    /// [`Self::name`]) is a valid, unexpired device cookie of `user`.
    pub fn known<'a>(
        &self,
        mut values: impl Iterator<Item = &'a str>,
        user: Uuid,
        now: i64,
    ) -> bool {
        values.any(|value| self.verify(value, user, now))
    }

    /// Whether the request carries a valid, unexpired device cookie of any
    /// user: before the login's account is known, whether the request may
    /// be a known device of it.
    pub fn any_known<'a>(&self, mut values: impl Iterator<Item = &'a str>, now: i64) -> bool {
        values.any(|value| cookie_user(value).is_some_and(|user| self.verify(value, user, now)))
    }

    fn verify(&self, value: &str, user: Uuid, now: i64) -> bool {
        let mut parts = value.split('.');
        let (Some("v1"), Some(id), Some(issued), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return false;
        };
        let (Ok(id), Ok(issued), Ok(tag)) = (
            Uuid::try_parse(id),
            issued.parse::<i64>(),
            URL_SAFE_NO_PAD.decode(tag),
        ) else {
            return false;
        };
        if id != user || issued > now + 60 || issued <= now - DEVICE_COOKIE_TTL {
            return false;
        }
        use subtle::ConstantTimeEq;
        bool::from(tag.ct_eq(&self.tag(user, issued)))
    }
}

/// Whether warden's cookies (refresh, device) carry `Secure`: yes unless
/// the issuer is `http://` on a loopback host and warden listens on
/// loopback only: there the browser talks plain HTTP to the
/// same machine, and a `Secure` cookie could not be stored. Anywhere else
/// plain HTTP would expose the token, so the cookie demands HTTPS.
pub fn needs_secure(issuer: &str, bind: std::net::IpAddr) -> bool {
    let Ok(url) = url::Url::parse(issuer) else {
        return true;
    };
    let loopback_host = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    !(url.scheme() == "http" && loopback_host && bind.is_loopback())
}

/// The user a cookie value names, unverified.
fn cookie_user(value: &str) -> Option<Uuid> {
    let mut parts = value.split('.');
    match (parts.next(), parts.next()) {
        (Some("v1"), Some(id)) => Uuid::try_parse(id).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies() -> DeviceCookies {
        DeviceCookies {
            key: vec![7; 32],
            secure: true,
        }
    }

    fn with_cookie(value: &str) -> std::iter::Once<&str> {
        std::iter::once(value)
    }

    #[test]
    fn a_cookie_is_known_for_its_user_only_and_until_it_expires() {
        let c = cookies();
        let alice = Uuid::new_v4();
        let bob = Uuid::new_v4();
        let v = c.value(alice, 1000);
        assert!(c.known(with_cookie(&v), alice, 1000));
        assert!(c.known(with_cookie(&v), alice, 1000 + DEVICE_COOKIE_TTL - 1));
        assert!(!c.known(with_cookie(&v), alice, 1000 + DEVICE_COOKIE_TTL));
        assert!(!c.known(with_cookie(&v), bob, 1000));
        assert!(c.any_known(with_cookie(&v), 1000));
        assert!(!c.any_known(with_cookie(&v), 1000 + DEVICE_COOKIE_TTL));
    }

    #[test]
    fn forged_or_altered_cookies_are_unknown() {
        let c = cookies();
        let alice = Uuid::new_v4();
        let v = c.value(alice, 1000);
        let later = v.replace(".1000.", ".2000.");
        assert!(!c.known(with_cookie(&later), alice, 2000));
        let other_key = DeviceCookies {
            key: vec![8; 32],
            secure: true,
        };
        assert!(!c.known(with_cookie(&other_key.value(alice, 1000)), alice, 1000));
        assert!(!c.known(with_cookie("v1"), alice, 1000));
        assert!(!c.known(with_cookie(""), alice, 1000));
        assert!(!c.known(std::iter::empty(), alice, 1000));
        assert!(!c.any_known(with_cookie(&later), 2000));
        assert!(!c.any_known(with_cookie("v1.garbage.1.x"), 1000));
    }

    #[test]
    fn the_set_cookie_header_uses_the_host_prefix_when_secure() {
        let c = cookies();
        let s = c.set_cookie(Uuid::nil(), 5);
        assert!(s.starts_with("__Host-warden_device=v1."));
        assert!(s.contains("Path=/;") && s.contains("Secure") && s.contains("HttpOnly"));
        let plain = DeviceCookies {
            key: vec![1],
            secure: false,
        };
        assert!(
            plain
                .set_cookie(Uuid::nil(), 5)
                .starts_with("warden_device=")
        );
    }
}
