//! The agent's contract templates (`agent::template`): parsing and instantiating any text never
//! panics, and whatever instantiates is a valid contract.

use std::path::Path;

use agent::template::{Inputs, Template};
use trust::{SecretKey, SignedBody};

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = Template::parse(text) else {
        return;
    };
    let no_files = |_: &Path| Err(std::io::ErrorKind::NotFound.into());
    let inputs = Inputs {
        sets: &[],
        owner: SecretKey::from_seed([1; 32]).public(),
        base_dir: Path::new("."),
        read_file: &no_files,
    };
    if let Ok(contract) = template.instantiate(&inputs) {
        assert_eq!(contract.validate(), Ok(()));
    }
}
