//! The NullOS image builder.
//!
//! `image-builder` turns a build config (kernel, modules, init, command line, keys) into a
//! release folder: `kernel`, `initrd`, `cmdline`, the signed `release.manifest`, the PXE
//! bundle `pxe/`, and (with a `[usb]` section) the USB stick image `usb.img`. Every output is
//! reproducible bit for bit: nothing depends on the build machine's clock, umask, paths, locale
//! or core count.
//!
//! Modules, each with its own error type:
//! - [`config`]: the TOML build config.
//! - [`kernel`]: a Debian kernel package or its unpacked tree.
//! - [`modules`]: the module closure and coldplug index (format in the `modindex` crate).
//! - [`initrd`]: the file tree and its cpio (newc) archive (from the `initramfs` crate).
//! - [`compress`]: initramfs compression, checked against the kernel's config.
//! - [`release`]: manifest, signing, co-signing, verification of a release folder.
//! - [`pxe`]: the iPXE bundle.
//! - [`stage0`]: the boot image (`boot` as PID 1, medium drivers, the release signer policy).
//! - [`usb`]: the USB stick image (GPT, EFI System Partition with a UKI, the signed release).
//! - [`tools`]: host executables with their loader and libraries.
//! - [`lock`]: `debian.lock` lines, the pinned packages named in the release manifest.
//! - [`keys`]: key and trust files on disk.
//! - [`inspect`]: human-readable listings.
//! - [`build`]: the whole pipeline.
//! - [`workload`]: signed workload images (`root.img` squashfs + `workload.manifest`).

pub mod build;
pub mod compress;
pub mod config;
pub mod initrd;
pub mod inspect;
pub mod kernel;
pub mod keys;
pub mod lock;
pub mod modules;
pub mod pxe;
pub mod release;
pub mod stage0;
pub mod tools;
pub mod usb;
pub mod workload;
