//! The login limit: argon2id (m=19456 KiB, t=2, p=1) hashes per second on
//! the calling thread, reusing one memory block as a tuned server would.
//!
//!     argon2-rate --seconds 3
//!
//! Prints one line: `hashes_per_second=... hashes=... seconds=...`.

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use warden_bench_refs::Args;

fn main() {
    let args = Args::parse(&["seconds"]);
    let seconds: f64 = args.num("seconds", 3.0);
    let params = Params::new(19_456, 2, 1, Some(32)).expect("params");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut blocks = vec![Block::default(); params.block_count()];
    let salt = *b"benchmark-salt-16";
    let mut out = [0u8; 32];
    let mut hash = |i: u64| {
        let password = format!("correct horse battery {i}");
        argon2
            .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut blocks)
            .expect("hash");
        std::hint::black_box(&out);
    };
    // One warm-up hash faults the memory in.
    hash(0);
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        n += 1;
        hash(n);
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "hashes_per_second={:.2} hashes={n} seconds={elapsed:.3} m=19456 t=2 p=1",
        n as f64 / elapsed
    );
}
