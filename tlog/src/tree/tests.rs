//! The tree and the proof checker against RFC 6962 known answers, a naive reference, and each
//! other.

#![allow(clippy::cast_possible_truncation)] // test sizes are small

use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::hash::leaf_hash;
use crate::proof::{verify_consistency, verify_inclusion, ProofError};

/// The eight leaves of the Certificate Transparency reference test suite (`merkle_tree_test`,
/// reused by RFC 6962 implementations such as transparency-dev/merkle).
const CT_LEAVES: [&[u8]; 8] = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
];

/// The roots of the first 1..=8 of those leaves, from the same suite.
const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

fn ct_tree() -> MerkleTree {
    let mut t = MerkleTree::new();
    for leaf in CT_LEAVES {
        t.push(leaf_hash(leaf));
    }
    t
}

/// `MTH` straight from the RFC's definition.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

fn numbered(n: u64) -> (MerkleTree, Vec<Hash>) {
    let mut t = MerkleTree::new();
    let mut leaves = Vec::new();
    for i in 0..n {
        let l = leaf_hash(&i.to_le_bytes());
        leaves.push(l);
        assert_eq!(t.push(l), i);
    }
    (t, leaves)
}

#[test]
fn roots_match_the_ct_reference_vectors() {
    let t = ct_tree();
    assert_eq!(t.root(0), Ok(Hash::empty()));
    for (i, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(t.root(i as u64 + 1), Ok(h(want)), "size {}", i + 1);
    }
}

#[test]
fn inclusion_proofs_match_the_ct_reference_vectors() {
    let t = ct_tree();
    let cases: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, want) in cases {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        assert_eq!(t.inclusion_proof(index, size), Ok(want.clone()));
        let root = t.root(size).unwrap();
        let leaf = leaf_hash(CT_LEAVES[index as usize]);
        assert_eq!(verify_inclusion(index, size, &leaf, &want, &root), Ok(()));
    }
}

#[test]
fn consistency_proofs_match_the_ct_reference_vectors() {
    let t = ct_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, want) in cases {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        assert_eq!(t.consistency_proof(old, new), Ok(want.clone()));
        let (r1, r2) = (t.root(old).unwrap(), t.root(new).unwrap());
        assert_eq!(verify_consistency(old, new, &r1, &r2, &want), Ok(()));
    }
}

#[test]
fn every_root_matches_the_naive_definition() {
    let (t, leaves) = numbered(70);
    for size in 0..=70 {
        assert_eq!(t.root(size), Ok(naive_root(&leaves[..size as usize])));
    }
}

#[test]
fn every_proof_of_small_trees_verifies_and_tampering_fails() {
    let (t, leaves) = numbered(33);
    for size in 1..=33u64 {
        let root = t.root(size).unwrap();
        for index in 0..size {
            let proof = t.inclusion_proof(index, size).unwrap();
            let leaf = leaves[index as usize];
            assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
            // Another leaf, another index, a shortened or lengthened proof: all refused.
            let other = leaves[((index + 1) % size) as usize];
            if size > 1 {
                assert!(verify_inclusion(index, size, &other, &proof, &root).is_err());
                assert!(verify_inclusion((index + 1) % size, size, &leaf, &proof, &root).is_err());
            }
            if let Some((_, short)) = proof.split_last() {
                assert!(verify_inclusion(index, size, &leaf, short, &root).is_err());
                let mut bent = proof.clone();
                bent[0].0[0] ^= 1;
                assert!(verify_inclusion(index, size, &leaf, &bent, &root).is_err());
            }
            let mut long = proof.clone();
            long.push(Hash::empty());
            assert!(verify_inclusion(index, size, &leaf, &long, &root).is_err());
        }
        for old in 0..=size {
            let proof = t.consistency_proof(old, size).unwrap();
            let old_root = t.root(old).unwrap();
            assert_eq!(
                verify_consistency(old, size, &old_root, &root, &proof),
                Ok(()),
                "{old} -> {size}"
            );
            if old > 0 && old < size {
                let forged = Hash([7; 32]);
                assert!(verify_consistency(old, size, &forged, &root, &proof).is_err());
                assert!(verify_consistency(old, size, &old_root, &forged, &proof).is_err());
                let mut bent = proof.clone();
                let last = bent.len() - 1;
                bent[last].0[31] ^= 1;
                assert!(verify_consistency(old, size, &old_root, &root, &bent).is_err());
                if let Some((_, short)) = proof.split_last() {
                    assert!(verify_consistency(old, size, &old_root, &root, short).is_err());
                }
            }
        }
    }
}

#[test]
fn truncating_forgets_an_uncommitted_batch() {
    let (full, _) = numbered(37);
    for size in [0u64, 1, 16, 20, 36, 37] {
        let (mut t, _) = numbered(37);
        t.truncate(size);
        assert_eq!(t.size(), size);
        assert_eq!(t.root(size), full.root(size));
        t.push(leaf_hash(b"other"));
        let (mut again, _) = numbered(size);
        again.push(leaf_hash(b"other"));
        assert_eq!(t.root(size + 1), again.root(size + 1));
    }
}

#[test]
fn out_of_range_questions_are_errors() {
    let (t, leaves) = numbered(5);
    assert_eq!(t.root(6), Err(TreeError::BeyondSize { asked: 6, size: 5 }));
    assert_eq!(
        t.inclusion_proof(5, 5),
        Err(TreeError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert!(t.inclusion_proof(0, 6).is_err());
    assert_eq!(
        t.consistency_proof(4, 3),
        Err(TreeError::SizesReversed { old: 4, new: 3 })
    );
    let root = t.root(5).unwrap();
    assert_eq!(
        verify_inclusion(5, 5, &leaves[0], &[], &root),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        verify_consistency(5, 4, &root, &root, &[]),
        Err(ProofError::SizesReversed { old: 5, new: 4 })
    );
    assert!(verify_consistency(3, 5, &t.root(3).unwrap(), &root, &[]).is_err());
    assert!(verify_inclusion(0, 5, &leaves[0], &[Hash::empty(); 65], &root).is_err());
}

proptest! {
    #[test]
    fn random_sizes_prove_and_verify(size in 1u64..300, a in 0u64..300, b in 0u64..300) {
        let (t, leaves) = numbered(size);
        let index = a % size;
        let old = b % (size + 1);
        let root = t.root(size).unwrap();
        let proof = t.inclusion_proof(index, size).unwrap();
        prop_assert_eq!(verify_inclusion(index, size, &leaves[index as usize], &proof, &root), Ok(()));
        let c = t.consistency_proof(old, size).unwrap();
        prop_assert_eq!(verify_consistency(old, size, &t.root(old).unwrap(), &root, &c), Ok(()));
    }
}
