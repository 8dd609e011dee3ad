//! Kernel uevent messages (NETLINK_KOBJECT_UEVENT), read by PID 1 during coldplug: never panic.

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let _ = pid1::uevent::parse(data);
}
