//! The harness that makes a full-system test a few lines long.
//!
//! The tests boot the images `make image` built (they do not build them: `make test` does that
//! first, and a missing image is a failure that says so, never a skip). QEMU runs with the
//! accelerator `qemu::Accel::detect` picks, which is TCG on machines whose `/dev/kvm` cannot run
//! Linux at useful speed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use qemu::{Accel, Boot, Vm, VmConfig};

pub mod dhcp;

/// How long a TCG boot may take to reach `nullos: ready`. Generous: the machines are shared,
/// and two VMs may run at once on two cores.
pub const READY_TIMEOUT: Duration = Duration::from_secs(240);

/// The port dev images use for their control endpoint (`10.0.2.2:7878` inside QEMU's user
/// network is `127.0.0.1:7878` on the host).
pub const CONTROL_PORT: u16 = 7878;

/// The text of `profiles/<name>.toml` for a test's own image: its `"../` paths made absolute and
/// every section named in `cut` (e.g. `[usb]`, `[secure_boot]`, `[[workload]]`) removed, header
/// through the line before the next section.
pub fn profile_text_without(name: &str, cut: &[&str]) -> String {
    let repo = repo_root();
    let path = repo.join("profiles").join(format!("{name}.toml"));
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text = text.replace("\"../", &format!("\"{}/", repo.display()));
    for section in cut {
        while let Some(start) = text.find(section) {
            let rest = &text[start + section.len()..];
            let end = rest
                .find("\n[")
                .map_or(text.len(), |e| start + section.len() + e + 1);
            text = format!("{}{}", &text[..start], &text[end..]);
        }
    }
    text
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `build/` (or `$NULLOS_BUILD_DIR`).
pub fn build_dir() -> PathBuf {
    std::env::var_os("NULLOS_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("build"))
}

/// The built dev image folder; panics with the fix if it is missing.
pub fn dev_image() -> PathBuf {
    let dir = build_dir().join("dev");
    assert!(
        dir.join("release.manifest").is_file(),
        "{} has no built image: run `make image` (make test does it first)",
        dir.display()
    );
    dir
}

/// A TCP server on the host standing in for the control endpoint. One per test process (the
/// port is fixed); it accepts and counts connections.
#[derive(Debug)]
pub struct ControlServer {
    accepted: Arc<AtomicUsize>,
}

impl ControlServer {
    /// The process's server, started on first use.
    pub fn get() -> &'static ControlServer {
        static SERVER: OnceLock<ControlServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let listener = TcpListener::bind(("127.0.0.1", CONTROL_PORT)).unwrap_or_else(|e| {
                panic!("cannot listen on 127.0.0.1:{CONTROL_PORT} for the control-endpoint test server: {e}")
            });
            let accepted = Arc::new(AtomicUsize::new(0));
            let counter = accepted.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    // Drain whatever the node says, then let it go.
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut sink = [0u8; 256];
                    let _ = (&stream).read(&mut sink);
                }
            });
            ControlServer { accepted }
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The port the PXE bundle's release URL names (`http://${next-server}:8080/release`:
/// 10.0.2.2:8080 inside QEMU's user network is 127.0.0.1:8080 on the host).
pub const RELEASE_PORT: u16 = 8080;
/// The release URL stage 0 sees in the dev PXE bundle (QEMU's TFTP server is 10.0.2.2).
pub const GUEST_RELEASE_URL: &str = "http://10.0.2.2:8080/release";

/// A plain HTTP/1.1 file server on the host standing in for a farmer's release server: `GET
/// /release/<name>` answers the file `<name>` of a folder (or a replacement set with
/// [`ReleaseServer::replace`]), anything else 404. Written here because the tests must not
/// need external tools; it serves one request per connection (`Connection: close`).
#[derive(Debug)]
pub struct ReleaseServer {
    replaced: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl ReleaseServer {
    /// Serves `dir` under `/release/` on 127.0.0.1:[`RELEASE_PORT`] until the process ends.
    pub fn start(dir: &Path) -> ReleaseServer {
        ReleaseServer::start_on(dir, RELEASE_PORT)
    }

    /// The same on another port (a test whose node watches a release channel of its own).
    pub fn start_on(dir: &Path, port: u16) -> ReleaseServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            panic!("cannot listen on 127.0.0.1:{port} for the release test server: {e}")
        });
        let server = ReleaseServer {
            replaced: Arc::default(),
            requests: Arc::default(),
        };
        let (dir, replaced, requests) = (
            dir.to_owned(),
            server.replaced.clone(),
            server.requests.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (dir, replaced, requests) = (dir.clone(), replaced.clone(), requests.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(&stream, &dir, &replaced, &requests);
                });
            }
        });
        server
    }

    /// Serves `bytes` for `name` instead of the folder's file.
    pub fn replace(&self, name: &str, bytes: Vec<u8>) {
        if let Ok(mut map) = self.replaced.lock() {
            map.insert(name.to_owned(), bytes);
        }
    }

    /// The request lines received so far (`GET /release/kernel HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Reads one request and answers it.
fn serve_one(
    stream: &std::net::TcpStream,
    dir: &Path,
    replaced: &Mutex<BTreeMap<String, Vec<u8>>>,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let request = request.trim().to_owned();
    if let Ok(mut r) = requests.lock() {
        r.push(request.clone());
    }
    let name = request
        .strip_prefix("GET /release/")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && *n != "..");
    let body = name.and_then(|n| {
        let replacement = replaced.lock().ok().and_then(|m| m.get(n).cloned());
        replacement.or_else(|| std::fs::read(dir.join(n)).ok())
    });
    let mut out = stream;
    match body {
        Some(body) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body)?;
        }
        None => out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
    }
    out.flush()
}

/// Starts a VM with the project's defaults for `boot`.
pub fn start_vm(boot: Boot) -> Vm {
    let accel = Accel::detect().unwrap_or_else(|e| panic!("{e}"));
    Vm::start(VmConfig::new(boot, accel)).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

/// The `key=value` fields of a console line such as `nullos: ready version=1 ...`.
pub fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Waits for the ready line and returns its fields.
pub fn wait_ready(vm: &Vm) -> BTreeMap<String, String> {
    let line = vm
        .wait_for_line("nullos: ready", READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    fields(&line)
}

/// Everything a node booted from the dev image must show once ready, whichever way it booted:
/// the ready line's facts, the drivers coldplug loaded, the DHCP lease from QEMU, the control
/// endpoint reached, no listening sockets; then a clean power-off on the ACPI power button.
pub fn assert_dev_node_lifecycle(vm: &Vm) {
    let server = ControlServer::get();
    let ready = wait_ready(vm);
    let console = vm.serial_text().unwrap_or_default();
    let field = |k: &str| ready.get(k).map(String::as_str).unwrap_or("<missing>");

    assert_eq!(field("version"), "1", "ready line: {ready:?}");
    assert_eq!(field("profile"), "dev", "ready line: {ready:?}");
    // QEMU's user network hands out 10.0.2.15/24 by DHCP.
    assert_eq!(
        field("address"),
        "10.0.2.15/24",
        "ready line: {ready:?}\n{console}"
    );
    assert_eq!(
        field("control"),
        "reachable",
        "ready line: {ready:?}\n{console}"
    );
    assert_eq!(
        field("listening"),
        "0",
        "the node must not listen on any socket: {ready:?}"
    );
    let uptime: u64 = field("uptime_ms")
        .parse()
        .unwrap_or_else(|_| panic!("uptime_ms: {ready:?}"));
    assert!(uptime > 0);

    let needle = "init: info: module loaded: virtio_net";
    assert!(
        console.contains(needle),
        "no '{needle}' on the console:\n{console}"
    );
    assert_kvm_module(vm.config().accel, &console);
    assert!(
        console.contains("init: info: dhcp: ") && console.contains("leased 10.0.2.15/24"),
        "no DHCP lease line:\n{console}"
    );
    assert!(
        server.accepted() >= 1,
        "the control server on the host saw no connection"
    );
    assert!(!console.contains("Kernel panic"), "{console}");

    vm.powerdown()
        .unwrap_or_else(|e| panic!("system_powerdown: {e}"));
    vm.wait_for_line("nullos: poweroff", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let status = vm
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success(),
        "QEMU exit status after power-off: {status:?}"
    );
}

/// The KVM module a node must load on the CPU QEMU gives it under `accel`, and the one it must
/// not load (the node picks by its CPU's modalias): under TCG, `-cpu max` emulates AMD's SVM (TCG
/// has no VMX), so `kvm_amd`; under KVM, `-cpu host` passes the host's own virtualization
/// extension through: `kvm_intel` on a host with `vmx`, `kvm_amd` on one with `svm`.
pub fn expected_kvm_module(accel: Accel) -> (&'static str, &'static str) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    kvm_module_for(accel, &cpuinfo)
}

/// [`expected_kvm_module`] for the host's `/proc/cpuinfo` text.
pub fn kvm_module_for(accel: Accel, cpuinfo: &str) -> (&'static str, &'static str) {
    let has_vmx = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(key, _)| key.trim() == "flags")
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "vmx"));
    match accel {
        Accel::Kvm if has_vmx => ("kvm_intel", "kvm_amd"),
        Accel::Kvm | Accel::Tcg => ("kvm_amd", "kvm_intel"),
    }
}

/// Asserts that the node's console shows the KVM module of its CPU ([`expected_kvm_module`])
/// loaded, and not the other one.
pub fn assert_kvm_module(accel: Accel, console: &str) {
    let (expected, other) = expected_kvm_module(accel);
    assert!(
        console.contains(&format!("init: info: module loaded: {expected}")),
        "{expected} not loaded ({accel:?}):\n{console}"
    );
    assert!(
        !console.contains(&format!("init: info: module loaded: {other}")),
        "{other} loaded on a CPU without it ({accel:?}):\n{console}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kvm_module_follows_the_cpu_qemu_gives_the_node() {
        let intel = "processor\t: 0\nflags\t\t: fpu vme vmx lm\n";
        let amd = "processor\t: 0\nflags\t\t: fpu vme svm lm\n";
        assert_eq!(kvm_module_for(Accel::Kvm, intel), ("kvm_intel", "kvm_amd"));
        assert_eq!(kvm_module_for(Accel::Kvm, amd), ("kvm_amd", "kvm_intel"));
        // TCG emulates SVM whatever the host is.
        assert_eq!(kvm_module_for(Accel::Tcg, intel), ("kvm_amd", "kvm_intel"));
        assert_eq!(kvm_module_for(Accel::Tcg, amd), ("kvm_amd", "kvm_intel"));
    }
}
