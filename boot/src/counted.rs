//! Stage 0 on a machine with a data disk: every source's release is a candidate (the stick,
//! the release cache on the data disk, the release URLs), boot counting chooses
//! ([`crate::choice`]), the booted release is cached, and the version floors are raised only to
//! the release that proved itself (the good one of [`interfaces::boot_state`]). The I/O edge of
//! the pure choice; without a data disk stage 0 keeps its simpler order (the stick, then the
//! URLs) and raises the floors to what it boots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use interfaces::boot_state::{self, BootState, BOOT_STATE_FILE};
use interfaces::data_disk::FsUuid;
use interfaces::BootImageConfig;
use pid1::{info, log, warn};
use trust::SignerPolicy;

use crate::cache::{self, DirSource, Mounted};
use crate::floor::{self, Floors};
use crate::medium::Medium;
use crate::verify::{self, CheckedManifest, Refusal, Source};
use crate::{choice, network, Stage0};

/// Where a candidate release was found.
#[derive(Debug, Clone)]
enum Origin {
    /// The release partition (already in memory).
    Stick,
    /// `releases/<version>/` on the data disk.
    Cache(PathBuf),
    /// A release URL.
    Url(String),
}

impl Origin {
    /// Which comes first among sources of the same version: the cache (local, already
    /// written), then the stick, then the network.
    fn rank(&self) -> u8 {
        match self {
            Origin::Cache(_) => 0,
            Origin::Stick => 1,
            Origin::Url(_) => 2,
        }
    }

    fn describe(&self, device: Option<&Path>) -> String {
        match self {
            Origin::Stick => format!(
                "read from {}",
                device.map_or("the stick".into(), |d| d.display().to_string())
            ),
            Origin::Cache(dir) => format!("read from the release cache ({})", dir.display()),
            Origin::Url(url) => format!("fetched from {url}"),
        }
    }
}

/// The refusal line of a cached release: the file's place in the cache before the reason.
fn refusal_in_cache(dir: &Path, refusal: Refusal) -> Refusal {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let reason = format!(
        "{}/{}/{}: {}",
        cache::CACHE_DIR,
        name.unwrap_or_default(),
        refusal.artifact,
        refusal.reason
    );
    Refusal::new(&refusal.artifact, reason)
}

impl Stage0 {
    /// One try with the data disk `disk` (see the module docs). Prints one line per refusal;
    /// returns only if nothing was booted. `pin`: the data disk's UUID to pin on the stick,
    /// written with its floor.
    pub(crate) fn attempt_counted(
        &mut self,
        disk: &Path,
        medium: Option<(PathBuf, Medium, u128)>,
        policy: &SignerPolicy,
        image: &BootImageConfig,
        floors: &mut Floors,
        pin: Option<FsUuid>,
    ) {
        let mut stick = None;
        if let Some((device, mut medium, _)) = medium {
            let read = floor::Stick::read(&device, &mut medium).and_then(|mut s| {
                // Written with the floor (raised to the good version below).
                if let Some(uuid) = pin {
                    s.pin(uuid);
                }
                floors.add(Box::new(s))
            });
            match read {
                Ok(()) => stick = Some((device, medium)),
                Err(refusal) => return log::interface_line(&refusal.to_string()),
            }
        }
        let mounted = match cache::mount(disk) {
            Ok(mounted) => mounted,
            Err(e) => {
                let refusal = Refusal::new(floor::DATA_DISK_ARTIFACT, pid1::error_chain(&e));
                return log::interface_line(&refusal.to_string());
            }
        };
        self.attempt_mounted(&mounted, stick, policy, image, floors);
        if let Err(e) = mounted.unmount() {
            warn!("release cache: {}", pid1::error_chain(&e));
        }
    }

    fn attempt_mounted(
        &mut self,
        mounted: &Mounted,
        mut stick: Option<(PathBuf, Medium)>,
        policy: &SignerPolicy,
        image: &BootImageConfig,
        floors: &mut Floors,
    ) {
        let root = mounted.root();
        // A damaged boot state fails closed, like a damaged floor: it may be what marks a
        // release bad.
        let state = match boot_state::read_in(root) {
            Ok(state) => state,
            Err(e) => {
                let refusal = Refusal::new(BOOT_STATE_FILE, pid1::error_chain(&e));
                return log::interface_line(&refusal.to_string());
            }
        };
        // The floors follow the release that proved itself (the node raises the data disk's
        // when it is ready; the stick catches up here).
        for message in floors.raise(state.good) {
            match message {
                Ok(done) => info!("{done}"),
                Err(failed) => warn!("{failed}"),
            }
        }
        info!("{}", floors.summary());
        info!(
            "boot state on {}: {}",
            mounted.device.display(),
            summary(&state)
        );
        let highest = floors.highest();

        let mut candidates: Vec<(CheckedManifest, Origin)> = Vec::new();
        let mut offer = |source: &mut dyn Source, origin: Origin| match verify::verify_manifest(
            source, policy, image, highest,
        ) {
            Ok(checked) => candidates.push((checked, origin)),
            Err(refusal) => {
                let refusal = match &origin {
                    Origin::Stick => refusal,
                    Origin::Cache(dir) => refusal_in_cache(dir, refusal),
                    Origin::Url(url) => network::refusal_at(url, refusal),
                };
                log::interface_line(&refusal.to_string());
            }
        };
        if let Some((_, medium)) = stick.as_mut() {
            offer(medium, Origin::Stick);
        }
        for (_, dir) in cache::versions(root) {
            offer(&mut DirSource::new(&dir), Origin::Cache(dir));
        }
        if !self.urls.is_empty() {
            if self.bring_up_network() {
                for url in self.urls.clone() {
                    offer(&mut network::HttpSource::new(&url), Origin::Url(url));
                }
            } else {
                let refusal = Refusal::new("network", "no interface got a DHCP lease");
                log::interface_line(&refusal.to_string());
            }
        }
        candidates.sort_by_key(|(c, o)| (std::cmp::Reverse(c.manifest.version), o.rank()));

        let versions: Vec<u64> = candidates.iter().map(|(c, _)| c.manifest.version).collect();
        let plan = choice::plan(&state, &versions);
        if let Some(bad) = plan.marked_bad {
            log::interface_line(&choice::fallback_line(bad, plan.order.first().copied()));
        }
        for version in &plan.order {
            for (checked, origin) in candidates
                .iter()
                .filter(|(c, _)| c.manifest.version == *version)
            {
                let start = Instant::now();
                let verified = match &origin {
                    Origin::Stick => match stick.as_mut() {
                        Some((_, medium)) => verify::verify_artifacts(medium, checked.clone()),
                        None => continue,
                    },
                    Origin::Cache(dir) => {
                        verify::verify_artifacts(&mut DirSource::new(dir), checked.clone())
                            .map_err(|r| refusal_in_cache(dir, r))
                    }
                    Origin::Url(url) => verify::verify_artifacts(
                        &mut network::HttpSource::new(url),
                        checked.clone(),
                    )
                    .map_err(|r| network::refusal_at(url, r)),
                };
                let refusal = match verified {
                    Ok(verified) => {
                        let how = format!(
                            "release {} and verified in {} ms (highest version accepted before: {highest})",
                            origin.describe(stick.as_ref().map(|(d, _)| d.as_path())),
                            start.elapsed().as_millis()
                        );
                        let next = choice::before_boot(&plan.state, *version)
                            .unwrap_or_else(|| plan.state.clone());
                        let good = next.good;
                        let mut prepare = |verified: &verify::Verified| {
                            prepare_disk(root, &state, &next, origin, verified)
                        };
                        self.boot_counted(verified, floors, &how, good, &mut prepare)
                    }
                    Err(refusal) => refusal,
                };
                log::interface_line(&refusal.to_string());
            }
        }
        // Nothing booted: the bad mark is recorded all the same, so it is never retried.
        if plan.state != state {
            if let Err(e) = boot_state::write_in(root, &plan.state) {
                warn!("boot state: {}", pid1::error_chain(&e));
            }
        }
    }
}

/// Before the kexec of `verified`: caches it (unless it came from the cache), records the boot
/// state `next` (a trial spends a try) when it differs from `before`, prunes the cache. A
/// trial whose try cannot be recorded is not booted (it could fail forever uncounted).
fn prepare_disk(
    root: &Path,
    before: &BootState,
    next: &BootState,
    origin: &Origin,
    verified: &verify::Verified,
) -> Result<(), Refusal> {
    let version = verified.manifest.version;
    if !matches!(origin, Origin::Cache(_)) {
        match cache::store(root, verified) {
            Ok(true) => log::interface_line(&format!(
                "nullos: release version={version} cached on the data disk"
            )),
            Ok(false) => {}
            // Not fatal: the release boots, it only cannot be fallen back to from the disk.
            Err(e) => warn!("release cache: {}", pid1::error_chain(&e)),
        }
    }
    if next != before {
        boot_state::write_in(root, next)
            .map_err(|e| Refusal::new(BOOT_STATE_FILE, pid1::error_chain(&e)))?;
    }
    if let Some(trial) = next.trial.filter(|t| t.version == version) {
        log::interface_line(&format!(
            "nullos: release version={version} on trial (good version={}, tries left after this boot: {})",
            next.good, trial.tries_left
        ));
    }
    match cache::prune(root, &choice::keep_in_cache(next, version)) {
        Ok(removed) if !removed.is_empty() => info!("release cache: removed versions {removed:?}"),
        Ok(_) => {}
        Err(e) => warn!("release cache: {}", pid1::error_chain(&e)),
    }
    // Everything written is on the disk before the kexec (the cache stays mounted until then).
    nix::unistd::sync();
    Ok(())
}

/// `good 2, trial 3 (1 tries left), bad [4]`.
fn summary(state: &BootState) -> String {
    let trial = match state.trial {
        Some(t) => format!("trial {} ({} tries left)", t.version, t.tries_left),
        None => "no trial".into(),
    };
    format!("good {}, {trial}, bad {:?}", state.good, state.bad)
}
