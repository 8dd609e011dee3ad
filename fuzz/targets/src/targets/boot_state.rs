//! The data disk's boot state, `nullos-boot` (`interfaces::boot_state`), and stage 0's choice
//! on it (`boot::choice`): any text never panics; whatever parses is written back by `format`
//! as a text that parses to the same state; the plan never offers a version marked bad, and a
//! trial's tries only go down.

use boot::choice;
use interfaces::boot_state;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(state) = boot_state::parse(text) else {
        return;
    };
    assert_eq!(boot_state::parse(&state.format()), Ok(state.clone()));
    let candidates: Vec<u64> = data.iter().map(|b| u64::from(*b % 8)).collect();
    let plan = choice::plan(&state, &candidates);
    assert!(plan.order.iter().all(|v| !plan.state.is_bad(*v)));
    assert!(plan.order.windows(2).all(|w| w[0] > w[1]));
    for version in &plan.order {
        if let Some(next) = choice::before_boot(&plan.state, *version) {
            let trial = next.trial.expect("a counted boot is a trial");
            assert_eq!(trial.version, *version);
            if let Some(before) = plan.state.trial.filter(|t| t.version == *version) {
                assert!(trial.tries_left < before.tries_left.max(1));
            }
            assert_eq!(boot_state::parse(&next.format()), Ok(next));
        }
    }
}
