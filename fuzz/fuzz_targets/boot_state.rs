#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nullos_fuzz_targets::targets::boot_state::fuzz_one(data));
