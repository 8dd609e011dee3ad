//! The node's side of self-update and boot counting (stage 0's side is `boot/src/counted.rs`).
//!
//! Once the node printed `nullos: ready` and its data disk is mounted, [`mark_ready`] records
//! its release as good in the boot state at the data disk's root
//! ([`interfaces::boot_state`]) and raises the version floor there to it
//! ([`interfaces::floor_state`], never lowered): from now on stage 0 falls back to this release
//! when a newer one never reaches ready, and refuses anything older, even from a fresh stick.
//! Without a data disk (volumes on tmpfs) nothing is recorded: stage 0 then raises the stick's
//! floor itself when it boots a release, as it always did.
//!
//! With a data disk and a release channel in node.toml (`release_channel`, from the profile's
//! `[update]`), [`watch`] asks the channel every `release_poll_seconds` for its manifest,
//! verified with stage 0's own code against the release policy in the node image
//! (`/etc/nullos/release-policy`): signatures, this node's profile and target. A version above
//! the node's own that the boot state does not mark bad is fetched (each artifact within its
//! signed size, BLAKE3 checked), written into the release cache on the data disk
//! (`releases/<version>/`, `boot::cache::store`), and the node reboots cleanly (workloads
//! stopped with SIGTERM, then SIGKILL; disks synced and unmounted) into stage 0, which finds
//! it in the cache and boots it as a trial. After the reboot the workloads start again from the
//! image and the grid's placements.

use std::path::Path;
use std::time::Duration;

use boot::verify;
use interfaces::boot_state;
use interfaces::BootImageConfig;
use trust::SignerPolicy;

use crate::workloads::disk::DataRoot;

/// Once ready with the data root set up: [`mark_ready`], then [`watch`].
pub fn after_ready(data: &DataRoot) {
    mark_ready(data);
    watch(data);
}

/// Marks this node's release good on its data disk (see the module docs). Never fatal: a
/// failure is one error line, and stage 0 will count the boot as a failed try.
pub fn mark_ready(data: &DataRoot) {
    let Some(disk) = data.disk.as_deref() else {
        crate::info!("release: no data disk; the boot state and the release cache are not kept");
        return;
    };
    let version = match crate::node_config::NodeConfig::load() {
        Ok(node) => node.version,
        Err(e) => {
            crate::error!(
                "release: node config: {}; not marked good",
                crate::error_chain(&e)
            );
            return;
        }
    };
    match boot_state::mark_ready_in(&data.path, version) {
        Ok((changed, raised)) => {
            if changed || raised.is_some() {
                crate::log::interface_line(&good_line(version, disk));
            } else {
                crate::debug!("release: version {version} was already good on /dev/{disk}");
            }
        }
        Err(e) => crate::error!(
            "release: cannot mark version {version} good on /dev/{disk}: {}",
            crate::error_chain(&e)
        ),
    }
}

/// Starts the channel watcher on a thread of its own when the node has a data disk and a
/// release channel (see the module docs). Never fatal.
pub fn watch(data: &DataRoot) {
    if data.disk.is_none() {
        return;
    }
    let Ok(node) = crate::node_config::NodeConfig::load() else {
        return;
    };
    // The farmer's channel (`nullos.channel=`, from their boot.ipxe or the stick) replaces the
    // image's; the release policy stays the image's.
    let cmdline = pid1::cmdline::Cmdline::parse(pid1::cmdline::read());
    if let Some(bad) = cmdline
        .channel
        .as_ref()
        .filter(|c| !interfaces::farmer::is_channel_url(c))
    {
        crate::warn!("release: nullos.channel={bad} is not http://host[:port]/path; ignored");
    }
    let node = crate::node_config::with_farmer_settings(node, &cmdline);
    let Some(channel) = node.release_channel.clone() else {
        crate::debug!("release: no release channel in node.toml; not watching for updates");
        return;
    };
    let policy = match load_policy(Path::new(interfaces::paths::RELEASE_POLICY)) {
        Ok(policy) => policy,
        Err(e) => {
            crate::error!("release: {e}; not watching {channel} for updates");
            return;
        }
    };
    let poll = Duration::from_secs(
        node.release_poll_seconds
            .unwrap_or(interfaces::node::DEFAULT_RELEASE_POLL_SECONDS),
    );
    let watcher = Watcher {
        channel,
        policy,
        image: BootImageConfig {
            profile: node.profile.clone(),
            target: std::env::consts::ARCH.into(),
            min_version: 0,
        },
        version: node.version,
        cache_root: data.path.clone(),
        last_line: None,
    };
    crate::info!(
        "release: watching {} every {} s for a version above {}",
        watcher.channel,
        poll.as_secs(),
        watcher.version
    );
    let spawned = std::thread::Builder::new()
        .name("release-watch".into())
        .spawn(move || watcher.run(poll));
    if let Err(e) = spawned {
        crate::error!("release: cannot start the watcher thread: {e}");
    }
}

/// The release signer policy in the node image: a policy file or one public key file.
fn load_policy(path: &Path) -> Result<SignerPolicy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    SignerPolicy::from_text(&text)
        .or_else(|_| trust::PublicKey::from_text(&text).map(SignerPolicy::single))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// What one look at the channel found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Nothing newer (or only releases marked bad).
    Nothing,
    /// This version is in the cache, ready to boot.
    Cached(u64),
}

struct Watcher {
    channel: String,
    policy: SignerPolicy,
    /// This node's profile and target (what a release must be built for).
    image: BootImageConfig,
    /// This node's release version.
    version: u64,
    /// The data disk's root.
    cache_root: std::path::PathBuf,
    /// The last line printed about the channel (the same refusal is not repeated every poll).
    last_line: Option<String>,
}

impl Watcher {
    fn run(mut self, poll: Duration) {
        loop {
            std::thread::sleep(poll);
            match self.look() {
                Ok(Found::Nothing) => {}
                Ok(Found::Cached(version)) => {
                    crate::log::interface_line(&format!(
                        "nullos: update version={version} cached; rebooting into it"
                    ));
                    pid1::power::reboot_cleanly(&format!("update to version {version}"));
                }
                Err(refusal) => {
                    let line = format!(
                        "nullos: update refused {}: {}",
                        refusal.artifact, refusal.reason
                    );
                    if self.last_line.as_deref() != Some(line.as_str()) {
                        crate::log::interface_line(&line);
                        self.last_line = Some(line);
                    }
                }
            }
        }
    }

    /// One look at the channel: its manifest checked, a newer release fetched and cached.
    fn look(&mut self) -> Result<Found, verify::Refusal> {
        let mut source = boot::network::HttpSource::new(&self.channel);
        let channel = self.channel.clone();
        let at = |r| boot::network::refusal_at(&channel, r);
        let checked =
            verify::verify_manifest(&mut source, &self.policy, &self.image, 0).map_err(at)?;
        let version = checked.manifest.version;
        if version <= self.version {
            return Ok(Found::Nothing);
        }
        let state = boot_state::read_in(&self.cache_root).map_err(|e| {
            verify::Refusal::new(boot_state::BOOT_STATE_FILE, crate::error_chain(&e))
        })?;
        if state.is_bad(version) {
            let line = format!(
                "release: version {version} at {} is marked bad on this machine; not fetched",
                self.channel
            );
            if self.last_line.as_deref() != Some(line.as_str()) {
                crate::info!("{line}");
                self.last_line = Some(line);
            }
            return Ok(Found::Nothing);
        }
        let cached = boot::cache::versions(&self.cache_root)
            .into_iter()
            .find(|(v, _)| *v == version);
        if let Some((_, dir)) = cached {
            // A copy stage 0 would refuse would bring the node back here after every reboot:
            // it is checked as stage 0 will check it, and fetched again if it fails.
            let source = &mut boot::cache::DirSource::new(&dir);
            match verify::verify(source, &self.policy, &self.image, 0) {
                Ok(copy) if copy.manifest == checked.manifest => return Ok(Found::Cached(version)),
                _ => {
                    crate::warn!(
                        "release: the cached copy of version {version} does not verify; fetching it again"
                    );
                    boot::cache::discard(&self.cache_root, version).map_err(|e| {
                        verify::Refusal::new(boot::cache::CACHE_DIR, crate::error_chain(&e))
                    })?;
                }
            }
        }
        self.say(&format!(
            "nullos: update version={version} found at {}; fetching",
            self.channel
        ));
        let verified = verify::verify_artifacts(&mut source, checked).map_err(at)?;
        boot::cache::store(&self.cache_root, &verified)
            .map_err(|e| verify::Refusal::new(boot::cache::CACHE_DIR, crate::error_chain(&e)))?;
        // The line stage 0 prints, with the digests, for the operator's record.
        self.say(
            &verified
                .line()
                .replacen("nullos: verified", "nullos: update verified", 1),
        );
        Ok(Found::Cached(version))
    }

    fn say(&mut self, line: &str) {
        crate::log::interface_line(line);
        self.last_line = Some(line.to_owned());
    }
}

/// `nullos: release version=<v> is good; version floor <v> on the data disk /dev/<disk>`.
pub fn good_line(version: u64, disk: &str) -> String {
    format!("nullos: release version={version} is good; version floor {version} on the data disk /dev/{disk}")
}

#[cfg(test)]
mod tests;
