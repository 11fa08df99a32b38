//! Microbenchmark of the per-request authorization check: token
//! verification (signature, header, claims), the scope check, and the
//! in-memory "valid after" lookup — everything a protected route does before
//! its handler runs, without the HTTP around it.
//!
//! Run with `cargo bench --bench authz`. Prints ns per check, the median of
//! several rounds, for EdDSA and HS256 with 10,000 users in the gate.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::Algorithm;
use uuid::Uuid;
use warden::keys;
use warden::storage::{UserRecord, UserSecurity};
use warden::tokens::{TokenIssuer, UserGate};
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
    };

    let ids: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
    let gate = Arc::new(UserGate::new(
        ids.iter()
            .map(|&id| UserSecurity {
                id,
                tokens_valid_after: 0,
                disabled: false,
                security_version: 0,
                revision: 0,
            })
            .collect(),
    ));
    let verifier = Verifier::builder(alg, ring.key_set(), ISSUER)
        .check(gate.clone())
        .build();
    let issuer = TokenIssuer::new(ring, ISSUER.into(), None, 900);
    let who = user(ids[USERS / 2]);
    let token = issuer
        .issue(&who, "me", Uuid::now_v7(), warden::tokens::now())
        .expect("token")
        .token;

    let claims = verifier.verify(&token).expect("the token verifies");
    let full = measure(iters, || {
        let c = verifier.verify(black_box(&token)).expect("valid");
        assert!(c.has_scope("me"));
        black_box(c);
    });
    let gate_only = measure(iters * 20, || {
        black_box(gate.is_live(black_box(&claims)));
    });
    let scope_only = measure(iters * 20, || {
        black_box(black_box(&claims).has_scope("me"));
    });
    println!(
        "{:<6} {:>14.0} {:>14.0} {:>12.1}",
        keys::algorithm_name(alg),
        full,
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
        "{:<6} {:>14} {:>14} {:>12}",
        "alg", "full ns/check", "gate ns", "scope ns"
    );
    bench(Algorithm::HS256, iters);
    bench(Algorithm::EdDSA, iters / 4);
}
