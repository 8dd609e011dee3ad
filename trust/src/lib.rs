//! The NullOS trust vocabulary: keys, digests, signed documents, signer policies and versions.
//!
//! Every other NullOS crate (the image builder, stage 0, the node's init, later a UEFI stage)
//! speaks about trust through this crate, so it is `no_std` + `alloc`, has no I/O and no
//! randomness of its own, and never panics on untrusted bytes.
//!
//! Layering, bottom up:
//! - [`digest`] — BLAKE3-256 ([`Digest`], streaming [`Hasher`]).
//! - [`keys`] — ed25519 [`SecretKey`] / [`PublicKey`] and their plain-text file formats.
//! - [`limits`] — the caps on untrusted input and the bounded postcard reader ([`DecodeError`]).
//! - [`document`] — [`SignedDocument`] — a body, its [`DocumentKind`], and signatures over
//!   `domain tag ‖ BLAKE3(body)`; [`SignedDocument::verify`] checks them against a policy.
//! - [`policy`] — [`SignerPolicy`] — weighted members, required members, threshold.
//! - [`signed`] — [`SignedBody`], one kind of signed body, and [`verify_document`], the one
//!   verification every kind goes through (envelope, kind, signatures, body).
//! - [`release`] — [`ReleaseManifest`] and [`verify_release`], the one call stage 0 makes.
//! - [`workload`] — [`WorkloadManifest`] and [`verify_workload`], the node's check of a workload.
//! - [`version`] — [`check_rollback`].
//! - [`grid`] — the control plane's documents (farm, node registration, contract, approval,
//!   placement, cancellation, status report, lease), their supersession streams, and the rules
//!   the notary, the agent and the node share.
//!
//! The byte and text formats are specified in the module docs and in `docs/TRUST-FORMATS.md`.
//!
//! A typical release check:
//!
//! ```
//! use trust::{check_rollback, verify_release, ReleaseManifest, SecretKey, SignerPolicy};
//! # use trust::{ArtifactRef, BuildInputs};
//! # let (kernel, initrd, cmdline) = (b"kernel".as_slice(), b"initrd".as_slice(), b"console=ttyS0".as_slice());
//! # let manifest = ReleaseManifest {
//! #     format: ReleaseManifest::FORMAT, version: 7, profile: "dev".into(), target: "x86_64-qemu".into(),
//! #     kernel: ArtifactRef::of(kernel), initrd: ArtifactRef::of(initrd), cmdline: ArtifactRef::of(cmdline),
//! #     build: BuildInputs { kernel_package: "linux-image-cloud-amd64".into(), kernel_version: "6.1.0-56-cloud-amd64".into(), packages: Vec::new() },
//! # };
//! let key = SecretKey::from_seed([42; 32]); // a real key's seed comes from the OS RNG
//! let mut document = manifest.to_document();
//! document.sign(&key)?;
//! let file = document.encode();
//!
//! let policy = SignerPolicy::single(key.public());
//! let (_document, release) = verify_release(&file, &policy)?;
//! check_rollback(release.version, 6)?;
//! release.check_artifacts(kernel, initrd, cmdline)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(missing_docs, clippy::unwrap_used))]

extern crate alloc;

pub mod digest;
pub mod document;
pub mod grid;
pub mod hexfmt;
pub mod keys;
pub mod limits;
pub mod policy;
pub mod release;
pub mod signed;
pub mod version;
pub mod workload;

pub use digest::{Digest, Hasher, ParseError};
pub use document::{
    DocumentKind, SignError, SignedDocument, SignerRef, Verified, VerifyError, DOCUMENT_MAGIC,
};
pub use hexfmt::HexError;
pub use keys::{KeyError, PublicKey, SecretKey};
pub use limits::DecodeError;
pub use policy::{Counted, PolicyError, PolicyMember, PolicyTextError, SignerPolicy, Tally};
pub use release::{
    verify_release, ArtifactMismatch, ArtifactRef, BuildInputs, BuildPackage, ReleaseError,
    ReleaseManifest,
};
pub use signed::{verify_document, verify_named, DocumentError, NamedSigner, Opened, SignedBody};
pub use version::{check_rollback, RollbackError};
pub use workload::{verify_workload, RestartPolicy, VolumeSpec, WorkloadError, WorkloadManifest};
