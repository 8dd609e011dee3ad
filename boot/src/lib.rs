//! Stage 0 of NullOS: PID 1 of the boot image, the only code that runs before a release is
//! verified.
//!
//! It looks for the release in its sources: the partition named `NULLOS-RELEASE` on the boot
//! medium (storage drivers loaded with the `pid1` library's module loading and coldplug), the
//! release cache on the machine's data disk ([`cache`]), and the release URLs
//! (`nullos.release=` on its command line, the PXE case, or the list baked into the boot
//! image; the network comes up with `pid1`'s DHCP). Without a data disk, the stick first, then
//! the URLs. With one (`counted.rs`), every source's manifest is checked first and boot counting
//! chooses ([`choice`], [`interfaces::boot_state`]): the highest release not marked bad, a new
//! one on trial with a bounded number of tries, the last good one when a trial never reached
//! `nullos: ready` or when no other source answers. Whichever source, the release is
//! read into memory and verified: signer policy baked into the boot image at [`POLICY_PATH`],
//! profile and target those of the boot image and version at least its baked minimum
//! ([`BOOT_IMAGE_PATH`]), version at least the highest accepted on this machine (the floor kept
//! on the stick and on the data disk, [`floor`]), BLAKE3 of kernel, initramfs and command line.
//! Then the floor is raised everywhere it is kept (to the booted version without a data disk; to
//! the last good one with it, since a trial must be able to fall back), and exactly the verified bytes are
//! `kexec_file_load`ed with the node's command line ([`node_params`]). Each source that fails
//! is one `nullos: refused <artifact>: <reason>` console line; a floor or a medium that is
//! present but unreadable refuses every source (fail closed); when none booted, a wait and
//! another round: it never boots anything unverified and never offers a shell.
//!
//! - [`verify`]: the pure decision (what to boot, which refusal line), unit-tested with buffers.
//! - [`digest`]: the BLAKE3 of an artifact on all cores (the same digest as on one).
//! - [`node_params`]: the node kernel's command line and the allow-list of passed parameters.
//! - [`state`]: the persisted highest version; [`floor`]: where it is kept on this machine.
//! - [`medium`]: finding and reading the release partition (sysfs, `fatfs`).
//! - [`data_disk`]: finding and mounting the node's data disk.
//! - [`cache`]: the release cache on it; [`choice`]: which release boots (boot counting, pure).
//! - [`network`]: release URLs and the HTTP source (`ureq`, bounded reads, deadlines, retries).
//! - [`drivers`]: module loading for the medium, the disks and the NICs.
//! - [`kexec`]: sealed memfds, `kexec_file_load`, `reboot(RB_KEXEC)`.
//!
//! Outside tests, `unwrap`, `expect` and `panic!` are denied: stage 0 is PID 1 and reads
//! untrusted bytes.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cache;
pub mod choice;
mod counted;
pub mod data_disk;
pub mod digest;
pub mod drivers;
pub mod floor;
pub mod kexec;
pub mod medium;
pub mod network;
pub mod node_params;
pub mod state;
pub mod verify;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interfaces::data_disk::{choose, Candidate, DiskState, FsUuid, Take};
use interfaces::farmer::{FarmerSettings, FARMER_FILE, MAX_FARMER_FILE_BYTES};
use interfaces::BootImageConfig;
use pid1::cmdline::Cmdline;
use pid1::{info, log, mounts, warn};
use trust::SignerPolicy;

use crate::drivers::Drivers;
use crate::floor::Floors;
use crate::medium::{Medium, RELEASE_PARTITION};
use crate::verify::Refusal;

// The release signer policy in the boot image (a policy file or a single public key file), and
// what the boot image boots (profile, target, lowest version).
pub use interfaces::paths::{BOOT_IMAGE_CONFIG as BOOT_IMAGE_PATH, RELEASE_POLICY as POLICY_PATH};
/// How long one attempt waits for the release partition to appear.
pub const MEDIUM_WAIT: Duration = Duration::from_secs(20);
/// The pause between a refusal and the next attempt.
pub const RETRY_DELAY: Duration = Duration::from_secs(10);
/// How often the partition is looked for while waiting.
const POLL: Duration = Duration::from_millis(250);
/// Disks are looked for once the list of block devices has not changed for this long...
const DISKS_QUIET: Duration = Duration::from_secs(1);
/// ... or after this long at most (NVMe namespaces appear a moment after their driver loads).
const DISKS_SETTLE_MAX: Duration = Duration::from_secs(5);

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
        disks_settled: false,
        boot_cmdline: cmdline_bytes,
        node_words: Vec::new(),
    };
    if !stage0.urls.is_empty() {
        info!("release URLs: {}", stage0.urls.join(" "));
    }
    loop {
        match load_boot_image() {
            Ok((policy, image)) => stage0.attempt(&policy, &image),
            Err(refusal) => log::interface_line(&refusal.to_string()),
        }
        info!(
            "nothing booted; trying again in {} s",
            RETRY_DELAY.as_secs()
        );
        std::thread::sleep(RETRY_DELAY);
    }
}

/// The signer policy and the boot image's config, baked into the boot image.
fn load_boot_image() -> Result<(SignerPolicy, BootImageConfig), Refusal> {
    let refuse =
        |artifact: &str, path: &str, why: String| Refusal::new(artifact, format!("{path}: {why}"));
    let text = std::fs::read_to_string(POLICY_PATH)
        .map_err(|e| refuse("policy", POLICY_PATH, e.to_string()))?;
    let policy = match SignerPolicy::from_text(&text) {
        Ok(policy) => policy,
        Err(_) => trust::PublicKey::from_text(&text)
            .map(SignerPolicy::single)
            .map_err(|e| refuse("policy", POLICY_PATH, pid1::error_chain(&e)))?,
    };
    let text = std::fs::read_to_string(BOOT_IMAGE_PATH)
        .map_err(|e| refuse("boot-image", BOOT_IMAGE_PATH, e.to_string()))?;
    let image = BootImageConfig::parse(&text)
        .map_err(|e| refuse("boot-image", BOOT_IMAGE_PATH, e.to_string()))?;
    Ok((policy, image))
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
    /// The disks were given their time to appear once.
    disks_settled: bool,
    /// Stage 0's own command line (the allowed `nullos.*` parameters go to the node).
    boot_cmdline: Vec<u8>,
    /// This attempt's words for the node from the stick (the farmer's settings, the pinned
    /// data disk), filtered by the same allow-list after `boot_cmdline`'s.
    node_words: Vec<String>,
}

impl Stage0 {
    /// One try of every source: without a data disk the boot medium, then the release URLs;
    /// with one, [`counted`]. Prints one refusal line per source that failed; returns only if
    /// nothing was booted.
    fn attempt(&mut self, policy: &SignerPolicy, image: &BootImageConfig) {
        // A medium, or a floor, that is present but unreadable: fail closed, no other source.
        let mut medium = match self.find_medium() {
            Ok(medium) => medium,
            Err(refusal) => return log::interface_line(&refusal.to_string()),
        };
        let stick = match medium.as_mut().map(|(_, m, _)| stick_settings(m)) {
            Some(Ok(settings)) => Some(settings),
            None => None,
            Some(Err(refusal)) => return log::interface_line(&refusal.to_string()),
        };
        let pin = stick.as_ref().and_then(|s| s.data_disk);
        let (mut floors, data_disk) = match self.data_disk_floors(image, pin) {
            Ok(found) => found,
            Err(refusal) => return log::interface_line(&refusal.to_string()),
        };
        // A stick pins the data disk it sees alone, and then passes it to the node.
        self.node_words = stick.map(|s| s.farmer_words).unwrap_or_default();
        let to_pin = data_disk
            .as_ref()
            .map(|(_, uuid)| *uuid)
            .filter(|_| pin.is_none() && medium.is_some());
        if let Some(uuid) = pin.or(to_pin) {
            self.node_words.push(format!("nullos.data={uuid}"));
        }
        // With a data disk: every source's candidates, the release cache and boot counting.
        if let Some((disk, _)) = data_disk {
            return self.attempt_counted(&disk, medium, policy, image, &mut floors, to_pin);
        }
        if let Some((device, medium, read_ms)) = medium {
            let found = (device.as_path(), medium, read_ms);
            if let Err(refusal) = self.try_medium(found, policy, image, &mut floors, to_pin) {
                return log::interface_line(&refusal.to_string());
            }
        } else {
            info!("{}", floors.summary());
        }
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
            let highest = floors.highest();
            let refusal = match verify::verify(&mut source, policy, image, highest) {
                Ok(verified) => {
                    let how = format!(
                        "release fetched from {url} and verified in {} ms (highest version accepted before: {highest})",
                        start.elapsed().as_millis(),
                    );
                    self.boot(verified, &mut floors, &how)
                }
                Err(r) => network::refusal_at(&url, r),
            };
            log::interface_line(&refusal.to_string());
        }
    }

    /// The release partition read into memory, with the milliseconds that took; `None`
    /// without one (after printing so). `Err` is a partition that is there but cannot be read.
    fn find_medium(&mut self) -> Result<Option<(PathBuf, Medium, u128)>, Refusal> {
        // Over PXE there is no medium to wait for: one look after the drivers settle.
        let wait = if self.network_boot {
            Duration::ZERO
        } else {
            MEDIUM_WAIT
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
            }
            return Ok(None);
        };
        let start = Instant::now();
        let medium = read_medium(&device)?;
        let read_ms = start.elapsed().as_millis();
        Ok(Some((device, medium, read_ms)))
    }

    /// The floors kept on this machine's data disk (none without one), with the data disk by
    /// the node's rule ([`interfaces::data_disk::choose`]: its device and UUID; it holds the
    /// release cache and the boot state): with `pin`, only the pinned disk's floor; without,
    /// every disk labelled like ours (two are ambiguous for the node, but each may hold a
    /// floor). `Err` is a data disk that is there but whose floor cannot be read.
    fn data_disk_floors(
        &mut self,
        image: &BootImageConfig,
        pin: Option<FsUuid>,
    ) -> Result<(Floors, Option<(PathBuf, FsUuid)>), Refusal> {
        if !self.disks_settled {
            self.drivers.coldplug();
            settle_disks();
            self.disks_settled = true;
        }
        let found = data_disk::find(Path::new(data_disk::SYS_BLOCK))
            .map_err(|e| Refusal::new(floor::DATA_DISK_ARTIFACT, pid1::error_chain(&e)))?;
        let choice = choose(&found, pin);
        if let Some(line) = &choice.refused {
            warn!("{line}");
        }
        let chosen = match choice.take {
            Take::Ours(i) => found.get(i),
            Take::Format(_) | Take::Nothing => None,
        };
        let disks: Vec<&Candidate> = match (pin, chosen) {
            (Some(_), chosen) => chosen.into_iter().collect(),
            (None, _) => found.iter().collect(),
        };
        if !disks.is_empty() {
            for module in interfaces::labels::DATA_FILESYSTEM_MODULES {
                self.drivers.load(module);
            }
        }
        let stores = disks
            .into_iter()
            .map(|disk| {
                let device = Path::new("/dev").join(&disk.name);
                Box::new(floor::DataDisk { device }) as Box<dyn floor::FloorStore>
            })
            .collect();
        let chosen = chosen.and_then(|disk| match disk.state {
            DiskState::Ours(uuid) => Some((Path::new("/dev").join(&disk.name), uuid)),
            DiskState::Empty | DiskState::Foreign => None,
        });
        Ok((Floors::read(image.min_version, stores)?, chosen))
    }

    /// The boot medium: boots its release if it verifies (never returns then). `Ok` after
    /// printing why its release was not booted, with the stick's floor added to `floors`;
    /// `Err` is a stick whose floor cannot be read. `pin`: the data disk to pin on the stick
    /// with the floor.
    fn try_medium(
        &mut self,
        (device, mut medium, read_ms): (&Path, Medium, u128),
        policy: &SignerPolicy,
        image: &BootImageConfig,
        floors: &mut Floors,
        pin: Option<FsUuid>,
    ) -> Result<(), Refusal> {
        let mut stick = floor::Stick::read(device, &mut medium)?;
        if let Some(uuid) = pin {
            stick.pin(uuid);
        }
        floors.add(Box::new(stick))?;
        info!("{}", floors.summary());
        let highest = floors.highest();
        let start = Instant::now();
        let refusal = match verify::verify(&mut medium, policy, image, highest) {
            Ok(verified) => {
                drop(medium);
                // The bench parses this line (bench/src/stage0.rs TIMING_LINE).
                let how = format!(
                    "release read from {} in {read_ms} ms, verified in {} ms (highest version accepted before: {highest})",
                    device.display(),
                    start.elapsed().as_millis()
                );
                self.boot(verified, floors, &how)
            }
            Err(r) => r,
        };
        log::interface_line(&refusal.to_string());
        Ok(())
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
    /// command line, the raised version floors, `kexec_file_load` of the verified bytes.
    /// Returns why it did not happen.
    /// `how` is the log line saying where it came from and how long it took.
    fn boot(&self, verified: verify::Verified, floors: &mut Floors, how: &str) -> Refusal {
        let version = verified.manifest.version;
        self.boot_counted(verified, floors, how, version, &mut |_| Ok(()))
    }

    /// [`Stage0::boot`], raising the floors to `raise_to` (the booted version without a data
    /// disk, the good one with it: a trial does not raise them) and running `before_kexec` (the
    /// release cache and the boot state, [`counted`]) after the verified line.
    fn boot_counted(
        &self,
        verified: verify::Verified,
        floors: &mut Floors,
        how: &str,
        raise_to: u64,
        before_kexec: &mut dyn FnMut(&verify::Verified) -> Result<(), Refusal>,
    ) -> Refusal {
        log::interface_line(&verified.line());
        info!("{how}");
        let mut boot_cmdline = self.boot_cmdline.clone();
        for word in &self.node_words {
            boot_cmdline.push(b' ');
            boot_cmdline.extend_from_slice(word.as_bytes());
        }
        let cmdline = match node_params::node_cmdline(&verified.cmdline, &boot_cmdline) {
            Ok(c) => {
                for line in c.dropped_lines() {
                    log::interface_line(&line);
                }
                c.line
            }
            Err(r) => return r,
        };
        if let Err(r) = before_kexec(&verified) {
            return r;
        }
        for message in floors.raise(raise_to) {
            match message {
                Ok(done) => info!("{done}"),
                Err(failed) => warn!("{failed}"),
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

/// The release partition `device` read into memory; a partition that is there but cannot be
/// read is a refusal (and [`Stage0::attempt`] then tries no other source: without the stick's
/// floor, a network source could serve an older release).
pub fn read_medium(device: &Path) -> Result<Medium, Refusal> {
    Medium::read(device).map_err(|e| Refusal::new("medium", pid1::error_chain(&e)))
}

/// What the stick says for the node: the pinned data disk (its state file) and the farmer's
/// settings (`nullos-node`) as command-line words. A farmer file that cannot be read is one
/// warning and no words (the node then runs without a farm); a state file that cannot be read
/// refuses the stick, as its floor does.
struct StickSettings {
    data_disk: Option<FsUuid>,
    farmer_words: Vec<String>,
}

fn stick_settings(medium: &mut Medium) -> Result<StickSettings, Refusal> {
    let data_disk = floor::Stick::state(medium)?.data_disk;
    let mut farmer_words = Vec::new();
    if medium.exists(FARMER_FILE) {
        let settings = verify::Source::read(medium, FARMER_FILE, MAX_FARMER_FILE_BYTES)
            .map_err(|e| format!("{FARMER_FILE}: {e}"))
            .and_then(|bytes| FarmerSettings::parse(&bytes).map_err(|e| e.to_string()));
        match settings {
            Ok(settings) => farmer_words = settings.cmdline_words(),
            Err(e) => warn!("{e}; the farmer's settings are ignored"),
        }
    }
    Ok(StickSettings {
        data_disk,
        farmer_words,
    })
}

/// Waits until the block devices stop changing (bounded), so a data disk whose driver just
/// loaded is there before the floors are read.
fn settle_disks() {
    let list = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(data_disk::SYS_BLOCK)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let start = Instant::now();
    let mut seen = list();
    let mut quiet_since = Instant::now();
    while start.elapsed() < DISKS_SETTLE_MAX && quiet_since.elapsed() < DISKS_QUIET {
        std::thread::sleep(POLL);
        let now = list();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
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
