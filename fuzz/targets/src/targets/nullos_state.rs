//! Stage 0's rollback floor, `nullos-state` (`boot::state`): any text never panics; whatever
//! parses is written back by `format` as a text that parses to the same version, and the floor
//! is never lowered.

use boot::state;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(highest) = state::parse(text) {
        assert_eq!(state::parse(&state::format(highest)), Ok(highest));
        let accepted = highest.wrapping_mul(31) ^ text.len() as u64;
        if let Some(raised) = state::raised(highest, accepted) {
            assert!(raised > highest, "the floor was lowered");
        }
    }
}
