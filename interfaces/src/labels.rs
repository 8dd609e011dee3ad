//! The partition and filesystem labels our programs look for.

/// The GPT partition name of the release partition on a USB stick (written by image-builder,
/// found by `boot` through sysfs `PARTNAME`).
pub const RELEASE_PARTITION: &str = "NULLOS-RELEASE";
/// The ext4 label of a data disk the node has claimed (written by `init` with `mke2fs -L`, and
/// the only foreign-looking label it will mount).
pub const DATA_FILESYSTEM: &str = "NULLOS-DATA";
/// The modules that mount the data disk's filesystem, in load order: the checksum ext4 asks the
/// crypto API for (by alias `crc32c`; a boot image has no `modprobe` to load it on demand), then
/// ext4. image-builder puts those the kernel has as modules into every boot image; stage 0
/// loads them before it reads the version floor on the data disk.
pub const DATA_FILESYSTEM_MODULES: [&str; 2] = ["crc32c_generic", "ext4"];

#[cfg(test)]
mod tests {
    #[test]
    fn labels_fit_their_fields() {
        // A GPT partition name is 36 UTF-16 units; an ext4 label 16 bytes.
        assert!(super::RELEASE_PARTITION.encode_utf16().count() <= 36);
        assert!(super::DATA_FILESYSTEM.len() <= 16);
    }
}
