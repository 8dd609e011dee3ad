//! Micro-VMs end to end (issue 3): a node booted under QEMU (TCG) verifies signed workloads and
//! runs each in our `vmm` on the nested KVM (the node loads `kvm_amd` or `kvm_intel`, whichever
//! its CPU has: `kvm_amd` over TCG's emulated SVM), booting the stock Debian cloud kernel the
//! node itself runs.
//!
//! The test builds its own node image from the dev profile's parts with six workloads, five of
//! them the example program `hello` (built by `make workloads`) with different manifests:
//! - `hello`: the example as shipped (greeting, counter on its volume, exit 0);
//! - `net`: connects to a TCP server this test runs on the host and prints the reply;
//! - `crash`: exits 3, so the node restarts it with backoff, exactly the crash-loop limit of
//!   attempts, then gives up; its counter shows the volume kept its file across the restarts;
//! - `panic`: has its guest kernel panic; the VMM learns it on the pvpanic port and the node
//!   reports `vm=panic` (and, with `restart = "never"`, does not restart it);
//! - `tampered`: signed, then one byte of its root image flipped after the image was built
//!   (appended to the initramfs as a second cpio archive, as an attacker with write access to
//!   the node image would), so the node must refuse it with both digests;
//! - `jail`: `jail-probe memory-max` (kernel-init's, built by `make workloads`), which puts a
//!   process through the node's own jail set-up in a cgroup v2 leaf and proves it cannot exceed
//!   `memory.max` (this host may bind the memory controller to cgroup v1; the Debian kernel under
//!   QEMU has it on cgroup v2).
//!
//! Lines of one workload are awaited in order (each after the line the previous wait found);
//! lines of different workloads interleave freely.
//!
//! The node gets a disk holding foreign data, which it must leave alone, and an empty data disk,
//! which it claims for the volumes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use image_builder::build::{build, Quiet};
use image_builder::config::BuildConfig;
use image_builder::keys;
use qemu::{Accel, Boot, Vm, VmConfig};
use system_tests::{build_dir, repo_root, wait_ready};
use trust::Hasher;

/// Nested boots are slow under TCG and four run at once on two emulated CPUs.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(360);

fn hello_binary() -> PathBuf {
    let path = repo_root().join("target/x86_64-unknown-linux-gnu/release/hello");
    assert!(
        path.is_file(),
        "{} is missing: run `make workloads` (make test does it first)",
        path.display()
    );
    path
}

fn jail_probe_binary() -> PathBuf {
    let path = repo_root().join("target/x86_64-unknown-linux-gnu/release/jail-probe");
    assert!(
        path.is_file(),
        "{} is missing: run `make workloads` (make test does it first)",
        path.display()
    );
    path
}

/// The workload running `jail-probe memory-max` (no network, no volume, never restarted).
fn jail_probe_source(root: &Path) -> PathBuf {
    let dir = root.join("src").join("jail");
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        r#"name = "jail"
version = 1
entrypoint = ["/bin/jail-probe", "memory-max"]
vcpus = 1
memory_mib = 128
network = false
restart = "never"

[files]
"/bin/jail-probe" = "{}"
"#,
        jail_probe_binary().display()
    );
    std::fs::write(dir.join("workload.toml"), toml).unwrap();
    dir
}

/// Waits for console lines in order: each [`InOrder::wait`] finds a line after the one the
/// previous wait found (the whole console is searched, so a line printed before the call counts
/// if it comes after that one). A clone goes on from the same line: one sequence per workload,
/// each after the node's own steps.
#[derive(Clone)]
struct InOrder<'a> {
    vm: &'a Vm,
    /// The index of the line the previous wait found.
    after: Option<usize>,
}

impl<'a> InOrder<'a> {
    fn new(vm: &'a Vm) -> Self {
        InOrder { vm, after: None }
    }

    /// The next line containing `needle`.
    fn wait(&mut self, needle: &str) -> String {
        self.wait_matching(&format!("containing {needle:?}"), |line| {
            line.contains(needle)
        })
    }

    /// The next line for which `matches` holds (`what` describes it in a failure).
    fn wait_matching(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let after = self.after;
        let mut index = 0usize;
        let mut found = None;
        let line = self
            .vm
            .wait_for_line_matching(
                &format!("{what} after line {after:?}"),
                |line| {
                    let i = index;
                    index += 1;
                    let hit = after.is_none_or(|a| i > a) && matches(line);
                    if hit {
                        found = Some(i);
                    }
                    hit
                },
                WORKLOAD_TIMEOUT,
            )
            .unwrap_or_else(|e| {
                let console = self.vm.serial_text().unwrap_or_default();
                panic!("waiting for a line {what} in order: {e}\n--- whole console ---\n{console}")
            });
        self.after = found;
        line
    }
}

/// Writes a workload source folder for `hello` with the given extra manifest lines.
fn workload_source(root: &Path, name: &str, env: &str, restart: &str) -> PathBuf {
    let dir = root.join("src").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        r#"name = "{name}"
version = 1
entrypoint = ["/bin/hello"]
env = {{ {env} }}
vcpus = 1
memory_mib = 128
network = true
restart = "{restart}"

[[volume]]
name = "data"
mount = "/data"
size_mib = 16

[files]
"/bin/hello" = "{}"
"#,
        hello_binary().display()
    );
    std::fs::write(dir.join("workload.toml"), toml).unwrap();
    dir
}

fn build_workload(root: &Path, src: &Path, name: &str) -> PathBuf {
    let key = keys::load_secret(&build_dir().join("keys/dev.key")).unwrap();
    let out = root.join("built").join(name);
    image_builder::workload::build(src, &out, &[key], 0).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// The dev profile with these workloads, an uncompressed initramfs (so a second archive can be
/// appended) and no USB or stage 0 outputs.
fn node_profile(root: &Path, workloads: &[PathBuf], egress_allow: &str) -> PathBuf {
    let mut text = system_tests::profile_text_without(
        "dev",
        &[
            "[usb]",
            "[secure_boot]",
            "[stage0]",
            "[[workload]]",
            "[initrd]",
        ],
    );
    // Baked workloads, offline: this node does not join the grid (system-tests/tests/grid.rs
    // covers that), so its steps keep the order asserted below.
    text = text
        .lines()
        .filter(|l| {
            !["notary =", "notary_key =", "farm ="]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // Workloads reach the public internet only, unless the node's policy names a destination.
    assert!(
        text.contains("\n[node]\n"),
        "profiles/dev.toml has a [node] section"
    );
    text = text.replace(
        "\n[node]\n",
        &format!("\n[node]\negress_allow = [\"{egress_allow}\"]\n"),
    );
    text.push_str("\n[initrd]\ncompression = \"none\"\n");
    for w in workloads {
        text.push_str(&format!("\n[[workload]]\npath = \"{}\"\n", w.display()));
    }
    let path = root.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A newc cpio archive of `files` (path, bytes), with their parent folders.
fn cpio_archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut archive = initramfs::Writer::new(Vec::new(), 0);
    for (path, data) in files {
        archive.file(path, 0o644, data).unwrap();
    }
    archive.finish().unwrap()
}

/// A host TCP server that answers each line with `pong <line>`; counts connections.
fn start_echo_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_ok() {
                let _ = (&stream).write_all(format!("pong {}\n", line.trim()).as_bytes());
            }
        }
    });
    (port, served)
}

fn hex_digest(bytes: &[u8]) -> String {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finalize().to_hex()
}

#[test]
fn signed_workloads_boot_debian_in_our_vmm_inside_a_qemu_node() {
    let root = tempfile::tempdir().unwrap();
    let (port, served) = start_echo_server();

    let hello = build_workload(
        root.path(),
        &workload_source(root.path(), "hello", "", "on-failure"),
        "hello",
    );
    let net_env = format!("HELLO_CONNECT = \"10.0.2.2:{port}\"");
    let net = build_workload(
        root.path(),
        &workload_source(root.path(), "net", &net_env, "never"),
        "net",
    );
    let crash = build_workload(
        root.path(),
        &workload_source(root.path(), "crash", "HELLO_EXIT = \"3\"", "on-failure"),
        "crash",
    );
    let panic = build_workload(
        root.path(),
        &workload_source(root.path(), "panic", "HELLO_PANIC = \"1\"", "never"),
        "panic",
    );
    let tampered = build_workload(
        root.path(),
        &workload_source(root.path(), "tampered", "", "never"),
        "tampered",
    );
    let jail = build_workload(root.path(), &jail_probe_source(root.path()), "jail");

    // The node image with the five good workloads (image-builder refuses a tampered one).
    // The echo server is on the host, 10.0.2.2 (private) from the node: the node's policy
    // opens exactly its port to the workloads.
    let profile = node_profile(
        root.path(),
        &[hello, net, crash, panic, jail],
        &format!("10.0.2.2:{port}"),
    );
    let config = BuildConfig::load(&profile).unwrap_or_else(|e| panic!("{e}"));
    let image = root.path().join("image");
    build(&config, &image, 0, &Quiet).unwrap_or_else(|e| panic!("{e}"));

    // Tamper after the build: the fifth workload arrives in a second cpio archive with one
    // byte of its root image flipped.
    let manifest = std::fs::read(tampered.join("workload.manifest")).unwrap();
    let signed_root = std::fs::read(tampered.join("root.img")).unwrap();
    let mut bad_root = signed_root.clone();
    let middle = bad_root.len() / 2;
    bad_root[middle] ^= 0x01;
    let extra = cpio_archive(&[
        ("lib/nullos/workloads/tampered/workload.manifest", &manifest),
        ("lib/nullos/workloads/tampered/root.img", &bad_root),
    ]);
    let mut initrd = std::fs::OpenOptions::new()
        .append(true)
        .open(image.join("initrd"))
        .unwrap();
    initrd.write_all(&extra).unwrap();
    drop(initrd);

    // An empty data disk for the volumes.
    let disk = root.path().join("data.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();

    // A disk with someone else's data: random-looking bytes at both ends.
    let foreign = root.path().join("foreign.img");
    let foreign_bytes: Vec<u8> = (0..(8u32 << 20))
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    std::fs::write(&foreign, &foreign_bytes).unwrap();

    let accel = Accel::detect().unwrap_or_else(|e| panic!("{e}"));
    let boot: Boot = qemu::image::direct_boot(&image).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = VmConfig::new(boot, accel);
    cfg.memory_mib = 2048;
    cfg.cpus = 2;
    // The foreign disk first: the node looks at disks in name order and must pass over it.
    for image in [&foreign, &disk] {
        cfg.extra_args.push("-drive".into());
        cfg.extra_args
            .push(format!("file={},if=virtio,format=raw", image.display()).into());
    }
    let vm = Vm::start(cfg).unwrap_or_else(|e| panic!("starting QEMU: {e}"));
    wait_ready(&vm);

    // The node's own steps, in the order it takes them: verify every workload (the tampered
    // one refused, naming the artifact and both digests; the node goes on), then the data disk
    // (the foreign one passed over first, in name order), then the workloads start.
    let mut node = InOrder::new(&vm);
    let refused = node.wait("nullos: refused workload tampered root.img:");
    assert_eq!(
        refused.trim(),
        format!(
            "nullos: refused workload tampered root.img: blake3 {} does not match the manifest's {}",
            hex_digest(&bad_root),
            hex_digest(&signed_root)
        )
    );
    node.wait("init: warn: disk /dev/vda holds foreign data; not claimed");
    node.wait("init: info: data disk /dev/vdb mounted at /var/lib/nullos");

    // Its vmm runs jailed, as the node sees it in /proc: an unprivileged uid of the jails'
    // range, no capabilities, no_new_privs, its seccomp filter, namespaces of its own (the
    // network namespace stays the node's) and the VM's cgroup.
    let mut hello = node.clone();
    hello.wait("nullos: workload hello started pid=");
    let jailed = hello.clone().wait("init: info: workload hello jailed pid=");
    let field = |key: &str| -> String {
        jailed
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in {jailed:?}"))
            .to_owned()
    };
    let uid: u32 = field("uid").parse().unwrap_or(0);
    assert!(
        (100_000..100_000 + 65_536).contains(&uid),
        "the vmm's uid: {jailed}"
    );
    assert_eq!(field("gid"), field("uid"), "{jailed}");
    assert_eq!(field("cap_eff"), "0000000000000000", "{jailed}");
    assert_eq!(field("no_new_privs"), "1", "{jailed}");
    assert_eq!(field("seccomp"), "2", "{jailed}");
    assert_eq!(field("ns"), "mnt,pid,ipc,uts", "{jailed}");
    assert_eq!(field("cgroup"), "/nullos/hello", "{jailed}");

    // The node loaded the KVM module of its CPU, and only that one.
    system_tests::assert_kvm_module(accel, &vm.serial_text().unwrap_or_default());

    // The example: the stock kernel boots our guest init, which runs the entrypoint.
    hello.wait("[hello] init: info: nullos init");
    hello.wait("[hello] hello from a micro-VM");
    hello.wait("[hello] hello: counter=1");
    hello.wait("nullos: workload hello exited code=0");

    // Outbound TCP through the VMM's user-mode network to a server on the host.
    let mut net = node.clone();
    net.wait("nullos: workload net started pid=");
    net.wait("[net] hello: reply pong hello");
    net.wait("nullos: workload net exited code=0");
    assert!(
        served.load(Ordering::SeqCst) >= 1,
        "the host server saw no connection"
    );

    // A guest kernel panic: reported as such through pvpanic, and not restarted.
    let mut panicked = node.clone();
    panicked.wait("nullos: workload panic started pid=");
    panicked.wait("[panic] hello: asking the kernel to panic");
    let line = panicked.wait("Kernel panic - not syncing: sysrq triggered crash");
    assert!(line.starts_with("[panic] "), "the guest's line: {line}");
    panicked.wait("nullos: workload panic exited code=12 vm=panic");

    // Inside a jail set up by the node's code, in a cgroup v2 leaf, a process that fills twice
    // its memory.max is killed by the OOM killer before it gets there.
    let mut jailed_probe = node.clone();
    jailed_probe.wait("nullos: workload jail started pid=");
    let proof = jailed_probe.wait("[jail] jail-probe: ");
    assert!(
        proof.starts_with("[jail] jail-probe: memory.max=16777216 held: the jailed process was killed by SIGKILL after "),
        "the memory.max proof: {proof}"
    );
    jailed_probe.wait("nullos: workload jail exited code=0");

    // A failing workload: each exit code is reported, it is restarted with doubling backoff, its
    // volume keeps the counter file across restarts, and after exactly the crash-loop limit of
    // attempts (5) the node gives up.
    let mut crash = node.clone();
    for attempt in 1..=5u32 {
        let started = crash.wait("nullos: workload crash started pid=");
        assert!(
            started.trim_end().ends_with(&format!(" attempt={attempt}")),
            "attempt {attempt}: {started}"
        );
        crash.wait(&format!("[crash] hello: counter={attempt}"));
        crash.wait("nullos: workload crash exited code=3");
        if attempt < 5 {
            let delay_ms = 1000u32 << (attempt - 1);
            crash.wait(&format!(
                "nullos: workload crash restarting in {delay_ms} ms (attempt {})",
                attempt + 1
            ));
        }
    }
    crash.wait("nullos: workload crash gave up after 5 attempts");

    let console = vm.serial_text().unwrap_or_default();
    let count = |needle: &str| console.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("nullos: workload crash started pid="),
        5,
        "exactly 5 attempts:\n{console}"
    );
    assert_eq!(
        count("nullos: workload crash exited code=3"),
        5,
        "5 failed runs:\n{console}"
    );
    assert_eq!(
        count("nullos: workload crash restarting"),
        4,
        "4 restarts:\n{console}"
    );
    assert!(
        !console.contains("workload panic restarting"),
        "restart = \"never\":\n{console}"
    );
    assert!(
        !console.contains("workload tampered started"),
        "the tampered workload must never start:\n{console}"
    );
    assert!(
        !console.contains("vm=vmm-error"),
        "no VMM may fail:\n{console}"
    );

    println!("{console}");
    vm.qmp("system_powerdown", None)
        .unwrap_or_else(|e| panic!("{e}"));
    // The node's own last line (a guest's `[<name>] nullos: poweroff` does not count).
    crash.wait_matching("equal to \"nullos: poweroff\"", |line| {
        line.trim_end() == "nullos: poweroff"
    });
    drop(vm);
    assert!(
        std::fs::read(&foreign).unwrap() == foreign_bytes,
        "the foreign disk was written to"
    );
}
