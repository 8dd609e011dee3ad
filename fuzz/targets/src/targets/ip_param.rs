//! The guest's `ip=` kernel parameter (`kernel_init::guest::ip`): any command line never panics;
//! whatever parses has a prefix of at most 32 bits and at most two DNS servers, and its
//! broadcast address, summary line and resolv.conf text can be computed.

use kernel_init::guest::ip::IpConfig;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ip) = IpConfig::from_cmdline(text) else {
        return;
    };
    assert!(ip.prefix_len <= 32, "prefix /{}", ip.prefix_len);
    assert!(ip.dns.len() <= 2, "{} DNS servers", ip.dns.len());
    let _ = ip.broadcast();
    let _ = ip.summary();
    let _ = ip.resolv_conf();
}
