//! Stage 0 of NullOS: PID 1 of the boot image, the only code that runs before a release is
//! verified.
//!
//! It looks for the release in its sources, in order: the partition named `NULLOS-RELEASE`
//! on the boot medium (storage drivers loaded with the `pid1` library's module loading
//! and coldplug), a cache on a data disk (not implemented yet), then the release URLs
//! (`nullos.release=` on its command line, the PXE case, or the list baked into the boot
//! image; the network comes up with `pid1`'s DHCP). Whichever source, the release is
//! read into memory, verified (signer policy baked into the boot image at [`POLICY_PATH`],
//! version at least the highest accepted on this machine, BLAKE3 of kernel, initramfs and
//! command line), the persisted version floor is raised (on the medium, if there is one), and
//! exactly the verified bytes are `kexec_file_load`ed. Each source that fails is one
//! `nullos: refused <artifact>: <reason>` console line; when none booted, a wait and another
//! round: it never boots anything unverified and never offers a shell.
//!
//! - [`verify`]: the pure decision (what to boot, which refusal line), unit-tested with buffers.
//! - [`state`]: the persisted highest version.
//! - [`medium`]: finding and reading the release partition (sysfs, `fatfs`).
//! - [`network`]: release URLs and the HTTP source (`ureq`, bounded reads, retries).
//! - [`drivers`]: module loading for the medium and the NICs.
//! - [`kexec`]: sealed memfds, `kexec_file_load`, `reboot(RB_KEXEC)`.
//!
//! Outside tests, `unwrap`, `expect` and `panic!` are denied: stage 0 is PID 1 and reads
//! untrusted bytes.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod drivers;
pub mod kexec;
pub mod medium;
pub mod network;
pub mod node_params;
pub mod state;
pub mod verify;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pid1::cmdline::Cmdline;
use pid1::{info, log, mounts, warn};
use trust::SignerPolicy;

use crate::drivers::Drivers;
use crate::medium::{Medium, RELEASE_PARTITION};
use crate::verify::Refusal;

// The release signer policy in the boot image (a policy file or a single public key file).
pub use interfaces::paths::RELEASE_POLICY as POLICY_PATH;
/// How long one attempt waits for the release partition to appear.
pub const MEDIUM_WAIT: Duration = Duration::from_secs(20);
/// The pause between a refusal and the next attempt.
pub const RETRY_DELAY: Duration = Duration::from_secs(10);
/// How often the partition is looked for while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Runs stage 0. Returns only into the kexec'ed kernel (that is, never).
pub fn run() -> Infallible {
    let mounted = mounts::mount_all();
    let cmdline_bytes = pid1::cmdline::read();
    let cmdline = Cmdline::parse(&cmdline_bytes);
    log::set_program("boot");
    log::init(cmdline.loglevel);
    info!(
        "nullos boot (stage 0) {} starting",
        env!("CARGO_PKG_VERSION")
    );
    for outcome in mounted {
        if let mounts::MountOutcome::Failed(e) = outcome {
            pid1::error!("{}", pid1::error_chain(&e));
        }
    }
    let baked = std::fs::read_to_string(network::RELEASE_URLS_PATH).ok();
    let mut stage0 = Stage0 {
        drivers: Drivers::open(),
        urls: network::release_urls(&cmdline_bytes, baked.as_deref()),
        network_boot: !network::release_urls(&cmdline_bytes, None).is_empty(),
        network_up: false,
        boot_cmdline: cmdline_bytes,
    };
    if !stage0.urls.is_empty() {
        info!("release URLs: {}", stage0.urls.join(" "));
    }
    loop {
        match load_policy() {
            Ok(policy) => stage0.attempt(&policy),
            Err(refusal) => log::interface_line(&refusal.to_string()),
        }
        info!(
            "nothing booted; trying again in {} s",
            RETRY_DELAY.as_secs()
        );
        std::thread::sleep(RETRY_DELAY);
    }
}

/// The signer policy baked into the boot image.
fn load_policy() -> Result<SignerPolicy, Refusal> {
    let refuse = |why: String| Refusal::new("policy", format!("{POLICY_PATH}: {why}"));
    let text = std::fs::read_to_string(POLICY_PATH).map_err(|e| refuse(e.to_string()))?;
    if let Ok(policy) = SignerPolicy::from_text(&text) {
        return Ok(policy);
    }
    trust::PublicKey::from_text(&text)
        .map(SignerPolicy::single)
        .map_err(|e| refuse(pid1::error_chain(&e)))
}

/// Stage 0's state across tries.
struct Stage0 {
    drivers: Drivers,
    /// Release folders on HTTP servers, tried after the medium.
    urls: Vec<String>,
    /// Booted with `nullos.release=` (PXE): no medium is waited for.
    network_boot: bool,
    /// DHCP succeeded once (it is not redone on later tries).
    network_up: bool,
    /// Stage 0's own command line (the allowed `nullos.*` parameters go to the node).
    boot_cmdline: Vec<u8>,
}

/// Where the rollback floor lives: the medium's state file, if there is a medium.
struct Floor {
    /// The release partition, where the raised floor is written.
    device: Option<PathBuf>,
    /// The highest version accepted before.
    highest: u64,
}

impl Stage0 {
    /// One try of every source in order: the boot medium, (a data-disk cache: not implemented
    /// yet), the release URLs. Prints one refusal line per source that failed; returns only if
    /// nothing was booted.
    fn attempt(&mut self, policy: &SignerPolicy) {
        let floor = match self.try_medium(policy) {
            Ok(floor) => floor,
            Err(refusal) => {
                // A medium whose rollback floor cannot be read: fail closed, no other source.
                log::interface_line(&refusal.to_string());
                return;
            }
        };
        if self.urls.is_empty() {
            return;
        }
        if !self.bring_up_network() {
            log::interface_line(
                &Refusal::new("network", "no interface got a DHCP lease").to_string(),
            );
            return;
        }
        for url in self.urls.clone() {
            let mut source = network::HttpSource::new(&url);
            let start = Instant::now();
            let refusal = match verify::verify(&mut source, policy, floor.highest) {
                Ok(verified) => {
                    let how = format!(
                        "release fetched from {url} and verified in {} ms (highest version accepted before: {})",
                        start.elapsed().as_millis(),
                        floor.highest
                    );
                    self.boot(verified, &floor, &how)
                }
                Err(r) => network::refusal_at(&url, r),
            };
            log::interface_line(&refusal.to_string());
        }
    }

    /// The boot medium: boots its release if it verifies (never returns then). `Ok` carries
    /// the rollback floor for the next sources (the medium's, or 0 without a medium), after
    /// printing why the medium's release was not booted; `Err` is a medium whose floor cannot
    /// be read.
    fn try_medium(&mut self, policy: &SignerPolicy) -> Result<Floor, Refusal> {
        // Over PXE there is no medium to wait for: one look after the drivers settle.
        let wait = if self.network_boot {
            Duration::ZERO
        } else {
            MEDIUM_WAIT
        };
        let no_floor = Floor {
            device: None,
            highest: 0,
        };
        let Some(device) = wait_for_medium(&mut self.drivers, wait) else {
            let missing = format!(
                "no partition named {RELEASE_PARTITION} found in {} s",
                wait.as_secs()
            );
            if self.urls.is_empty() {
                log::interface_line(&Refusal::new("medium", missing).to_string());
            } else {
                info!("{missing}; the release comes from the network");
                info!("release cache on a data disk: not implemented yet; skipped");
            }
            return Ok(no_floor);
        };
        let start = Instant::now();
        let mut medium = match Medium::read(&device) {
            Ok(m) => m,
            Err(e) => {
                log::interface_line(&Refusal::new("medium", pid1::error_chain(&e)).to_string());
                return Ok(no_floor);
            }
        };
        let read_ms = start.elapsed().as_millis();
        let highest = highest_seen(&mut medium)?;
        let floor = Floor {
            device: Some(device),
            highest,
        };
        let start = Instant::now();
        let refusal = match verify::verify(&mut medium, policy, highest) {
            Ok(verified) => {
                drop(medium);
                // The bench parses this line (bench/src/stage0.rs TIMING_LINE).
                let how = format!(
                    "release read from {} in {read_ms} ms, verified in {} ms (highest version accepted before: {highest})",
                    floor.device.as_deref().unwrap_or(Path::new("?")).display(),
                    start.elapsed().as_millis()
                );
                self.boot(verified, &floor, &how)
            }
            Err(r) => r,
        };
        log::interface_line(&refusal.to_string());
        Ok(floor)
    }

    /// DHCP on every interface with carrier, once; the NIC drivers are loaded by coldplug.
    fn bring_up_network(&mut self) -> bool {
        if self.network_up {
            return true;
        }
        self.drivers.coldplug();
        match pid1::net::bring_up() {
            Ok(configured) if !configured.is_empty() => self.network_up = true,
            Ok(_) => {}
            Err(e) => pid1::error!("network: {}", pid1::error_chain(&e)),
        }
        self.network_up
    }

    /// Boots a verified release, whichever source it came from: the success line, the node's
    /// command line, the raised rollback floor, `kexec_file_load` of the verified bytes.
    /// Returns why it did not happen.
    /// `how` is the log line saying where it came from and how long it took.
    fn boot(&self, verified: verify::Verified, floor: &Floor, how: &str) -> Refusal {
        log::interface_line(&verified.line());
        info!("{how}");
        let cmdline = match node_params::node_cmdline(&verified.cmdline, &self.boot_cmdline) {
            Ok(c) => {
                for line in c.dropped_lines() {
                    log::interface_line(&line);
                }
                c.line
            }
            Err(r) => return r,
        };
        if let Some(raised) = state::raised(floor.highest, verified.manifest.version) {
            match &floor.device {
                Some(device) => match medium::write_file(
                    device,
                    state::STATE_FILE,
                    state::format(raised).as_bytes(),
                ) {
                    Ok(()) => info!("highest accepted version is now {raised}"),
                    Err(e) => warn!(
                        "cannot record version {raised} in {}: {}",
                        state::STATE_FILE,
                        pid1::error_chain(&e)
                    ),
                },
                None => warn!(
                    "no writable medium: the rollback floor (version {raised}) is not persisted"
                ),
            }
        }
        if let Err(e) = kexec::load(&verified.kernel, &verified.initrd, &cmdline) {
            return Refusal::new("kernel", pid1::error_chain(&e));
        }
        log::interface_line(&format!(
            "nullos: booting release version={} cmdline=\"{cmdline}\"",
            verified.manifest.version
        ));
        let e = kexec::start();
        Refusal::new("kernel", pid1::error_chain(&e))
    }
}

/// The highest version accepted before, from the medium's state file (0 when there is none).
fn highest_seen(medium: &mut Medium) -> Result<u64, Refusal> {
    use verify::Source;
    if !medium.exists(state::STATE_FILE) {
        return Ok(0);
    }
    let bytes = medium
        .read(state::STATE_FILE, state::MAX_STATE_BYTES)
        .map_err(|e| Refusal::new(state::STATE_FILE, e))?;
    let text =
        String::from_utf8(bytes).map_err(|_| Refusal::new(state::STATE_FILE, "not UTF-8 text"))?;
    state::parse(&text).map_err(|e| Refusal::new(state::STATE_FILE, e))
}

/// Waits (up to `wait`) for the release partition, loading drivers as devices appear.
fn wait_for_medium(drivers: &mut Drivers, wait: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        drivers.coldplug();
        if let Some(device) =
            medium::find_partition(Path::new(medium::SYS_BLOCK), RELEASE_PARTITION)
        {
            info!(
                "release partition {RELEASE_PARTITION} is {} (after {} ms)",
                device.display(),
                start.elapsed().as_millis()
            );
            return Some(device);
        }
        if start.elapsed() >= wait {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
