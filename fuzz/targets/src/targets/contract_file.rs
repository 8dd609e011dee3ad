//! The agent's contract file (`agent::contract_file`): never panic; whatever reads is written
//! back byte for byte (one spelling per content) and its policy can be evaluated.

use agent::contract_file::ContractFile;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(file) = ContractFile::decode(data) {
        assert_eq!(
            file.encode().as_bytes(),
            data,
            "decode accepted a second spelling"
        );
        let _ = file.policy();
    }
}
