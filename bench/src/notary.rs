//! `nullos-bench notary`: the notary under load, against its goals, in one run.
//!
//! - **writes**: signed node registrations (valid grid documents, each node's `sequence`
//!   growing) submitted through HTTP by N concurrent client threads, each waiting for its
//!   durable (redb, fsync) acknowledgement and checking the receipt, against this machine's
//!   single-core `ed25519-dalek` `verify_strict` rate measured in the same run;
//! - **nodes**: many simulated nodes in this process, one thread each (small stacks), each a
//!   real `notary_client::Client` holding a long-poll and renewing its lease, while placements
//!   are written: the latency from a placement's acknowledgement to its node's poll returning
//!   it, and the server's resident memory;
//! - **proof**: the inclusion proof size at 1,000,000 entries, from a `tlog` tree.
//!
//! Every server is a real `nullos-notary serve` on 127.0.0.1 with a temporary data directory,
//! killed when its part ends. Everything is bounded in count and time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notary_client::Client;
use thiserror::Error;
use trust::grid::{Approval, ContractId};
use trust::grid::{
    Capacity, Constraints, Contract, ContractWorkload, Disk, Egress, Farm, Lease, Nic,
    NodeRegistration, Placement,
};
use trust::{Digest, PublicKey, SecretKey, SignedBody, SignerPolicy};

/// Why the notary benchmark could not run.
#[derive(Debug, Error)]
pub enum NotaryBenchError {
    /// The server could not be started or did not print its line.
    #[error("cannot start {bin}: {reason}")]
    Server {
        /// The binary.
        bin: PathBuf,
        /// Why.
        reason: String,
    },
    /// A setup write or read failed.
    #[error("{what} failed")]
    Client {
        /// The step.
        what: String,
        /// The client's error.
        #[source]
        source: notary_client::ClientError,
    },
    /// A fixture document does not validate (a bench bug).
    #[error("fixture {what} is not a valid document: {reason}")]
    Fixture {
        /// The kind.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Local I/O (temporary directories, threads).
    #[error("{what}")]
    Io {
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> NotaryBenchError {
    move |source| NotaryBenchError::Io { what, source }
}

fn client_err(
    what: impl Into<String>,
) -> impl FnOnce(notary_client::ClientError) -> NotaryBenchError {
    let what = what.into();
    move |source| NotaryBenchError::Client { what, source }
}

/// Raises this process's open-file limit to its hard limit (and the hard limit to `want` when
/// allowed, as for root). Children (the server) inherit it. Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let raised = libc::rlimit {
        rlim_cur: want.max(lim.rlim_cur),
        rlim_max: want.max(lim.rlim_max),
    };
    // SAFETY: setrlimit only reads the valid `raised`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return raised.rlim_cur;
    }
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
        return soft.rlim_cur;
    }
    lim.rlim_cur
}

/// A running `nullos-notary serve`, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    _data: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The checkpoint key it printed.
    pub key: PublicKey,
}

impl Server {
    /// Starts `bin serve` on a fresh temporary data directory (embedded redb store).
    pub fn start(bin: &Path) -> Result<Server, NotaryBenchError> {
        let fail = |reason: String| NotaryBenchError::Server {
            bin: bin.to_path_buf(),
            reason,
        };
        let data = tempfile::Builder::new()
            .prefix("nullos-bench-notary-")
            .tempdir()
            .map_err(io("create the data directory"))?;
        // The open rules: the grid's would refuse these placements (the bench enrolls no node
        // with its farm yet) and keep leases out of the log; what is measured is the log's
        // write, commit and long-poll path (docs/NOTARY.md, Benchmarks).
        let mut child = Command::new(bin)
            .arg("serve")
            .args(["--rules", "open"])
            .arg("--data")
            .arg(data.path())
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let parsed = line
            .trim()
            .strip_prefix("nullos-notary listening on ")
            .and_then(|rest| rest.split_once(" key "))
            .and_then(|(url, key)| Some((url.to_string(), PublicKey::from_text(key).ok()?)));
        match parsed {
            Some((url, key)) => Ok(Server {
                child,
                _data: data,
                url,
                key,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(fail(format!("unexpected first line {line:?} ({read:?})")))
            }
        }
    }

    /// A client pinned to this server's key.
    pub fn client(&self) -> Result<Client, NotaryBenchError> {
        Client::new(&self.url, &self.key).map_err(client_err("client"))
    }

    /// `(VmRSS, VmHWM)` of the server process in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic key per role and number.
fn key(role: u8, n: u64) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[0] = role;
    seed[1..9].copy_from_slice(&n.to_le_bytes());
    SecretKey::from_seed(seed)
}

const FARMER: u8 = 1;
const NODE: u8 = 2;
const OWNER: u8 = 3;

fn signed<B: SignedBody>(
    body: &B,
    what: &'static str,
    by: &SecretKey,
) -> Result<Vec<u8>, NotaryBenchError> {
    body.validate().map_err(|e| NotaryBenchError::Fixture {
        what,
        reason: e.to_string(),
    })?;
    let mut d = body.to_document();
    d.sign(by).map_err(|e| NotaryBenchError::Fixture {
        what,
        reason: e.to_string(),
    })?;
    Ok(d.encode())
}

fn farm() -> Result<Vec<u8>, NotaryBenchError> {
    let farmer = key(FARMER, 0);
    signed(
        &Farm {
            version: 1,
            farmer: farmer.public(),
            name: "Bench farm".into(),
        },
        "farm",
        &farmer,
    )
}

fn registration(node: u64, sequence: u64) -> Result<Vec<u8>, NotaryBenchError> {
    let k = key(NODE, node);
    let mac = node.to_be_bytes();
    signed(
        &NodeRegistration {
            sequence,
            node: k.public(),
            farm: key(FARMER, 0).public(),
            capacity: Capacity {
                cpus: 16,
                memory_mib: 64 * 1024,
                disks: vec![Disk {
                    name: "nvme0n1".into(),
                    size_mib: 1024 * 1024,
                }],
                nics: vec![Nic {
                    name: "eth0".into(),
                    mac: [0x52, 0x54, mac[4], mac[5], mac[6], mac[7]],
                }],
            },
            release_version: 1,
            release_manifest: Digest::of(b"bench release"),
        },
        "node registration",
        &k,
    )
}

/// Node `n`'s contract: owned by its own owner key, who is also its one stakeholder.
fn contract(n: u64) -> Contract {
    let owner = key(OWNER, n).public();
    Contract {
        version: 1,
        supersedes: None,
        owner,
        stakeholders: SignerPolicy::single(owner),
        workloads: vec![ContractWorkload {
            name: "web".into(),
            manifest: Digest::of(b"bench workload.manifest"),
            vcpus: 1,
            memory_mib: 64,
            volumes: vec![],
            egress: Egress::None,
            env: vec![],
        }],
        constraints: Constraints {
            farms: vec![key(FARMER, 0).public()],
            min_memory_mib: 0,
            min_cpus: 0,
            copies: 1,
        },
    }
}

fn lease(node: &SecretKey, sequence: u64, secs: u64) -> Result<Vec<u8>, NotaryBenchError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    signed(
        &Lease {
            sequence,
            node: node.public(),
            expires: now + secs,
        },
        "lease",
        node,
    )
}

/// The default long-poll key template. Under the notary's interim `OpenRules` a document is
/// filed under `kind/<code>` and `signer/<key hex>` only, so a node waits on its contract
/// owner's signer key (every node here has its own owner). Once the grid rules file
/// placements under the node's key, pass that key's template instead.
pub const DEFAULT_WAIT_KEY: &str = "signer/{owner}";

fn hex(key: &PublicKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The long-poll key of node `n` from `template`: `{node}` and `{owner}` become the node's and
/// its contract owner's public keys in hex.
pub fn wait_key(template: &str, n: u64) -> String {
    template
        .replace("{node}", &hex(&key(NODE, n).public()))
        .replace("{owner}", &hex(&key(OWNER, n).public()))
}

fn median_f(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The sample at rank `permille`/1000 of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], permille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = (sorted.len() * permille)
        .div_ceil(1000)
        .clamp(1, sorted.len())
        - 1;
    sorted[at]
}

/// Single-core `verify_strict` calls per second over `secs` seconds.
pub fn verify_rate(secs: f64) -> f64 {
    use ed25519_dalek::{Signer as _, SigningKey};
    let signing = SigningKey::from_bytes(&[9; 32]);
    let message = [0x5a_u8; 200];
    let signature = signing.sign(&message);
    let verifying = signing.verifying_key();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            let ok = verifying
                .verify_strict(std::hint::black_box(&message), &signature)
                .is_ok();
            std::hint::black_box(ok);
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The write benchmark's settings.
#[derive(Debug)]
pub struct WriteBench {
    /// Concurrent client threads per measurement.
    pub writers: Vec<usize>,
    /// Rounds (each measures every writer count once).
    pub rounds: usize,
    /// Length of one measurement.
    pub secs: f64,
}

/// Runs the write benchmark; calls `out` with each line.
pub fn writes(
    bin: &Path,
    b: &WriteBench,
    out: &mut dyn FnMut(String),
) -> Result<(), NotaryBenchError> {
    let server = Server::start(bin)?;
    let client = server.client()?;
    client.submit(&farm()?).map_err(client_err("farm"))?;
    let most = b.writers.iter().copied().max().unwrap_or(1);
    // One node per writer thread; each registration supersedes that node's previous one.
    let sequences: Arc<Vec<AtomicU64>> = Arc::new((0..most).map(|_| AtomicU64::new(1)).collect());
    let mut verify = Vec::new();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); b.writers.len()];
    for round in 1..=b.rounds {
        verify.push(verify_rate(1.0));
        for (w, &writers) in b.writers.iter().enumerate() {
            let done = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs_f64(b.secs);
            let start = Instant::now();
            let threads: Vec<_> = (0..writers)
                .map(|t| {
                    let (url, key, done, errors, sequences) = (
                        server.url.clone(),
                        server.key,
                        Arc::clone(&done),
                        Arc::clone(&errors),
                        Arc::clone(&sequences),
                    );
                    thread::spawn(move || {
                        // Each thread has its own client and connection, as separate
                        // writers would.
                        let Ok(client) = Client::new(&url, &key) else {
                            errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        };
                        while Instant::now() < deadline {
                            let seq = sequences[t].fetch_add(1, Ordering::Relaxed);
                            let Ok(doc) = registration(t as u64, seq) else {
                                errors.fetch_add(1, Ordering::Relaxed);
                                return;
                            };
                            match client.submit(&doc) {
                                Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                                Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    })
                })
                .collect();
            for t in threads {
                let _ = t.join();
            }
            let elapsed = start.elapsed().as_secs_f64();
            let rate = done.load(Ordering::Relaxed) as f64 / elapsed;
            out(format!(
                "round {round}/{}: {writers:>3} writers: {rate:>7.0} acknowledged writes/s ({} refused or failed); verify_strict {:.0}/s on one core",
                b.rounds,
                errors.load(Ordering::Relaxed),
                verify[verify.len() - 1]
            ));
            rates[w].push(rate);
        }
    }
    let verify = median_f(&mut verify);
    for (w, &writers) in b.writers.iter().enumerate() {
        let rate = median_f(&mut rates[w]);
        out(format!(
            "notary-writes: {writers} writers {rate:.0}/s vs ed25519 verify_strict {verify:.0}/s (one core) => ratio {:.2} (goal >= 0.50)",
            rate / verify
        ));
    }
    Ok(())
}

/// The simulated-nodes benchmark's settings.
#[derive(Debug)]
pub struct NodeBench {
    /// Simulated nodes (one thread each).
    pub nodes: u64,
    /// Lease period: each node renews every `lease_secs` (leases expire 5 s later).
    pub lease_secs: u64,
    /// Placements written while the nodes poll.
    pub placements: u64,
    /// Placements written per second.
    pub placement_rate: f64,
    /// Stack size of each node thread.
    pub stack_kib: usize,
    /// Client threads that write the setup documents.
    pub setup_writers: usize,
    /// The long-poll key template ([`wait_key`]).
    pub wait_key: String,
}

/// What each node saw: `(node, index) -> when its poll returned it`.
type Arrivals = Mutex<Vec<(u64, u64, Instant)>>;

/// Runs the simulated-nodes benchmark; calls `out` with each line.
pub fn nodes(
    bin: &Path,
    b: &NodeBench,
    out: &mut dyn FnMut(String),
) -> Result<(), NotaryBenchError> {
    let server = Server::start(bin)?;
    let client = server.client()?;
    client.submit(&farm()?).map_err(client_err("farm"))?;

    // Setup: per node its registration, its contract and the owner's approval, written by a
    // few client threads in that order per node.
    let setup_start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed: Arc<Mutex<Option<NotaryBenchError>>> = Arc::default();
    let ids: Arc<Mutex<Vec<(u64, ContractId)>>> = Arc::default();
    let setup: Vec<_> = (0..b.setup_writers.max(1))
        .map(|_| {
            let (client, next, failed, ids, count) = (
                client.clone(),
                Arc::clone(&next),
                Arc::clone(&failed),
                Arc::clone(&ids),
                b.nodes,
            );
            thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return;
                }
                let step = || -> Result<ContractId, NotaryBenchError> {
                    client
                        .submit(&registration(n, 1)?)
                        .map_err(client_err(format!("registration of node {n}")))?;
                    let c = contract(n);
                    let owner = key(OWNER, n);
                    client
                        .submit(&signed(&c, "contract", &owner)?)
                        .map_err(client_err(format!("contract {n}")))?;
                    let approval = Approval {
                        version: 1,
                        contract: c.id(),
                        body: c.body_digest(),
                        stakeholder: owner.public(),
                    };
                    client
                        .submit(&signed(&approval, "approval", &owner)?)
                        .map_err(client_err(format!("approval {n}")))?;
                    Ok(c.id())
                };
                match step() {
                    Ok(id) => ids.lock().unwrap_or_else(|e| e.into_inner()).push((n, id)),
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        next.store(count, Ordering::Relaxed);
                        return;
                    }
                }
            })
        })
        .collect();
    for t in setup {
        let _ = t.join();
    }
    if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    let mut ids = std::mem::take(&mut *ids.lock().unwrap_or_else(|e| e.into_inner()));
    ids.sort_by_key(|(n, _)| *n);
    let (checkpoint, _) = client.checkpoint().map_err(client_err("checkpoint"))?;
    out(format!(
        "nodes setup: farm + {} nodes x (registration, contract, approval) = {} entries in {:.1} s",
        b.nodes,
        checkpoint.size,
        setup_start.elapsed().as_secs_f64()
    ));
    let after_setup = checkpoint.size.saturating_sub(1);

    // The nodes.
    let stop = Arc::new(AtomicBool::new(false));
    let polling = Arc::new(AtomicUsize::new(0));
    let leases = Arc::new(AtomicU64::new(0));
    let lease_errors = Arc::new(AtomicU64::new(0));
    let poll_errors = Arc::new(AtomicU64::new(0));
    let arrivals: Arc<Arrivals> = Arc::default();
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut spawn_error = None;
    for n in 0..b.nodes {
        // Each node has its own client (its own connection), as real nodes would.
        let node_client = Client::new(&server.url, &server.key).map_err(client_err("client"))?;
        let (client, stop, polling, leases, lease_errors, poll_errors, arrivals) = (
            node_client,
            Arc::clone(&stop),
            Arc::clone(&polling),
            Arc::clone(&leases),
            Arc::clone(&lease_errors),
            Arc::clone(&poll_errors),
            Arc::clone(&arrivals),
        );
        let lease_secs = b.lease_secs;
        let wait_key = wait_key(&b.wait_key, n);
        // Spread the first renewals over one period.
        let first = Duration::from_secs_f64(lease_secs as f64 * n as f64 / b.nodes as f64);
        let spawned = thread::Builder::new()
            .name(format!("node{n}"))
            .stack_size(b.stack_kib * 1024)
            .spawn(move || {
                let node = key(NODE, n);
                let mut after = after_setup;
                let mut sequence = 1u64;
                let mut due = started + first;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= due {
                        match lease(&node, sequence, lease_secs + 5).map(|d| client.submit(&d)) {
                            Ok(Ok(_)) => leases.fetch_add(1, Ordering::Relaxed),
                            _ => lease_errors.fetch_add(1, Ordering::Relaxed),
                        };
                        sequence += 1;
                        due += Duration::from_secs(lease_secs);
                        continue;
                    }
                    let timeout = (due - now).as_secs().max(1);
                    polling.fetch_add(1, Ordering::Relaxed);
                    let got = client.wait(&wait_key, Some(after), Duration::from_secs(timeout));
                    let at = Instant::now();
                    polling.fetch_sub(1, Ordering::Relaxed);
                    match got {
                        Ok(entries) => {
                            let mut seen = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                            for (index, _) in entries {
                                seen.push((n, index, at));
                                after = after.max(index);
                            }
                        }
                        Err(_) => {
                            poll_errors.fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                spawn_error = Some(e);
                break;
            }
        }
    }
    let running = handles.len() as u64;
    if let Some(e) = &spawn_error {
        out(format!(
            "nodes: could only start {running} of {} node threads: {e}",
            b.nodes
        ));
    }
    // Let every node reach its first poll.
    let settle = Instant::now() + Duration::from_secs(b.lease_secs.max(5));
    while Instant::now() < settle {
        thread::sleep(Duration::from_millis(200));
    }
    let mut peak_rss = 0u64;
    let mut min_polling = usize::MAX;
    let leases_at_start = leases.load(Ordering::Relaxed);
    let place_start = Instant::now();

    // Placements, to nodes picked by a fixed LCG, each acknowledged before the next.
    let mut acks: Vec<(u64, u64, Instant)> = Vec::new();
    let mut place_errors = 0u64;
    let mut sequences = vec![0u64; handles.len()];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let gap = Duration::from_secs_f64(1.0 / b.placement_rate.max(0.1));
    for i in 0..b.placements {
        let tick = place_start + gap * u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(sleep) = tick.checked_duration_since(Instant::now()) {
            thread::sleep(sleep);
        }
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = (x >> 33) % running.max(1);
        let slot = usize::try_from(n).unwrap_or(usize::MAX);
        let (Some(&(_, id)), Some(sequence)) = (ids.get(slot), sequences.get_mut(slot)) else {
            continue;
        };
        *sequence += 1;
        let placement = Placement {
            sequence: *sequence,
            contract: id,
            version: 1,
            node: key(NODE, n).public(),
            owner: key(OWNER, n).public(),
            reason: "bench".into(),
        };
        let doc = signed(&placement, "placement", &key(OWNER, n))?;
        match client.submit(&doc) {
            Ok(receipt) => acks.push((n, receipt.index, Instant::now())),
            Err(_) => place_errors += 1,
        }
        min_polling = min_polling.min(polling.load(Ordering::Relaxed));
        if i % 16 == 0 {
            if let Some((rss, _)) = server.memory_kib() {
                peak_rss = peak_rss.max(rss);
            }
        }
    }
    let place_secs = place_start.elapsed().as_secs_f64();
    thread::sleep(Duration::from_secs(2));
    let lease_rate = (leases.load(Ordering::Relaxed) - leases_at_start) as f64
        / place_start.elapsed().as_secs_f64();
    let memory = server.memory_kib();
    stop.store(true, Ordering::Relaxed);
    // Nodes see the stop flag when their poll or lease returns (at most one lease period).
    for h in handles {
        let _ = h.join();
    }

    let seen = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let mut latencies = Vec::new();
    let mut early = 0u64;
    let mut missed = 0u64;
    for (n, index, acked) in &acks {
        match seen.iter().find(|(m, i, _)| m == n && i == index) {
            Some((_, _, at)) => {
                if at < acked {
                    early += 1;
                }
                latencies.push(at.saturating_duration_since(*acked));
            }
            None => missed += 1,
        }
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (rss, hwm) = memory.unwrap_or((0, 0));
    out(format!(
        "nodes: {running} simulated nodes (one thread each, {} KiB stacks, each its own notary_client::Client, polling {}), \
         {} leases/s renewed ({} refused or failed), >= {} polls held while placing, {} poll errors",
        b.stack_kib,
        b.wait_key,
        lease_rate.round(),
        lease_errors.load(Ordering::Relaxed),
        if min_polling == usize::MAX { 0 } else { min_polling },
        poll_errors.load(Ordering::Relaxed),
    ));
    out(format!(
        "nodes: {} placements in {place_secs:.1} s ({place_errors} failed): acknowledgement -> node's poll returned p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({early} returned before the writer's acknowledgement, counted as 0; {missed} never seen)",
        acks.len(),
        ms(quantile(&latencies, 500)),
        ms(quantile(&latencies, 990)),
        ms(quantile(&latencies, 1000)),
    ));
    let p99 = quantile(&latencies, 990);
    out(format!(
        "notary-placement-latency: p99 {:.1} ms with {running} nodes => ratio {:.3} of the goal (goal <= 1000 ms)",
        ms(p99),
        ms(p99) / 1000.0
    ));
    out(format!(
        "notary-memory: server VmRSS {:.1} MiB (peak sampled {:.1} MiB), VmHWM {:.1} MiB with {running} nodes => ratio {:.3} of the goal (goal <= 512 MiB)",
        rss as f64 / 1024.0,
        peak_rss.max(rss) as f64 / 1024.0,
        hwm as f64 / 1024.0,
        hwm as f64 / 1024.0 / 512.0
    ));
    Ok(())
}

/// The inclusion proof size at `leaves` entries, from a `tlog` tree of that size (leaf `i` is
/// the 8 bytes of `i`): the shortest and longest proof, checked, and their JSON size.
pub fn proof_size(leaves: u64, out: &mut dyn FnMut(String)) {
    let start = Instant::now();
    let mut tree = tlog::MerkleTree::new();
    for i in 0..leaves {
        tree.push(tlog::leaf_hash(&i.to_le_bytes()));
    }
    let root = match tree.root(leaves) {
        Ok(root) => root,
        Err(e) => {
            out(format!("notary-proof: cannot compute the root: {e}"));
            return;
        }
    };
    let (mut shortest, mut longest) = (usize::MAX, 0usize);
    let step = (leaves / 1000).max(1);
    let mut checked = 0u64;
    let mut index = 0;
    while index < leaves {
        if let Ok(proof) = tree.inclusion_proof(index, leaves) {
            if tlog::verify_inclusion(
                index,
                leaves,
                &tlog::leaf_hash(&index.to_le_bytes()),
                &proof,
                &root,
            )
            .is_ok()
            {
                checked += 1;
                shortest = shortest.min(proof.len());
                longest = longest.max(proof.len());
            }
        }
        index = if index == leaves - 1 {
            leaves
        } else {
            (index + step).min(leaves - 1)
        };
    }
    let json = |n: usize| n * 47; // "<44 base64 chars>", per hash
    out(format!(
        "notary-proof: {leaves} entries ({:.1} s to build the tlog tree): inclusion proofs {shortest}..{longest} hashes = {}..{} bytes ({}..{} bytes as JSON), {checked} sampled proofs verified; 32 x ceil(log2 n) = {} bytes",
        start.elapsed().as_secs_f64(),
        shortest * 32,
        longest * 32,
        json(shortest),
        json(longest),
        32 * (64 - (leaves.saturating_sub(1)).leading_zeros()),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_sample_at_or_above_the_rank() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&xs, 500), Duration::from_millis(50));
        assert_eq!(quantile(&xs, 990), Duration::from_millis(99));
        assert_eq!(quantile(&xs, 1000), Duration::from_millis(100));
        assert_eq!(quantile(&[], 990), Duration::ZERO);
    }

    #[test]
    fn wait_keys_name_the_node_or_its_owner() {
        let owner = wait_key(DEFAULT_WAIT_KEY, 3);
        assert_eq!(owner, format!("signer/{}", hex(&key(OWNER, 3).public())));
        assert_ne!(owner, wait_key(DEFAULT_WAIT_KEY, 4));
        assert_eq!(
            wait_key("node/{node}", 3),
            format!("node/{}", hex(&key(NODE, 3).public()))
        );
    }

    #[test]
    fn fixtures_are_valid_grid_documents() {
        assert!(farm().is_ok());
        assert!(registration(5, 2).is_ok());
        let c = contract(5);
        assert!(signed(&c, "contract", &key(OWNER, 5)).is_ok());
        assert!(lease(&key(NODE, 5), 1, 15).is_ok());
    }
}
