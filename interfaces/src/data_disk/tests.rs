use super::*;

const UUID_A: [u8; 16] = [0xa1; 16];
const UUID_B: [u8; 16] = [0xb2; 16];

fn zero() -> Vec<u8> {
    vec![0u8; PROBE_BYTES]
}

fn ext4(label: &[u8], uuid: [u8; 16]) -> Vec<u8> {
    let mut first = zero();
    first[EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2].copy_from_slice(&EXT4_MAGIC);
    first[EXT4_UUID_OFFSET..EXT4_UUID_OFFSET + 16].copy_from_slice(&uuid);
    first[EXT4_LABEL_OFFSET..EXT4_LABEL_OFFSET + label.len()].copy_from_slice(label);
    first
}

fn disk(name: &str, first: &[u8], last: &[u8]) -> Candidate {
    Candidate {
        name: name.into(),
        state: classify(first, last),
    }
}

#[test]
fn empty_ours_and_foreign_disks() {
    let zero = zero();
    assert_eq!(classify(&zero, &zero), DiskState::Empty);
    assert_eq!(
        classify(&ext4(b"NULLOS-DATA", UUID_A), &zero),
        DiskState::Ours(FsUuid(UUID_A))
    );
    // Ours whatever the end holds (ext4 uses the whole disk).
    assert_eq!(
        classify(&ext4(b"NULLOS-DATA", UUID_B), &[1u8; 16]),
        DiskState::Ours(FsUuid(UUID_B))
    );
    // Another label, a longer label, no magic: someone else's.
    assert_eq!(classify(&ext4(b"data", UUID_A), &zero), DiskState::Foreign);
    assert_eq!(
        classify(&ext4(b"NULLOS-DATA-2", UUID_A), &zero),
        DiskState::Foreign
    );
    let mut no_magic = ext4(b"NULLOS-DATA", UUID_A);
    no_magic[EXT4_MAGIC_OFFSET] = 0;
    assert_eq!(classify(&no_magic, &zero), DiskState::Foreign);
    // An MBR at the start, or only a GPT backup at the end: foreign.
    let mut mbr = zero.clone();
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    assert_eq!(classify(&mbr, &zero), DiskState::Foreign);
    let mut backup = zero.clone();
    backup[PROBE_BYTES - 512..PROBE_BYTES - 504].copy_from_slice(b"EFI PART");
    assert_eq!(classify(&zero, &backup), DiskState::Foreign);
    // Truncated reads never panic; stage 0 reads only the superblock.
    assert_eq!(classify(&[], &[]), DiskState::Empty);
    assert_eq!(classify(&[1], &[]), DiskState::Foreign);
    let superblock_only = &ext4(b"NULLOS-DATA", UUID_A)[..2048];
    assert_eq!(data_filesystem(superblock_only), Some(FsUuid(UUID_A)));
    assert_eq!(
        data_filesystem(&superblock_only[..EXT4_LABEL_OFFSET + 15]),
        None
    );
}

#[test]
fn uuids_read_and_print_as_blkid_does() {
    let uuid = FsUuid([
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ]);
    let text = "12345678-9abc-def0-0123-456789abcdef";
    assert_eq!(uuid.to_string(), text);
    assert_eq!(FsUuid::parse(text), Some(uuid));
    assert_eq!(FsUuid::parse(&text.to_uppercase()), Some(uuid));
    for bad in [
        "",
        "12345678-9abc-def0-0123-456789abcde",
        "12345678-9abc-def0-0123-456789abcdefa",
        "123456789abc-def0-0123-456789abcdef-",
        "12345678_9abc-def0-0123-456789abcdef",
        "1234567g-9abc-def0-0123-456789abcdef",
        "+2345678-9abc-def0-0123-456789abcdef",
        "12345678-9abc-def0-0123-456789abcdé",
    ] {
        assert_eq!(FsUuid::parse(bad), None, "{bad}");
    }
}

#[test]
fn whole_disk_names() {
    for yes in ["vda", "vdb", "sda", "sdaa", "nvme0n1", "nvme12n3"] {
        assert!(is_disk_name(yes), "{yes}");
    }
    for no in [
        "vda1",
        "sda2",
        "nvme0n1p1",
        "nvme0",
        "loop0",
        "ram0",
        "sr0",
        "vd",
        "nvmen1",
        "md0",
    ] {
        assert!(!is_disk_name(no), "{no}");
    }
}

#[test]
fn unpinned_one_disk_of_ours_is_preferred_over_an_empty_one() {
    let zero = zero();
    let disks = [
        disk("vda", &zero, &zero),
        disk("vdb", &[1u8; 4096], &zero),
        disk("vdc", &ext4(b"NULLOS-DATA", UUID_A), &zero),
    ];
    assert_eq!(
        choose(&disks, None),
        Choice {
            take: Take::Ours(2),
            refused: None
        }
    );
}

#[test]
fn unpinned_an_empty_disk_is_formatted_only_when_none_is_ours() {
    let zero = zero();
    let disks = [disk("vda", &[7u8; 16], &zero), disk("vdb", &zero, &zero)];
    assert_eq!(
        choose(&disks, None),
        Choice {
            take: Take::Format(1),
            refused: None
        }
    );
    // Foreign only: nothing.
    assert_eq!(choose(&disks[..1], None).take, Take::Nothing);
    assert_eq!(choose(&[], None).take, Take::Nothing);
}

#[test]
fn unpinned_two_disks_of_ours_are_an_ambiguity_and_none_is_taken() {
    let zero = zero();
    let disks = [
        disk("vda", &zero, &zero),
        disk("vdb", &ext4(b"NULLOS-DATA", UUID_A), &zero),
        disk("vdc", &ext4(b"NULLOS-DATA", UUID_B), &zero),
    ];
    let choice = choose(&disks, None);
    assert_eq!(
        choice.take,
        Take::Nothing,
        "the empty disk is not formatted either"
    );
    assert_eq!(
        choice.refused.as_deref(),
        Some(
            "disks labelled NULLOS-DATA refused: /dev/vdb (a1a1a1a1-a1a1-a1a1-a1a1-a1a1a1a1a1a1), \
             /dev/vdc (b2b2b2b2-b2b2-b2b2-b2b2-b2b2b2b2b2b2): more than one and none pinned, so none is taken"
        )
    );
}

#[test]
fn pinned_only_that_disk_is_taken_and_lookalikes_are_refused() {
    let zero = zero();
    let disks = [
        disk("vda", &ext4(b"NULLOS-DATA", UUID_B), &zero),
        disk("vdb", &ext4(b"NULLOS-DATA", UUID_A), &zero),
        disk("vdc", &zero, &zero),
    ];
    let choice = choose(&disks, Some(FsUuid(UUID_A)));
    assert_eq!(choice.take, Take::Ours(1));
    assert_eq!(
        choice.refused.as_deref(),
        Some(
            "disks labelled NULLOS-DATA refused: /dev/vda (b2b2b2b2-b2b2-b2b2-b2b2-b2b2b2b2b2b2): \
             not the pinned data disk a1a1a1a1-a1a1-a1a1-a1a1-a1a1a1a1a1a1"
        )
    );
    // The pinned disk alone: taken, nothing to say.
    assert_eq!(
        choose(&disks[1..], Some(FsUuid(UUID_A))),
        Choice {
            take: Take::Ours(0),
            refused: None
        }
    );
}

#[test]
fn pinned_but_missing_formats_nothing_in_its_place() {
    let zero = zero();
    let disks = [
        disk("vda", &zero, &zero),
        disk("vdb", &ext4(b"NULLOS-DATA", UUID_B), &zero),
    ];
    let choice = choose(&disks, Some(FsUuid(UUID_A)));
    assert_eq!(choice.take, Take::Nothing);
    assert!(choice
        .refused
        .is_some_and(|line| line.contains("/dev/vdb") && !line.contains("/dev/vda")));
    assert_eq!(
        choose(&disks[..1], Some(FsUuid(UUID_A))),
        Choice {
            take: Take::Nothing,
            refused: None
        },
        "an empty disk is not formatted in the pinned disk's place"
    );
}
