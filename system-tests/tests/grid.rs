//! Nodes join the grid (issue 13), end to end: a real `nullos-notary serve` on the host (grid
//! rules, temporary redb), a dev node under QEMU (TCG) whose image names that notary
//! (`http://10.0.2.2:<port>`, QEMU's user network), its pinned key and a farm. The test plays
//! the farmer and the contract's owner with the real `nullos` on the host (`key new`, `farm
//! register`/`approve`, `nodes --json`, `push`, `contract new`/`sign`, `deploy --wait`, `status
//! --json`, `logs`, `cancel`, `agent`); it writes a document by hand only where `nullos` has no command
//! for it (a contract's next version).
//!
//! Two boots (the second a reboot), shared by the assertions in order (TCG boots are slow):
//! 1. the node is ready with `node=<id>` and no listening socket, registers with the capacity it
//!    was given (`-smp 2`, `-m 2048`, a 256 MiB data disk), is live in `nullos nodes --json`
//!    and on the notary's explorer page;
//! 2. `nullos deploy --wait` of hello: pulled, verified, run in a micro-VM; the report says
//!    exited 0 and carries its console's last lines sealed to the owner (`nullos logs` with the
//!    owner's key prints `hello: counter=1`, the farmer's key is refused); a new version replaces it and its volume's counter goes on; the notary goes down
//!    and comes back (one console line each way) and the node re-syncs; it comes back with
//!    `--rules unchecked` (a notary that does not enforce the grid's rules), and the node itself
//!    refuses a contract one approval short of its threshold and a placement signed by someone
//!    other than the owner, each with its console line and a refused report, nothing run;
//! 3. a contract whose root image blob no longer matches its digest in the notary's store is
//!    refused, with its console line and report, and nothing of it runs; then the node reboots
//!    with its data disk: same id, the placed version runs again unasked;
//! 4. `nullos cancel` of the first stops it and removes its volumes;
//! 5. a notary restarted with the same key but another log (the kept checkpoint cannot be
//!    extended) is refused with one console line.
//!
//! Needs `make image`'s parts (kernel, sysroot, init, vmm, `make workloads`' hello), the
//! notary and `nullos` binaries (`cargo build --release -p notary -p agent`); a missing or
//! stale one fails, naming it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use image_builder::build::{build, Quiet};
use image_builder::config::BuildConfig;
use image_builder::keys;
use notary_client::Client;
use qemu::{Accel, Boot, Vm, VmConfig};
use serde_json::Value;
use system_tests::{build_dir, fields, repo_root, wait_ready};
use trust::grid::{Approval, Contract, ContractId, Placement, Previous};
use trust::{Digest, PolicyMember, PublicKey, SecretKey, SignedBody, SignerPolicy};

/// Nested boots are slow under TCG.
const TIMEOUT: Duration = Duration::from_secs(480);

/// `target/release/<name>`, refused if missing or older than the sources it is built from
/// (the test would exercise stale code).
fn release_binary(name: &str, sources: &[&str], build: &str) -> PathBuf {
    let root = repo_root();
    let path = root.join("target/release").join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; build it first: {build}", path.display()));
    for dir in sources {
        if let Some(newer) = newest(&root.join(dir)).filter(|(t, _)| *t > built) {
            panic!(
                "{} is older than {}: rebuild it: {build}",
                path.display(),
                newer.1.display()
            );
        }
    }
    path
}

fn nullos_binary() -> PathBuf {
    release_binary(
        "nullos",
        &["agent/src", "trust/src", "tlog/src", "notary-client/src"],
        "cargo build --release -p agent",
    )
}

/// The contract's owner and the farmer at their machine: the real `nullos` with its own state
/// directory (the pinned notary key, the witnessed checkpoint) and their key files.
struct User {
    dir: PathBuf,
    url: String,
    notary_key: PublicKey,
}

/// What one run of `nullos` did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "nullos failed: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

impl User {
    fn new(root: &Path, notary: &Notary) -> User {
        let dir = root.join("user");
        std::fs::create_dir_all(&dir).unwrap();
        let user = User {
            dir,
            url: notary.url.clone(),
            notary_key: notary.key,
        };
        user.run(&["key", "new", "--out", s(&user.farmer_key())])
            .ok();
        user.run(&["key", "new", "--out", s(&user.owner_key())])
            .ok();
        user
    }

    fn farmer_key(&self) -> PathBuf {
        self.dir.join("farmer.key")
    }

    fn owner_key(&self) -> PathBuf {
        self.dir.join("me.key")
    }

    fn public(&self, secret: &Path) -> PublicKey {
        let text = std::fs::read_to_string(format!("{}.pub", secret.display())).unwrap();
        PublicKey::from_text(text.trim()).unwrap()
    }

    /// `nullos ARGS` against this notary (the URL may change: a restarted notary keeps its port).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(nullos_binary());
        c.args(args)
            .env("NULLOS_NOTARY", &self.url)
            .env("NULLOS_NOTARY_KEY", self.notary_key.to_text())
            .env("NULLOS_STATE", self.dir.join("state"));
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().expect("run nullos");
        Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn status(&self, id: &str) -> Option<Value> {
        let run = self.run(&["status", id, "--json"]);
        (run.code == Some(0)).then(|| run.json())
    }

    /// A contract file instantiated from a copy of `examples/contracts/hello.toml` naming the
    /// built workload folder `workload`, approved by its owner; its id and contract.
    fn hello_contract(&self, name: &str, workload: &Path) -> (PathBuf, Contract) {
        let text = std::fs::read_to_string(repo_root().join("examples/contracts/hello.toml"))
            .unwrap()
            .replace(
                "path = \"../../build/workloads/hello\"",
                &format!("path = \"{}\"", workload.display()),
            );
        assert!(text.contains(&workload.display().to_string()));
        let template = self.dir.join(format!("{name}.toml"));
        std::fs::write(&template, text).unwrap();
        let file = self.dir.join(format!("{name}.contract"));
        self.run(&[
            "contract",
            "new",
            s(&template),
            "--owner-key",
            s(&self.owner_key()),
            "--out",
            s(&file),
        ])
        .ok();
        self.run(&["contract", "sign", s(&file), "--key", s(&self.owner_key())])
            .ok();
        let contract = contract_of(&file);
        (file, contract)
    }

    /// The next version of the contract in `file` (a document `nullos` has no command for:
    /// written here, signed with the owner's key file), approved with `nullos contract sign`.
    fn next_version(&self, file: &Path, name: &str) -> (PathBuf, Contract) {
        let current = contract_of(file);
        let next = Contract {
            version: current.version + 1,
            supersedes: Some(Previous {
                contract: current.id(),
                body: current.body_digest(),
            }),
            ..current
        };
        let owner = keys::load_secret(&self.owner_key()).unwrap();
        let mut doc = next.to_document();
        doc.sign(&owner).unwrap();
        let out = self.dir.join(format!("{name}.contract"));
        std::fs::write(
            &out,
            format!(
                "nullos-contract v1\ncontract {}\n",
                hex::encode(doc.encode())
            ),
        )
        .unwrap();
        self.run(&["contract", "sign", s(&out), "--key", s(&self.owner_key())])
            .ok();
        (out, next)
    }

    /// `nullos deploy FILE --key me.key --wait --json [--node HEX]`: exit 0, the final status.
    fn deploy(&self, file: &Path, node: Option<&str>) -> Value {
        let owner = self.owner_key();
        let mut args = vec!["deploy", s(file), "--key", s(&owner), "--wait", "--json"];
        if let Some(node) = node {
            args.extend(["--node", node]);
        }
        self.run(&args).ok().json()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The contract inside a contract file (its second line), verified.
fn contract_of(file: &Path) -> Contract {
    let text = std::fs::read_to_string(file).unwrap();
    let hex_doc = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("contract "))
        .unwrap_or_else(|| panic!("{}: no contract line", file.display()));
    trust::verify_named::<Contract>(&hex::decode(hex_doc).unwrap())
        .unwrap()
        .body
}

/// The state and exit code of the first workload in the latest report `nullos status --json`
/// shows, and its reason.
fn report(user: &User, id: &ContractId) -> Option<(String, Option<i64>, String)> {
    let v = user.status(&id.0.to_hex())?;
    let w = v["reports"].as_array()?.last()?["workloads"]
        .as_array()?
        .first()?
        .clone();
    Some((
        w["state"].as_str()?.to_owned(),
        w["exit_code"].as_i64(),
        w["reason"].as_str().unwrap_or("").to_owned(),
    ))
}

/// The notary's explorer page (`GET /`).
fn explorer(url: &str) -> String {
    let authority = url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The explorer's row of a node (its short id), if any.
fn explorer_row(url: &str, node: &PublicKey) -> Option<String> {
    let page = explorer(url);
    let short = node.short();
    page.split("<tr class=\"node\">")
        .find(|row| row.contains(&short))
        .map(|row| row.split("</tr>").next().unwrap_or("").to_owned())
}

/// A real notary, killed on drop (the one starter of every test suite).
use notary::test_support::{newest, TestNotary as Notary};

fn hello_binary() -> PathBuf {
    let path = repo_root().join("target/x86_64-unknown-linux-gnu/release/hello");
    assert!(
        path.is_file(),
        "{} is missing: run `make workloads`",
        path.display()
    );
    path
}

/// The example hello as a signed workload folder (root.img + workload.manifest).
fn hello_workload(root: &Path) -> PathBuf {
    let src = root.join("src/hello");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("workload.toml"),
        format!(
            r#"name = "hello"
version = 1
entrypoint = ["/bin/hello"]
vcpus = 1
memory_mib = 128
network = false
restart = "never"

[[volume]]
name = "data"
mount = "/data"
size_mib = 16

[files]
"/bin/hello" = "{}"
"#,
            hello_binary().display()
        ),
    )
    .unwrap();
    let key = keys::load_secret(&build_dir().join("keys/dev.key")).unwrap();
    let out = root.join("built/hello");
    image_builder::workload::build(&src, &out, &[key], 0).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// The dev profile naming this notary and farm, without baked workloads, USB or stage 0.
fn node_profile(root: &Path, notary: &Notary, farmer: &PublicKey) -> PathBuf {
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("notary.pub"), notary.key.to_text()).unwrap();
    std::fs::write(keys.join("farmer.pub"), farmer.to_text()).unwrap();
    let mut text = system_tests::profile_text_without(
        "dev",
        &[
            "[usb]",
            "[secure_boot]",
            "[stage0]",
            "[[workload]]",
            "[node]",
        ],
    );
    text.push_str(&format!(
        "\n[node]\nnotary = \"http://10.0.2.2:{}\"\nnotary_key = \"{}\"\nfarm = \"{}\"\n",
        notary.port(),
        keys.join("notary.pub").display(),
        keys.join("farmer.pub").display()
    ));
    let path = root.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Boots the node image with 2 CPUs, 2 GiB and the data disk.
fn boot_node(image: &Path, disk: &Path) -> Vm {
    boot_node_with(image, &[disk], "")
}

/// Boots the node image with 2 CPUs, 2 GiB, `disks` (virtio, in order: vda, vdb…) and `words`
/// added to its command line (as stage 0 adds the stick's).
fn boot_node_with(image: &Path, disks: &[&Path], words: &str) -> Vm {
    let accel = Accel::detect().unwrap_or_else(|e| panic!("{e}"));
    let mut boot: Boot = qemu::image::direct_boot(image).unwrap_or_else(|e| panic!("{e}"));
    if let Boot::Direct { cmdline, .. } = &mut boot {
        if !words.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(words);
        }
    }
    let mut cfg = VmConfig::new(boot, accel);
    cfg.memory_mib = 2048;
    cfg.cpus = 2;
    for disk in disks {
        cfg.extra_args.push("-drive".into());
        cfg.extra_args
            .push(format!("file={},if=virtio,format=raw", disk.display()).into());
    }
    Vm::start(cfg).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

/// The ext4 UUID of the data filesystem on `disk` (an image file), by the node's own rule.
fn data_disk_uuid(disk: &Path) -> interfaces::data_disk::FsUuid {
    let mut first = vec![0u8; 2048];
    std::io::Read::read_exact(&mut std::fs::File::open(disk).unwrap(), &mut first).unwrap();
    interfaces::data_disk::data_filesystem(&first)
        .unwrap_or_else(|| panic!("{} holds no NULLOS-DATA filesystem", disk.display()))
}

/// A disk labelled like the node's (ext4 `NULLOS-DATA`, by mke2fs) that is not its data disk.
fn lookalike_disk(root: &Path, name: &str) -> PathBuf {
    let disk = root.join(name);
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "NULLOS-DATA"])
        .arg(&disk)
        .output()
        .unwrap_or_else(|e| panic!("mke2fs (e2fsprogs, make deps) is needed: {e}"));
    assert!(out.status.success(), "mke2fs: {out:?}");
    disk
}

/// Waits for a console line containing `needle`; fails with the whole console.
fn wait_line(vm: &Vm, needle: &str) -> String {
    vm.wait_for_line(needle, TIMEOUT).unwrap_or_else(|e| {
        let console = vm.serial_text().unwrap_or_default();
        panic!("waiting for {needle:?}: {e}\n--- console ---\n{console}")
    })
}

/// How many console lines contain `needle`.
fn count_lines(vm: &Vm, needle: &str) -> usize {
    vm.serial_text()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Asks until `check` is true: the node reports on its own time (bounded by tries, not timed).
fn eventually(what: &str, vm: &Vm, mut check: impl FnMut() -> bool) {
    for _ in 0..2400 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "never: {what}\n--- console ---\n{}",
        vm.serial_text().unwrap_or_default()
    );
}

/// The tests of this file one at a time: each boots QEMU (two at once for self-healing).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A notary with the farm registered (`nullos farm register`) and hello pushed (`nullos push`),
/// and the node image naming both.
struct Grid {
    root: tempfile::TempDir,
    data: PathBuf,
    notary: Notary,
    user: User,
    hello: PathBuf,
    image: PathBuf,
}

/// `nullos push DIR --json`: the manifest's digest it printed, checked against the file's.
fn push(user: &User, dir: &Path) -> Digest {
    let pushed = user.run(&["push", s(dir), "--json"]).ok().json();
    let manifest = Digest::of(&std::fs::read(dir.join("workload.manifest")).unwrap());
    assert_eq!(pushed["manifest"], manifest.to_hex(), "{pushed}");
    manifest
}

fn grid() -> Grid {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("notary");
    std::fs::create_dir_all(&data).unwrap();
    let notary = Notary::start(&data, "127.0.0.1:0");
    let user = User::new(root.path(), &notary);
    user.run(&[
        "farm",
        "register",
        "--key",
        s(&user.farmer_key()),
        "--name",
        "system test farm",
    ])
    .ok();
    let hello = hello_workload(root.path());
    push(&user, &hello);
    let farmer = user.public(&user.farmer_key());
    let profile = node_profile(root.path(), &notary, &farmer);
    let config = BuildConfig::load(&profile).unwrap_or_else(|e| panic!("{e}"));
    let image = root.path().join("image");
    build(&config, &image, 0, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    Grid {
        root,
        data,
        notary,
        user,
        hello,
        image,
    }
}

/// An empty 256 MiB data disk.
fn data_disk(root: &Path, name: &str) -> PathBuf {
    let disk = root.join(name);
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    disk
}

/// The node as `nullos nodes --json` lists it.
fn listed(user: &User, node_hex: &str) -> Option<Value> {
    let run = user.run(&["nodes", "--json"]);
    if run.code != Some(0) {
        return None;
    }
    run.json()["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["key"] == node_hex)
        .cloned()
}

/// Waits for the node's ready line and registration, enrolls it with `nullos farm approve`,
/// waits until `nullos nodes --json` calls it live.
fn enroll(user: &User, vm: &Vm) -> String {
    let ready = wait_ready(vm);
    let node_hex = ready.get("node").cloned().unwrap_or_default();
    assert_eq!(
        node_hex.len(),
        64,
        "ready line without node=<id>: {ready:?}"
    );
    wait_line(vm, &format!("nullos: registered node={node_hex} "));
    user.run(&["farm", "approve", &node_hex, "--key", s(&user.farmer_key())])
        .ok();
    eventually("the node is live and enrolled", vm, || {
        listed(user, &node_hex).is_some_and(|n| n["live"] == true && n["approved"] == true)
    });
    node_hex
}

/// Whether `nullos nodes --json` calls the node live.
fn live(user: &User, node_hex: &str) -> Option<bool> {
    listed(user, node_hex)?["live"].as_bool()
}

/// The final status `deploy --wait --json` printed: done, placed on `node_hex`.
fn assert_deployed(status: &Value, node_hex: &str) {
    assert_eq!(status["state"], "done", "{status:#}");
    assert_eq!(status["placement"]["node"], node_hex, "{status:#}");
}

#[test]
fn a_contract_whose_node_died_runs_on_the_node_it_is_placed_on_next() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let g = grid();
    let a = boot_node(&g.image, &data_disk(g.root.path(), "a.img"));
    let b = boot_node(&g.image, &data_disk(g.root.path(), "b.img"));
    let a_hex = enroll(&g.user, &a);
    let b_hex = enroll(&g.user, &b);
    assert_ne!(a_hex, b_hex);

    let (file, c) = g.user.hello_contract("heal", &g.hello);
    let id = c.id();
    let id_hex = id.0.to_hex();
    let status = g.user.deploy(&file, Some(&a_hex));
    assert_deployed(&status, &a_hex);
    wait_line(
        &a,
        &format!("nullos: workload hello exited code=0 contract={id_hex}"),
    );

    // The owner's agent watches; node A loses power; its lease lapses; the agent re-places.
    let mut agent = g
        .user
        .command(&[
            "agent",
            "--key",
            s(&g.user.owner_key()),
            "--grace",
            "2",
            "--poll",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nullos agent");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let agent = Kill(&mut agent);
    a.kill().unwrap();
    eventually("node A's lease lapses", &b, || {
        live(&g.user, &a_hex) == Some(false)
    });
    wait_line(&b, &format!("nullos: contract {id_hex} version 1 accepted"));
    wait_line(
        &b,
        &format!("nullos: workload hello exited code=0 contract={id_hex}"),
    );
    // The agent said so, with the reason in the placement.
    let placed = BufReader::new(agent.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with(&format!("contract {id_hex}: placed on node ")))
        .unwrap_or_else(|| panic!("nullos agent ended without placing {id_hex}"));
    assert!(
        placed.contains("(placement 2, ")
            && placed.contains("stopped renewing its lease")
            && placed.contains(&a_hex[..8]),
        "{placed}"
    );
    eventually("B reports exited 0", &b, || {
        g.user.status(&id_hex).is_some_and(|v| {
            v["placement"]["node"] == b_hex.as_str()
                && v["reports"].as_array().is_some_and(|reports| {
                    reports.iter().any(|r| {
                        r["node"] == b_hex.as_str()
                            && r["workloads"][0]["state"] == "exited"
                            && r["workloads"][0]["exit_code"] == 0
                    })
                })
        })
    });
    drop(agent);
    drop(g.notary);
    let _ = b.kill();
}

#[test]
fn a_node_registers_pulls_verifies_runs_refuses_and_stops_contracts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Grid {
        root,
        data,
        mut notary,
        user,
        hello,
        image,
    } = grid();
    let farmer = user.public(&user.farmer_key());
    let disk = data_disk(root.path(), "data.img");

    let vm = boot_node(&image, &disk);
    let wait = |needle: &str| wait_line(&vm, needle);

    // 1. Ready, named, not listening; registered with its real capacity; enrolled; live in
    //    `nullos nodes` and on the explorer.
    let ready = wait_ready(&vm);
    assert_eq!(
        ready.get("listening").map(String::as_str),
        Some("0"),
        "{ready:?}"
    );
    let node_hex = ready.get("node").cloned().unwrap_or_default();
    assert_eq!(
        node_hex.len(),
        64,
        "ready line without node=<id>: {ready:?}"
    );
    let node = PublicKey::from_text(&format!("nullos-ed25519 {node_hex}")).unwrap();
    let registered = fields(&wait(&format!("nullos: registered node={node_hex} ")));
    assert_eq!(registered["farm"], hex::encode(farmer.as_bytes()));
    assert_eq!(
        registered["notary"],
        format!("http://10.0.2.2:{}", notary.port())
    );
    assert_eq!(registered["cpus"], "2", "-smp 2: {registered:?}");
    let memory: u64 = registered["memory_mib"].parse().unwrap();
    assert!(
        (1800..=2048).contains(&memory),
        "-m 2048, the kernel keeps a little: {memory}"
    );
    assert_eq!(
        registered["disk_mib"], "256",
        "the 256 MiB data disk: {registered:?}"
    );
    assert_eq!(enroll(&user, &vm), node_hex);
    let listed_node = listed(&user, &node_hex).unwrap();
    assert_eq!(listed_node["farm"], hex::encode(farmer.as_bytes()));
    assert_eq!(listed_node["capacity"]["cpus"], 2, "{listed_node}");
    assert_eq!(
        listed_node["capacity"]["memory_mib"], memory,
        "{listed_node}"
    );
    assert_eq!(listed_node["capacity"]["disk_mib"], 256, "{listed_node}");
    let row = explorer_row(&notary.url, &node)
        .unwrap_or_else(|| panic!("node {node_hex} not on the explorer page"));
    assert!(
        row.contains("<td class=\"up\">up</td>") && row.contains("<td>yes</td>"),
        "{row}"
    );

    // 2. `nullos deploy --wait` of hello: pulled, verified, run; exited 0, reported.
    let (file, c) = user.hello_contract("hello", &hello);
    let id = c.id();
    let id_hex = id.0.to_hex();
    let status = user.deploy(&file, None);
    assert_deployed(&status, &node_hex);
    assert_eq!(status["id"], id_hex.as_str(), "{status:#}");
    wait(&format!("nullos: contract {id_hex} version 1 accepted"));
    wait(&format!(
        "nullos: workload hello exited code=0 contract={id_hex}"
    ));
    eventually("the report says exited 0", &vm, || {
        report(&user, &id).is_some_and(|(s, code, _)| s == "exited" && code == Some(0))
    });
    wait("[hello] hello: counter=1");
    // Its last console lines are in the report sealed to the owner: `nullos logs` opens them with
    // the owner's key, and refuses the farmer's.
    let logs = user
        .run(&["logs", &id_hex, "--key", s(&user.owner_key())])
        .ok();
    assert!(
        logs.stdout.lines().any(|l| l == "hello: counter=1"),
        "{logs:#?}"
    );
    let other = user.run(&["logs", &id_hex, "--key", s(&user.farmer_key())]);
    assert_eq!(other.code, Some(2), "{other:#?}");

    // 2b. A new version replaces it and keeps its volume: the counter goes on.
    let (file2, c2) = user.next_version(&file, "hello-v2");
    assert_eq!((c2.id(), c2.version), (id, 2));
    let status = user.deploy(&file2, None);
    assert_deployed(&status, &node_hex);
    assert_eq!(status["version"], 2, "{status:#}");
    wait(&format!("nullos: contract {id_hex} version 2 accepted"));
    wait("[hello] hello: counter=2");
    eventually("version 2 exited 0 and is reported", &vm, || {
        count_lines(
            &vm,
            &format!("nullos: workload hello exited code=0 contract={id_hex}"),
        ) == 2
            && user.status(&id_hex).is_some_and(|v| {
                v["reports"]
                    .as_array()
                    .and_then(|r| r.last())
                    .is_some_and(|r| {
                        r["version"] == 2
                            && r["workloads"][0]["state"] == "exited"
                            && r["workloads"][0]["exit_code"] == 0
                    })
            })
    });

    // 2c. The notary goes down and comes back: one line each way, and the node re-syncs (the
    // steps below go through the restarted notary).
    let port = notary.port();
    drop(notary);
    wait(&format!(
        "nullos: notary http://10.0.2.2:{port} unreachable"
    ));
    // It comes back misbehaving: `--rules unchecked` admits what the grid's rules refuse
    // (the notary is trusted for availability, not integrity: docs/NOTARY.md).
    notary = Notary::start_with(
        &data,
        &format!("127.0.0.1:{port}"),
        &["--rules", "unchecked", "--allow-unchecked"],
    );
    wait(&format!(
        "nullos: notary http://10.0.2.2:{port} reachable again"
    ));
    assert_eq!(
        count_lines(&vm, "nullos: notary http://10.0.2.2:"),
        2,
        "one line per change of state, not per try"
    );

    // 2d. What only such a notary would pass on, each refused by the node with its own line
    // and report, nothing run. Written by hand: `nullos` refuses to write either.
    let client = Client::new(&notary.url, &notary.key).unwrap();
    let owner_sk = keys::load_secret(&user.owner_key()).unwrap();
    let stranger = SecretKey::from_seed([77; 32]);
    let submit = |doc: trust::SignedDocument| {
        client
            .submit(&doc.encode())
            .unwrap_or_else(|e| panic!("the unchecked notary refused {:?}: {e}", doc.kind()))
    };
    let sign = |doc: &mut trust::SignedDocument, key: &SecretKey| {
        doc.sign(key).unwrap();
        doc.clone()
    };
    let approve = |c: &Contract| Approval {
        version: c.version,
        contract: c.id(),
        body: c.body_digest(),
        stakeholder: owner_sk.public(),
    };
    //  - one approval short: two stakeholders of weight 1, threshold 2, only the owner signed.
    let short = Contract {
        stakeholders: SignerPolicy {
            threshold: 2,
            members: vec![
                PolicyMember {
                    name: "owner".into(),
                    key: owner_sk.public(),
                    weight: 1,
                    required: false,
                },
                PolicyMember {
                    name: "security".into(),
                    key: stranger.public(),
                    weight: 1,
                    required: false,
                },
            ],
        },
        ..c.clone()
    };
    //  - placed by someone other than the owner (who registered and approved it).
    let not_owners = Contract {
        constraints: trust::grid::Constraints {
            min_cpus: 2,
            ..c.constraints.clone()
        },
        ..c.clone()
    };
    for (contract, placer, why) in [
        (
            &short,
            &owner_sk,
            "stakeholder policy not met: approved weight 1 is below threshold 2",
        ),
        (&not_owners, &stranger, "not by the contract's owner"),
    ] {
        let cid = contract.id();
        let cid_hex = cid.0.to_hex();
        submit(sign(&mut contract.to_document(), &owner_sk));
        submit(sign(&mut approve(contract).to_document(), &owner_sk));
        submit(sign(
            &mut Placement {
                sequence: 1,
                contract: cid,
                version: 1,
                node,
                owner: placer.public(),
                reason: "system test: a bad placement".into(),
            }
            .to_document(),
            placer,
        ));
        let line = wait(&format!("nullos: contract {cid_hex} version 1 refused "));
        assert!(line.contains(why), "{line}");
        eventually("the refusal is reported", &vm, || {
            report(&user, &cid).is_some_and(|(s, _, reason)| s == "refused" && reason.contains(why))
        });
        assert!(
            !vm.serial_text()
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(&format!("contract={cid_hex}"))),
            "nothing of contract {cid_hex} ran"
        );
        // Placed, they count against the node's room: their owner cancels them.
        user.run(&["cancel", &cid_hex, "--key", s(&user.owner_key())])
            .ok();
    }

    // 3. An artifact whose bytes in the blob store no longer match its digest.
    let bad_dir = root.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let mut bad_root = std::fs::read(hello.join("root.img")).unwrap();
    let n = bad_root.len();
    bad_root[n - 1] ^= 0x5a; // another root image (its last byte differs)...
    std::fs::write(bad_dir.join("root.img"), &bad_root).unwrap();
    let dev_key = keys::load_secret(&build_dir().join("keys/dev.key")).unwrap();
    let mut m = trust::verify_workload(
        &std::fs::read(hello.join("workload.manifest")).unwrap(),
        &SignerPolicy::single(dev_key.public()),
    )
    .unwrap();
    m.root = trust::ArtifactRef::of(&bad_root);
    let mut doc = m.to_document();
    doc.sign(&dev_key).unwrap();
    std::fs::write(bad_dir.join("workload.manifest"), doc.encode()).unwrap();
    push(&user, &bad_dir);
    let bad_root_digest = Digest::of(&bad_root);
    // ...then altered in the notary's store: the node must catch it while it downloads.
    let stored = data.join("blobs").join(bad_root_digest.to_hex());
    let mut altered = std::fs::read(&stored).unwrap();
    altered[0] ^= 1;
    std::fs::write(&stored, &altered).unwrap();
    let (bad_file, bad) = user.hello_contract("bad", &bad_dir);
    let bad_id = bad.id();
    let bad_hex = bad_id.0.to_hex();
    let owner = user.owner_key();
    let refused_deploy = user.run(&["deploy", s(&bad_file), "--key", s(&owner), "--wait"]);
    assert_eq!(refused_deploy.code, Some(1), "{refused_deploy:#?}");
    assert!(
        refused_deploy.stderr.contains("refused workload hello")
            && refused_deploy.stderr.contains("arrived with digest"),
        "{refused_deploy:#?}"
    );
    let refused = wait(&format!("nullos: contract {bad_hex} version 1 refused "));
    assert!(
        refused.contains(&format!(
            "blob {bad_root_digest} arrived with digest {}",
            Digest::of(&altered)
        )),
        "{refused}"
    );
    eventually("the refusal is reported", &vm, || {
        report(&user, &bad_id)
            .is_some_and(|(s, _, reason)| s == "refused" && reason.contains("arrived with digest"))
    });
    // Workload lines name their contract: none names this one.
    assert!(
        !vm.serial_text()
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!("contract={bad_hex}"))),
        "nothing of the refused contract ran"
    );

    // 3b. The node reboots with its data disk: the same id, and what is still placed here runs
    // again without being re-told (its volume's counter goes on). The disk is pinned by its UUID
    // (`nullos.data=`, as stage 0 passes the one its stick records), and a second disk labelled
    // like ours is there first: refused with one line, not claimed.
    vm.powerdown().unwrap();
    vm.wait_exit(TIMEOUT).unwrap();
    drop(vm);
    let pinned = data_disk_uuid(&disk);
    let lookalike = lookalike_disk(root.path(), "lookalike.img");
    let other = data_disk_uuid(&lookalike);
    let vm = boot_node_with(
        &image,
        &[&lookalike, &disk],
        &format!("nullos.data={pinned}"),
    );
    let wait = |needle: &str| wait_line(&vm, needle);
    let again = wait_ready(&vm);
    wait(&format!(
        "init: warn: disks labelled NULLOS-DATA refused: /dev/vda ({other}): not the pinned data disk {pinned}"
    ));
    wait("init: info: data disk /dev/vdb mounted at /var/lib/nullos");
    assert_eq!(
        again.get("node"),
        Some(&node_hex),
        "the key on the data disk is reused"
    );
    wait(&format!("nullos: contract {id_hex} version 2 accepted"));
    wait("[hello] hello: counter=3");
    assert_eq!(
        count_lines(
            &vm,
            &format!("nullos: contract {bad_hex} version 1 refused")
        ),
        1,
        "the refused contract is refused again, not run"
    );

    // 4. `nullos cancel`: stopped, volumes removed, reported.
    user.run(&[
        "cancel",
        &id_hex,
        "--key",
        s(&owner),
        "--reason",
        "system test done",
    ])
    .ok();
    wait(&format!("nullos: contract {id_hex} version 2 stopped"));
    eventually("the stop is reported", &vm, || {
        report(&user, &id).is_some_and(|(s, _, _)| s == "stopped")
    });
    assert_eq!(user.status(&id_hex).unwrap()["cancelled"], true);

    // 5. The same key, another log: the node keeps its checkpoint and refuses the new one.
    drop(notary);
    let other = root.path().join("notary2");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(data.join("notary.key"), other.join("notary.key")).unwrap();
    notary = Notary::start(&other, &format!("127.0.0.1:{port}"));
    let line = wait("nullos: notary checkpoint refused: ");
    assert!(line.contains("is older than the kept one"), "{line}");
    drop(notary);
    let _ = vm.kill();
}
