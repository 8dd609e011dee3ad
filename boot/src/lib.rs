//! Stage 0 of NullOS: PID 1 of the boot image, the only code that runs before a release is
//! verified.
//!
//! It loads the storage drivers (the `kernel-init` library's module loading and coldplug),
//! finds the partition named `NULLOS-RELEASE`, reads the signed release from it into memory,
//! verifies it (signer policy baked into the boot image at [`POLICY_PATH`], version at least
//! the highest accepted on this machine, BLAKE3 of kernel, initramfs and command line), raises
//! the persisted version floor, and `kexec_file_load`s exactly the verified bytes. Any failure
//! is one `nullos: refused <artifact>: <reason>` console line, then a wait and another try: it
//! never boots anything unverified and never offers a shell.
//!
//! - [`verify`]: the pure decision (what to boot, which refusal line), unit-tested with buffers.
//! - [`state`]: the persisted highest version.
//! - [`medium`]: finding and reading the release partition (sysfs, `fatfs`).
//! - [`drivers`]: module loading for the medium.
//! - [`kexec`]: sealed memfds, `kexec_file_load`, `reboot(RB_KEXEC)`.

pub mod drivers;
pub mod kexec;
pub mod medium;
pub mod state;
pub mod verify;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kernel_init::config::Cmdline;
use kernel_init::{info, log, mounts, warn};
use trust::SignerPolicy;

use crate::drivers::Drivers;
use crate::medium::{Medium, RELEASE_PARTITION};
use crate::verify::Refusal;

/// The release signer policy in the boot image (a policy file or a single public key file).
pub const POLICY_PATH: &str = "/etc/nullos/release-policy";
/// How long one attempt waits for the release partition to appear.
pub const MEDIUM_WAIT: Duration = Duration::from_secs(20);
/// The pause between a refusal and the next attempt.
pub const RETRY_DELAY: Duration = Duration::from_secs(10);
/// How often the partition is looked for while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Runs stage 0. Returns only into the kexec'ed kernel (that is, never).
pub fn run() -> Infallible {
    let mounted = mounts::mount_all();
    let cmdline_text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cmdline = Cmdline::parse(&cmdline_text);
    log::set_program("boot");
    log::init(cmdline.loglevel);
    info!(
        "nullos boot (stage 0) {} starting",
        env!("CARGO_PKG_VERSION")
    );
    for outcome in mounted {
        if let mounts::MountOutcome::Failed(e) = outcome {
            kernel_init::error!("{}", kernel_init::error_chain(&e));
        }
    }
    let mut drivers = Drivers::open();
    loop {
        let refusal = match load_policy() {
            Ok(policy) => attempt(&mut drivers, &policy, &cmdline_text),
            Err(refusal) => refusal,
        };
        log::interface_line(&refusal.to_string());
        info!(
            "nothing booted; trying the medium again in {} s",
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
        .map_err(|e| refuse(kernel_init::error_chain(&e)))
}

/// One try: find the medium, verify, boot. Returns why nothing was booted.
fn attempt(drivers: &mut Drivers, policy: &SignerPolicy, boot_cmdline: &str) -> Refusal {
    let Some(device) = wait_for_medium(drivers) else {
        return Refusal::new(
            "medium",
            format!(
                "no partition named {RELEASE_PARTITION} found in {} s",
                MEDIUM_WAIT.as_secs()
            ),
        );
    };
    let start = Instant::now();
    let mut medium = match Medium::read(&device) {
        Ok(m) => m,
        Err(e) => return Refusal::new("medium", kernel_init::error_chain(&e)),
    };
    let read_ms = start.elapsed().as_millis();
    let highest = match highest_seen(&mut medium) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let start = Instant::now();
    let verified = match verify::verify(&mut medium, policy, highest) {
        Ok(v) => v,
        Err(r) => return r,
    };
    drop(medium);
    let verify_ms = start.elapsed().as_millis();
    log::interface_line(&verified.line());
    info!(
        "release read from {} in {read_ms} ms, verified in {verify_ms} ms (highest version accepted before: {highest})",
        device.display()
    );
    let cmdline = match verify::node_cmdline(&verified.cmdline, boot_cmdline) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(raised) = state::raised(highest, verified.manifest.version) {
        match medium::write_file(&device, state::STATE_FILE, state::format(raised).as_bytes()) {
            Ok(()) => info!("highest accepted version is now {raised}"),
            Err(e) => warn!(
                "cannot record version {raised} in {}: {}",
                state::STATE_FILE,
                kernel_init::error_chain(&e)
            ),
        }
    }
    if let Err(e) = kexec::load(&verified.kernel, &verified.initrd, &cmdline) {
        return Refusal::new("kernel", kernel_init::error_chain(&e));
    }
    log::interface_line(&format!(
        "nullos: booting release version={} cmdline=\"{cmdline}\"",
        verified.manifest.version
    ));
    let e = kexec::start();
    Refusal::new("kernel", kernel_init::error_chain(&e))
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

/// Waits (bounded) for the release partition, loading drivers as devices appear.
fn wait_for_medium(drivers: &mut Drivers) -> Option<PathBuf> {
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
        if start.elapsed() >= MEDIUM_WAIT {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
