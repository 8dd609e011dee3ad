use std::path::Path;

use interfaces::BootImageConfig;
use trust::{SecretKey, SignerPolicy};

use super::*;
use crate::medium::tests::volume;
use crate::verify::tests::{dev_image, signed_release_files};
use crate::verify::{self, Refusal};

fn signer() -> SecretKey {
    SecretKey::from_seed([1; 32])
}

/// A stick's release partition (a FAT image file) holding a release of `version`.
fn stick(dir: &Path, name: &str, version: u64) -> PathBuf {
    let files = signed_release_files(version, &signer());
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, volume(&entries)).unwrap();
    path
}

/// What stage 0 does with a stick and a data disk (a folder standing in for its mounted root):
/// read both floors, verify the stick's release above them, raise them. The version booted, or
/// the refusal.
fn boot_from(stick: &Path, data_root: &Path, image: &BootImageConfig) -> Result<u64, Refusal> {
    let data = Folder {
        name: "data disk".into(),
        dir: data_root.to_owned(),
    };
    let mut floors = Floors::read(image.min_version, vec![Box::new(data)])?;
    let mut medium = crate::read_medium(stick)?;
    floors.add(Box::new(Stick::read(stick, &mut medium)?))?;
    let policy = SignerPolicy::single(signer().public());
    let verified = verify::verify(&mut medium, &policy, image, floors.highest())?;
    for message in floors.raise(verified.manifest.version) {
        message.unwrap();
    }
    Ok(verified.manifest.version)
}

/// Issue 14: the floor lives on the machine. A stick that never saw version 2 (a fresh one, or
/// one whose state file was deleted) still cannot boot version 1 once the machine booted 2.
#[test]
fn a_lower_version_is_refused_even_from_a_fresh_stick() {
    let dir = tempfile::tempdir().unwrap();
    let data_root = dir.path().join("data");
    std::fs::create_dir(&data_root).unwrap();
    let newer = stick(dir.path(), "newer.img", 2);
    assert_eq!(boot_from(&newer, &data_root, &dev_image()), Ok(2));
    assert_eq!(
        state::read_in(&data_root).unwrap(),
        2,
        "the data disk's floor"
    );
    let mut medium = crate::read_medium(&newer).unwrap();
    assert_eq!(
        medium.read(state::STATE_FILE, 4096).unwrap(),
        state::format(2).as_bytes(),
        "the stick's floor"
    );

    let fresh = stick(dir.path(), "fresh.img", 1);
    let refusal = boot_from(&fresh, &data_root, &dev_image()).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "nullos: refused release.manifest: version 1 is older than version 2 already accepted (rollback refused)"
    );
    // The newer stick still boots, and nothing was lowered.
    assert_eq!(boot_from(&newer, &data_root, &dev_image()), Ok(2));
    assert_eq!(state::read_in(&data_root).unwrap(), 2);
}

#[test]
fn the_stick_floor_counts_when_the_data_disk_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let data_root = dir.path().join("data");
    std::fs::create_dir(&data_root).unwrap();
    let old = stick(dir.path(), "old.img", 1);
    medium::write_file(&old, state::STATE_FILE, state::format(3).as_bytes()).unwrap();
    let refusal = boot_from(&old, &data_root, &dev_image()).unwrap_err();
    assert!(refusal.reason.contains("older than version 3"), "{refusal}");
    // The data disk learns nothing from a refusal.
    assert_eq!(state::read_in(&data_root).unwrap(), 0);
}

/// Issue 14: a partition that is there but cannot be read was "no floor" (and the network
/// sources then took any signed version); it is a refusal.
#[test]
fn a_present_but_unreadable_partition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.img");
    std::fs::write(&broken, vec![0xa5u8; 1 << 20]).unwrap();
    let refusal = crate::read_medium(&broken).unwrap_err();
    assert_eq!(refusal.artifact, "medium");
    assert!(
        refusal.to_string().starts_with(&format!(
            "nullos: refused medium: FAT volume on {}",
            broken.display()
        )),
        "{refusal}"
    );
}

#[test]
fn a_damaged_floor_on_the_data_disk_is_refused_not_read_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(state::STATE_FILE),
        "highest_version = two\n",
    )
    .unwrap();
    let data = Folder {
        name: "data disk".into(),
        dir: dir.path().to_owned(),
    };
    let refusal = Floors::read(1, vec![Box::new(data)]).unwrap_err();
    assert_eq!(refusal.artifact, state::STATE_FILE);
    assert!(
        refusal
            .reason
            .ends_with("highest_version 'two' is not a version number"),
        "{refusal}"
    );
}

#[test]
fn the_summary_names_every_place() {
    let dir = tempfile::tempdir().unwrap();
    state::raise_in(dir.path(), 4).unwrap();
    let data = Folder {
        name: "data disk /dev/vdb".into(),
        dir: dir.path().to_owned(),
    };
    let floors = Floors::read(2, vec![Box::new(data)]).unwrap();
    assert_eq!(floors.highest(), 4);
    assert_eq!(
        floors.summary(),
        "version floor 4 (boot image minimum 2, data disk /dev/vdb 4)"
    );
    let mut none = Floors::read(5, Vec::new()).unwrap();
    assert_eq!(none.summary(), "version floor 5 (boot image minimum 5)");
    assert_eq!(
        none.raise(5),
        [Err(
            "no stick and no data disk: the version floor (5) is not persisted".to_owned()
        )]
    );
}

/// Issue 13: the stick pins the machine's data disk in the same write as its floor, keeps it on
/// later raises, and never replaces it with another.
#[test]
fn the_stick_pins_the_data_disk_with_its_floor_and_keeps_it() {
    use interfaces::data_disk::FsUuid;
    let dir = tempfile::tempdir().unwrap();
    let path = stick(dir.path(), "stick.img", 1);
    let uuid = FsUuid([0x5a; 16]);
    let other = FsUuid([0x6b; 16]);
    let state = |path: &Path| Stick::state(&mut crate::read_medium(path).unwrap()).unwrap();
    assert_eq!(state(&path).data_disk, None, "a fresh stick pins nothing");

    let mut fresh = Stick::read(&path, &mut crate::read_medium(&path).unwrap()).unwrap();
    fresh.pin(uuid);
    assert_eq!(fresh.raise(1), Ok(Some(1)));
    assert_eq!(
        state(&path),
        state::StickState {
            highest: 1,
            data_disk: Some(uuid)
        }
    );

    // Same version again, nothing new to pin: nothing is written. A higher version keeps the
    // pin, and a stick that pins a disk does not take another.
    let mut again = Stick::read(&path, &mut crate::read_medium(&path).unwrap()).unwrap();
    again.pin(other);
    assert_eq!(again.raise(1), Ok(None));
    assert_eq!(again.raise(3), Ok(Some(3)));
    assert_eq!(
        state(&path),
        state::StickState {
            highest: 3,
            data_disk: Some(uuid)
        }
    );

    // A pin alone (the floor already at the version) is written too.
    let path = stick(dir.path(), "second.img", 1);
    let mut first = Stick::read(&path, &mut crate::read_medium(&path).unwrap()).unwrap();
    assert_eq!(first.raise(1), Ok(Some(1)));
    let mut later = Stick::read(&path, &mut crate::read_medium(&path).unwrap()).unwrap();
    later.pin(other);
    assert_eq!(later.raise(1), Ok(None), "the floor did not rise");
    assert_eq!(state(&path).data_disk, Some(other));
}
