//! Password hashing on a bounded pool of worker threads.
//!
//! argon2id at OWASP's parameters costs ~20 ms of CPU and ~19 MiB of memory
//! per hash. Run on the async executor, a burst of logins would stall every
//! token check behind it; run in unbounded `spawn_blocking`, it would use
//! gigabytes. So hashing has its own threads (one per core by default), each
//! reusing one memory buffer, fed by a bounded queue: when the queue is
//! full, the caller gets [`PasswordError::Busy`] (503 + `Retry-After`) at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use rand::RngExt;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::auth::error::PasswordError;
use crate::config::Argon2Params;

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// Hashing threads run under Linux's `SCHED_IDLE` policy: when a core is
/// shared, a token check that becomes ready takes the core from a hash at
/// once, and a hash runs in the time token checks leave free. With a core to
/// themselves, hash threads run at full speed.
///
/// Measured with bench/run's isolation check (server on one core, `/token`
/// saturated beside `GET /users/me` at 64 connections): at nice 10 the
/// `/users/me` p99 went from ~1.3 ms to 4.6 ms, at nice 19 to ~3 ms. A
/// fair-scheduled thread, however low its weight, keeps the core for its
/// slice once picked; an idle-policy thread is preempted on the next wakeup.
/// The price: on a core saturated by token checks, logins wait (the bounded
/// queue then answers 503), which is the priority the server wants.
///
/// Where the policy cannot be set (a sandbox that filters
/// `sched_setscheduler`), the thread falls back to the lowest nice value.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
        if let Err(e) = idle {
            tracing::debug!(error = ?e, "cannot put a password-hashing thread under SCHED_IDLE");
            // setpriority with a thread id applies to that thread alone.
            if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19)
            {
                tracing::debug!(error = %e, "cannot lower the priority of a password-hashing thread");
            }
        }
    }
}

/// A password that never shows up in `Debug` output or logs.
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

enum Job {
    Hash {
        password: Password,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Verify {
        password: Password,
        /// `None`: verify against the dummy hash, so an unknown user costs
        /// as much as a known one.
        phc: Option<String>,
        reply: oneshot::Sender<bool>,
        /// The account's place among its jobs, given back when the job is
        /// done (not when the caller stops waiting).
        slot: Option<AccountSlot>,
    },
}

/// How many password checks of one account may be queued or running at
/// once: one account's flood of wrong passwords must not fill the queue
/// everyone's logins wait in (each address it comes from is throttled only
/// after its failures are judged).
pub const MAX_CHECKS_PER_ACCOUNT: u32 = 2;

/// Jobs per account, queued or running.
#[derive(Default)]
struct AccountJobs {
    map: dashmap::DashMap<String, u32>,
}

/// One of an account's [`MAX_CHECKS_PER_ACCOUNT`] places.
struct AccountSlot {
    jobs: Arc<AccountJobs>,
    account: String,
}

impl AccountJobs {
    fn take(self: &Arc<Self>, account: &str) -> Option<AccountSlot> {
        let mut n = self.map.entry(account.to_owned()).or_insert(0);
        if *n >= MAX_CHECKS_PER_ACCOUNT {
            return None;
        }
        *n += 1;
        Some(AccountSlot {
            jobs: Arc::clone(self),
            account: account.to_owned(),
        })
    }
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        self.jobs.map.remove_if_mut(&self.account, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// The decoded parts of an argon2id PHC string.
struct Phc {
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse_phc(s: &str) -> Option<Phc> {
    // $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
    let mut parts = s.split('$');
    if !parts.next()?.is_empty() || parts.next()? != "argon2id" || parts.next()? != "v=19" {
        return None;
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in parts.next()?.split(',') {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return None,
        }
    }
    let salt = B64.decode(parts.next()?).ok()?;
    let hash = B64.decode(parts.next()?).ok()?;
    if parts.next().is_some() || hash.is_empty() {
        return None;
    }
    let params = Params::new(m?, t?, p?, Some(hash.len())).ok()?;
    Some(Phc { params, salt, hash })
}

fn format_phc(params: &Params, salt: &[u8], hash: &[u8]) -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        B64.encode(salt),
        B64.encode(hash)
    )
}

/// One worker thread's state: its own argon2 memory, reused for every job.
struct Worker {
    params: Params,
    memory: Vec<Block>,
    dummy: String,
}

impl Worker {
    fn compute(&mut self, params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
        let blocks = params.block_count();
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(password, salt, out, &mut self.memory[..blocks])
            .is_ok()
    }

    fn hash(&mut self, password: &str) -> Result<String, String> {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill(&mut salt[..]);
        let mut out = [0u8; HASH_LEN];
        let params = self.params.clone();
        if !self.compute(&params, password.as_bytes(), &salt, &mut out) {
            return Err("argon2 rejected its input".to_owned());
        }
        Ok(format_phc(&params, &salt, &out))
    }

    fn verify(&mut self, password: &str, phc: Option<&str>) -> bool {
        let dummy = phc.is_none();
        let phc = phc.unwrap_or(&self.dummy).to_owned();
        let Some(parsed) = parse_phc(&phc) else {
            tracing::warn!("a stored password hash is not an argon2id PHC string");
            return false;
        };
        let mut out = vec![0u8; parsed.hash.len()];
        if !self.compute(&parsed.params, password.as_bytes(), &parsed.salt, &mut out) {
            return false;
        }
        let equal: bool = out.ct_eq(&parsed.hash).into();
        equal && !dummy
    }

    fn run(mut self, jobs: Receiver<Job>, counters: Counters) {
        for job in jobs {
            self.process(job, &counters);
        }
    }

    /// Takes a job only when the pool has taken none for a whole
    /// [`RESCUE_AFTER`] while jobs wait: the idle-policy workers are starved
    /// by a core saturated with token checks. Runs at nice 19, one job at a
    /// time, so logins still progress (about one every two to three seconds on
    /// a saturated core) without taking slices from token checks often.
    fn rescue(mut self, jobs: Receiver<Job>, counters: Counters) {
        let mut seen = counters.taken.load(Ordering::Relaxed);
        loop {
            std::thread::sleep(RESCUE_AFTER);
            let taken = counters.taken.load(Ordering::Relaxed);
            let waiting = counters.depth.load(Ordering::Relaxed);
            // With nothing waiting, `try_recv` only tells whether the pool
            // was shut down (a job that arrives meanwhile is done here).
            if waiting == 0 || taken == seen {
                match jobs.try_recv() {
                    Ok(job) => {
                        self.process(job, &counters);
                        // Rarely used: give its 19 MiB back.
                        self.memory = Vec::new();
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            seen = counters.taken.load(Ordering::Relaxed);
        }
    }

    fn process(&mut self, job: Job, counters: &Counters) {
        counters.taken.fetch_add(1, Ordering::Relaxed);
        let depth = counters
            .depth
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!("warden_password_hash_queue_depth").set(depth as f64);
        match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(self.hash(password.expose()));
            }
            Job::Verify {
                password,
                phc,
                reply,
                slot,
            } => {
                let ok = self.verify(password.expose(), phc.as_deref());
                // Given back before the answer, so that the caller can
                // check again at once.
                drop(slot);
                counters.verified.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(ok);
            }
        }
    }
}

/// The pool's shared counters.
#[derive(Clone, Default)]
struct Counters {
    /// Jobs queued and not yet taken.
    depth: Arc<AtomicUsize>,
    /// Verifications completed, dummy ones included.
    verified: Arc<AtomicU64>,
    /// Jobs taken so far: the rescue thread's sign of progress.
    taken: Arc<AtomicU64>,
}

/// How long the pool may make no progress, with jobs waiting, before the
/// rescue thread takes one (see [`Worker::rescue`]).
const RESCUE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a check over [`MAX_CHECKS_PER_ACCOUNT`] waits.
pub const TOO_MANY_CHECKS: &str = "concurrent password checks for this account";

/// Handle to the hashing pool. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: Sender<Job>,
    counters: Counters,
    per_account: Arc<AccountJobs>,
}

impl PasswordHasher {
    /// Starts `workers` threads with a queue of `queue` waiting jobs.
    pub fn start(params: Argon2Params, workers: usize, queue: usize) -> anyhow::Result<Self> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(HASH_LEN),
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        // The dummy hash for unknown users is made with the live parameters,
        // so its verification costs exactly what a real one does.
        let mut first = Worker {
            params: params.clone(),
            memory: Vec::new(),
            dummy: String::new(),
        };
        let dummy = first
            .hash("warden dummy password, never a real one")
            .map_err(|e| anyhow::anyhow!(e))?;
        first.dummy = dummy.clone();

        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue);
        let counters = Counters::default();
        let mut pending = Some(first);
        for i in 0..workers.max(1) {
            let worker = pending.take().unwrap_or_else(|| Worker {
                params: params.clone(),
                memory: Vec::new(),
                dummy: dummy.clone(),
            });
            let rx = rx.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name(format!("warden-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    worker.run(rx, counters)
                })?;
        }
        let rescuer = Worker {
            params: params.clone(),
            memory: Vec::new(),
            dummy: dummy.clone(),
        };
        let rescue_counters = counters.clone();
        std::thread::Builder::new()
            .name("warden-hash-rescue".to_owned())
            .spawn(move || {
                #[cfg(target_os = "linux")]
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
                rescuer.rescue(rx, rescue_counters)
            })?;
        Ok(Self {
            jobs: tx,
            counters,
            per_account: Arc::default(),
        })
    }

    fn submit(&self, job: Job) -> Result<(), PasswordError> {
        self.counters.depth.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(job) {
            Ok(()) => {
                metrics::gauge!("warden_password_hash_queue_depth")
                    .set(self.counters.depth.load(Ordering::Relaxed) as f64);
                Ok(())
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.depth.fetch_sub(1, Ordering::Relaxed);
                Err(PasswordError::Busy)
            }
        }
    }

    /// Hashes `password` into an argon2id PHC string.
    pub async fn hash(&self, password: Password) -> Result<String, PasswordError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        rx.await
            .map_err(|_| PasswordError::WorkerStopped)?
            .map_err(PasswordError::Hash)
    }

    /// Checks `password` against `phc`; with `None` (unknown user) runs the
    /// same work against a dummy hash and answers `false`.
    pub async fn verify(
        &self,
        password: Password,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            phc,
            reply,
            slot: None,
        })?;
        rx.await.map_err(|_| PasswordError::WorkerStopped)
    }

    /// [`Self::verify`] as one of `account`'s at most
    /// [`MAX_CHECKS_PER_ACCOUNT`] checks at once; over that, 429 with a
    /// one-second `Retry-After` (the queue stays free for other accounts).
    pub async fn verify_for(
        &self,
        account: &str,
        password: Password,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let Some(slot) = self.per_account.take(account) else {
            return Err(PasswordError::TooManyChecks);
        };
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            phc,
            reply,
            slot: Some(slot),
        })?;
        rx.await.map_err(|_| PasswordError::WorkerStopped)
    }

    /// Jobs queued or running.
    /// Password verifications completed so far (dummy ones for unknown
    /// users included).
    pub fn verifications(&self) -> u64 {
        self.counters.verified.load(Ordering::Relaxed)
    }

    pub fn queue_depth(&self) -> usize {
        self.counters.depth.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Argon2Params {
        Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = PasswordHasher::start(small(), 1, 4).unwrap();
        let phc = h.hash(Password::new("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(
            h.verify(Password::new("correct horse"), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !h.verify(Password::new("wrong horse"), Some(phc))
                .await
                .unwrap()
        );
        assert!(
            !h.verify(
                Password::new("warden dummy password, never a real one"),
                None
            )
            .await
            .unwrap()
        );
    }

    #[test]
    fn phc_strings_made_by_the_argon2_crate_verify() {
        use argon2::PasswordHasher as _;
        let a = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        let phc = a.hash_password(b"hunter22").unwrap().to_string();
        let mut w = Worker {
            params: Params::new(64, 1, 1, Some(32)).unwrap(),
            memory: Vec::new(),
            dummy: phc.clone(),
        };
        assert!(w.verify("hunter22", Some(&phc)));
        assert!(!w.verify("hunter23", Some(&phc)));
    }

    #[test]
    fn garbage_hash_never_verifies() {
        assert!(parse_phc("$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA").is_none());
        assert!(parse_phc("plain").is_none());
    }

    #[tokio::test]
    async fn one_account_holds_at_most_its_share_of_the_queue() {
        // Parameters slow enough that jobs are still queued while more are
        // submitted.
        let h = PasswordHasher::start(
            Argon2Params {
                memory_kib: 8 * 1024,
                iterations: 2,
                parallelism: 1,
            },
            1,
            64,
        )
        .unwrap();
        let phc = h.hash(Password::new("pw")).await.unwrap();
        let checks: Vec<_> = (0..10)
            .map(|_| {
                let h = h.clone();
                let phc = phc.clone();
                tokio::spawn(async move {
                    h.verify_for("victim", Password::new("guess"), Some(phc))
                        .await
                })
            })
            .collect();
        // Another account is not affected by the flood.
        assert!(
            h.verify_for("bystander", Password::new("pw"), Some(phc.clone()))
                .await
                .unwrap()
        );
        let mut refused = 0;
        for c in checks {
            match c.await.unwrap() {
                Ok(ok) => assert!(!ok),
                Err(PasswordError::TooManyChecks) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(refused >= 7, "{refused} of 10 refused");
        // Places are given back once the jobs are done.
        assert!(h.per_account.map.is_empty());
        assert!(
            !h.verify_for("victim", Password::new("guess"), Some(phc))
                .await
                .unwrap()
        );
    }
}
