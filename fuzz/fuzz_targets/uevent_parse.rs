//! Kernel uevent messages (NETLINK_KOBJECT_UEVENT), read by PID 1 during coldplug: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pid1::uevent::parse(data);
});
