//! A real DHCP server with short leases on a network of the test's own: QEMU's user network
//! hands out 24-hour leases, so renewal, rebinding and loss are shown on a tap interface with
//! dnsmasq (Debian's `dnsmasq-base`) serving 2-minute leases, its shortest. Needs root (the
//! tap) and dnsmasq; without either the test fails and says so.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The host's address on the tap network: dnsmasq's, and the router it announces.
pub const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// The prefix every leased address starts with.
pub const LEASED_PREFIX: &str = "192.168.77.";
/// The lease time dnsmasq grants (its minimum): T1 after 60 s, T2 after 105 s.
pub const LEASE_SECS: u32 = 120;
/// Where dnsmasq is in Debian.
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A tap interface with dnsmasq on it; dropping it stops dnsmasq and deletes the tap.
#[derive(Debug)]
pub struct TapDhcp {
    tap: String,
    dir: PathBuf,
    dnsmasq: Option<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e} (iproute2 is needed)", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed (the tap network needs root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl TapDhcp {
    /// Creates tap `tap` (at most 15 bytes) with [`HOST`]/24 and starts dnsmasq on it.
    pub fn start(tap: &str) -> TapDhcp {
        assert!(
            std::path::Path::new(DNSMASQ).is_file(),
            "{DNSMASQ} is missing: install Debian's dnsmasq-base (make deps)"
        );
        // A tap left over by an earlier run that was killed.
        let _ = Command::new("ip")
            .args(["link", "del", tap])
            .stderr(Stdio::null())
            .status();
        ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        let dir = std::env::temp_dir().join(format!("nullos-dhcp-{tap}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut server = TapDhcp {
            tap: tap.to_owned(),
            dir,
            dnsmasq: None,
        };
        ip(&["addr", "add", &format!("{HOST}/24"), "dev", tap]);
        ip(&["link", "set", tap, "up"]);
        server.start_server();
        server
    }

    /// QEMU arguments for a NIC of `model` (QEMU's device name) on the tap.
    pub fn qemu_args(&self, model: &str) -> Vec<OsString> {
        [
            "-netdev".to_owned(),
            format!("tap,id=tap0,ifname={},script=no,downscript=no", self.tap),
            "-device".to_owned(),
            format!("{model},netdev=tap0"),
        ]
        .map(OsString::from)
        .to_vec()
    }

    /// Starts dnsmasq (again): DHCP only (`--port=0`), on the tap alone, 2-minute leases.
    pub fn start_server(&mut self) {
        if self.dnsmasq.is_some() {
            return;
        }
        let child = Command::new(DNSMASQ)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--user=root",
                "--bind-interfaces",
                "--dhcp-authoritative",
                "--log-dhcp",
            ])
            .arg(format!("--interface={}", self.tap))
            .arg(format!(
                "--dhcp-range=192.168.77.50,192.168.77.60,255.255.255.0,{LEASE_SECS}s"
            ))
            .arg(format!(
                "--dhcp-leasefile={}",
                self.dir.join("leases").display()
            ))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!(
                "--log-facility={}",
                self.dir.join("dnsmasq.log").display()
            ))
            .stdin(Stdio::null())
            // Its log file has every line; stderr keeps what it says before it can log.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("dnsmasq.stderr"))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("starting {DNSMASQ}: {e}"));
        self.dnsmasq = Some(child);
    }

    /// Stops dnsmasq: nobody renews leases until [`TapDhcp::start_server`].
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// dnsmasq's log and stderr so far (for failure messages).
    pub fn log(&self) -> String {
        ["dnsmasq.stderr", "dnsmasq.log"]
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .join("")
    }
}

impl Drop for TapDhcp {
    fn drop(&mut self) {
        self.stop_server();
        let _ = Command::new("ip")
            .args(["link", "del", &self.tap])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
