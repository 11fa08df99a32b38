//! Microbenchmark of the per-request authorization check: token
//! verification (the verified-token cache, or the signature, header and
//! claims), the scope check, and the in-memory revocation gate — everything
//! a protected route does before its handler runs, without the HTTP around it.
//!
//! Run with `cargo bench --bench authz`. Prints ns per check, the median of
//! several rounds, for each algorithm, with 10,000 users in the gate (all
//! watched, as if each had just changed their password, so the gate's
//! lookup finds an entry — its costlier path):
//! - hit: a token already in the cache (every request after a client's first);
//! - miss: the cache turned off, so every check verifies the signature;
//! - first use: a token the cache has not seen (verify, then insert);
//! - gate, scope: those two checks alone.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::Algorithm;
use uuid::Uuid;
use warden::auth::keys;
use warden::auth::tokens::{TokenIssuer, UserGate};
use warden::domain::{UserRecord, UserSecurity};
use warden_guard::{TokenCheck, Verifier};

const USERS: usize = 10_000;
const ROUNDS: usize = 7;
const ISSUER: &str = "http://bench.local";

fn user(id: Uuid) -> UserRecord {
    UserRecord {
        id,
        username: "alice".into(),
        email: "alice@example.com".into(),
        full_name: None,
        password_hash: String::new(),
        roles: vec!["user".into()],
        disabled: false,
        tokens_valid_after: 0,
        security_version: 0,
        revision: 0,
        created_at: 0,
        updated_at: 0,
    }
}

/// Median ns per call of `f`, over `ROUNDS` rounds of `iters` calls.
fn measure(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn bench(alg: Algorithm, iters: u32) {
    let material = keys::generate(alg).expect("key");
    let key = keys::load(alg, &material, 0).expect("load");
    let ring = keys::KeyRing {
        current: key.clone(),
        keys: vec![key],
        others: Vec::new(),
    };

    let ids: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
    // Every user watched (as if all had just changed their password): the
    // gate's lookup finds an entry, its costlier path.
    let watched: Vec<UserSecurity> = ids
        .iter()
        .map(|&id| UserSecurity {
            id,
            tokens_valid_after: 0,
            disabled: false,
            security_version: 0,
            revision: 0,
        })
        .collect();
    let gate = Arc::new(UserGate::default());
    gate.reload(&watched, gate.reload_started());
    let verifier = Verifier::builder(alg, ring.key_set(), ISSUER)
        .check(gate.clone())
        .build();
    let uncached = Verifier::builder(alg, ring.key_set(), ISSUER)
        .check(gate.clone())
        .cache_capacity(0)
        .build();
    let issuer = TokenIssuer::new(ring, ISSUER.into(), None, 900);
    let now = warden::auth::tokens::now();
    let issue = |who: &UserRecord| {
        issuer
            .issue(who, "me", Uuid::now_v7(), now)
            .expect("token")
            .token
    };
    let token = issue(&user(ids[USERS / 2]));

    let check = |v: &Verifier, token: &str| {
        let c = v.verify_shared(black_box(token)).expect("valid");
        assert!(c.has_scope("me"));
        black_box(c);
    };
    let claims = verifier.verify(&token).expect("the token verifies");
    let hit = measure(iters * 20, || check(&verifier, &token));
    let miss = measure(iters, || check(&uncached, &token));
    // First use: distinct tokens, each verified once by a fresh verifier.
    let fresh: Vec<String> = (0..iters / 4)
        .map(|i| issue(&user(ids[i as usize % USERS])))
        .collect();
    let mut first_use: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let v = Verifier::builder(alg, issuer.keys().key_set(), ISSUER)
                .check(gate.clone())
                .build();
            let start = Instant::now();
            for t in &fresh {
                check(&v, t);
            }
            start.elapsed().as_nanos() as f64 / fresh.len() as f64
        })
        .collect();
    first_use.sort_by(f64::total_cmp);
    let first_use = first_use[ROUNDS / 2];
    let gate_only = measure(iters * 20, || {
        black_box(gate.is_live(black_box(&claims)));
    });
    let scope_only = measure(iters * 20, || {
        black_box(black_box(&claims).has_scope("me"));
    });
    println!(
        "{:<6} {:>10.0} {:>10.0} {:>12.0} {:>9.0} {:>9.1}",
        keys::algorithm_name(alg),
        hit,
        miss,
        first_use,
        gate_only,
        scope_only
    );
}

fn main() {
    // `cargo test --benches` runs this too; keep that quick.
    let quick = std::env::args().any(|a| a == "--test");
    let iters = if quick { 200 } else { 20_000 };
    println!(
        "per-request authorization check, {USERS} users in the gate, median of {ROUNDS} rounds"
    );
    println!(
        "{:<6} {:>10} {:>10} {:>12} {:>9} {:>9}",
        "alg", "hit ns", "miss ns", "first use ns", "gate ns", "scope ns"
    );
    bench(Algorithm::HS256, iters);
    bench(Algorithm::EdDSA, iters / 4);
    bench(Algorithm::ES256, iters / 4);
    bench(Algorithm::RS256, iters / 4);
}
