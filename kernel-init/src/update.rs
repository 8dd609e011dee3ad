//! The node's side of self-update and boot counting (stage 0's side is `boot/src/counted.rs`).
//!
//! Once the node printed `nullos: ready` and its data disk is mounted, [`mark_ready`] records
//! its release as good in the boot state at the data disk's root
//! ([`interfaces::boot_state`]) and raises the version floor there to it
//! ([`interfaces::floor_state`], never lowered): from now on stage 0 falls back to this release
//! when a newer one never reaches ready, and refuses anything older, even from a fresh stick.
//! Without a data disk (volumes on tmpfs) nothing is recorded: stage 0 then raises the stick's
//! floor itself when it boots a release, as it always did.

use interfaces::boot_state;

use crate::workloads::disk::DataRoot;

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

/// `nullos: release version=<v> is good; version floor <v> on the data disk /dev/<disk>`.
pub fn good_line(version: u64, disk: &str) -> String {
    format!("nullos: release version={version} is good; version floor {version} on the data disk /dev/{disk}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_good_line_names_the_version_and_the_disk() {
        assert_eq!(
            good_line(2, "vda"),
            "nullos: release version=2 is good; version floor 2 on the data disk /dev/vda"
        );
    }
}
