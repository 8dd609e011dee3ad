//! Proofs served by a real Certificate Transparency log verify with this crate.
//!
//! The files in `vectors/` are the JSON answers of Google's `argon2020` CT log (RFC 6962 API:
//! `get-sth`, `get-entries` for entry 10000, `get-proof-by-hash` for it, and
//! `get-sth-consistency` from size 3654490), as vendored in the test data of Cloudflare's
//! `tlog_tiles` crate (BSD-3-Clause), which took them from Go's `sumdb/tlog` tests.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use tlog::{leaf_hash, verify_consistency, verify_inclusion, Hash};

fn json(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn argon2020_inclusion_and_consistency_proofs_verify() {
    let sth = json("argon2020-get-sth.json");
    let size = sth["tree_size"].as_u64().unwrap();
    let root = Hash::from_base64(sth["sha256_root_hash"].as_str().unwrap()).unwrap();

    let entries = json("argon2020-get-entries-10000.json");
    let leaf_input = STANDARD
        .decode(entries["entries"][0]["leaf_input"].as_str().unwrap())
        .unwrap();
    let leaf = leaf_hash(&leaf_input);

    let proof = hashes(&json("argon2020-get-proof-by-hash-10000.json")["audit_path"]);
    assert_eq!(verify_inclusion(10000, size, &leaf, &proof, &root), Ok(()));
    assert!(verify_inclusion(10001, size, &leaf, &proof, &root).is_err());

    let consistency = hashes(&json("argon2020-get-sth-consistency-3654490.json")["consistency"]);
    let old_root = Hash::from_base64("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=").unwrap();
    assert_eq!(
        verify_consistency(3_654_490, size, &old_root, &root, &consistency),
        Ok(())
    );
    assert!(verify_consistency(3_654_491, size, &old_root, &root, &consistency).is_err());
}
