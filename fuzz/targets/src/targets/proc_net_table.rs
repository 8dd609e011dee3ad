//! /proc/net/{tcp,udp} tables, parsed by PID 1 to count open sockets: never panic.

/// One input.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = kernel_init::sockets::parse_table("tcp", text);
        let _ = kernel_init::sockets::parse_table("udp6", text);
    }
}
