//! /proc/net/{tcp,udp} tables, parsed by PID 1 to count open sockets: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = kernel_init::sockets::parse_table("tcp", text);
        let _ = kernel_init::sockets::parse_table("udp6", text);
    }
});
