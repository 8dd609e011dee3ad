//! Nodes join the grid (issue 13), end to end: a real `nullos-notary serve` on the host (grid
//! rules, temporary redb), a dev node under QEMU (TCG) whose image names that notary
//! (`http://10.0.2.2:<port>`, QEMU's user network), its pinned key and a farm. The test plays
//! the farmer and the contract's owner with `trust::grid` documents and `notary-client`.
//!
//! Two boots (the second a reboot), shared by the assertions in order (TCG boots are slow):
//! 1. the node is ready with `node=<id>` and no listening socket, registers with the capacity it
//!    was given (`-smp 2`, `-m 2048`, a 256 MiB data disk) and is live in `/v1/nodes`;
//! 2. a placed hello contract is pulled, verified, run in a micro-VM; the report says exited 0;
//!    a new version replaces it and its volume's counter goes on; the notary goes down and comes
//!    back (one console line each way) and the node re-syncs;
//! 3. a contract whose root image blob no longer matches its digest in the notary's store is
//!    refused, with its console line and report, and nothing of it runs; then the node reboots
//!    with its data disk: same id, the placed version runs again unasked;
//! 4. cancelling the first stops it and removes its volumes;
//! 5. a notary restarted with the same key but another log (the kept checkpoint cannot be
//!    extended) is refused with one console line.
//!
//! Needs `make image`'s parts (kernel, sysroot, init, vmm, `make workloads`' hello) and the
//! notary binary (`cargo build --release -p notary`); a missing one fails, naming it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use image_builder::build::{build, Quiet};
use image_builder::config::BuildConfig;
use image_builder::keys;
use notary_client::Client;
use qemu::{Accel, Boot, Vm, VmConfig};
use serde_json::Value;
use system_tests::{build_dir, fields, repo_root, wait_ready};
use trust::grid::{
    Approval, Cancellation, Constraints, Contract, ContractId, ContractWorkload, Egress,
    Enrollment, Farm, Placement, Previous, VolumeClaim,
};
use trust::{Digest, NamedSigner, PublicKey, SecretKey, SignerPolicy};

/// Nested boots are slow under TCG.
const TIMEOUT: Duration = Duration::from_secs(480);

const FARMER: u8 = 41;
const OWNER: u8 = 42;

fn sk(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

fn signed<B: NamedSigner>(body: &B, seed: u8) -> Vec<u8> {
    let mut d = body.to_document();
    d.sign(&sk(seed)).unwrap();
    d.encode()
}

/// A real notary, killed on drop.
struct Notary {
    child: Child,
    url: String,
    key: PublicKey,
}

impl Notary {
    fn start(data: &Path, listen: &str) -> Notary {
        let binary = repo_root().join("target/release/nullos-notary");
        assert!(
            binary.is_file(),
            "{} is missing: run `cargo build --release -p notary`",
            binary.display()
        );
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let rest = line
            .trim()
            .strip_prefix("nullos-notary listening on ")
            .unwrap_or_else(|| panic!("unexpected notary line {line:?}"));
        let (url, key) = rest.split_once(" key ").unwrap();
        Notary {
            child,
            url: url.to_owned(),
            key: PublicKey::from_text(key).unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Notary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
fn node_profile(root: &Path, notary: &Notary) -> PathBuf {
    let repo = repo_root();
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("notary.pub"), notary.key.to_text()).unwrap();
    std::fs::write(keys.join("farmer.pub"), sk(FARMER).public().to_text()).unwrap();
    let mut text = std::fs::read_to_string(repo.join("profiles/dev.toml")).unwrap();
    text = text.replace("\"../", &format!("\"{}/", repo.display()));
    let cut = |t: &str, section: &str| match t.find(section) {
        Some(start) => {
            let rest = &t[start + section.len()..];
            let end = rest
                .find("\n[")
                .map_or(t.len(), |e| start + section.len() + e + 1);
            format!("{}{}", &t[..start], &t[end..])
        }
        None => t.to_owned(),
    };
    for section in ["[usb]", "[stage0]", "[[workload]]", "[node]"] {
        while text.contains(section) {
            text = cut(&text, section);
        }
    }
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

fn push(client: &Client, path: &Path) -> Digest {
    let bytes = std::fs::read(path).unwrap();
    let digest = Digest::of(&bytes);
    client
        .put_blob(&digest, bytes.len() as u64, &mut &bytes[..])
        .unwrap();
    digest
}

fn contract(manifest: Digest, tag: &str) -> Contract {
    Contract {
        version: 1,
        supersedes: None,
        owner: sk(OWNER).public(),
        stakeholders: SignerPolicy::single(sk(OWNER).public()),
        workloads: vec![ContractWorkload {
            name: "hello".into(),
            manifest,
            vcpus: 1,
            memory_mib: 128,
            volumes: vec![VolumeClaim {
                name: "data".into(),
                size_mib: 16,
            }],
            egress: Egress::None,
            env: vec![("HELLO_TAG".into(), tag.into())],
        }],
        constraints: Constraints {
            farms: vec![sk(FARMER).public()],
            min_memory_mib: 0,
            min_cpus: 0,
            copies: 1,
        },
    }
}

fn deploy(client: &Client, c: &Contract, sequence: u64, node: PublicKey) {
    client.submit(&signed(c, OWNER)).unwrap();
    let approval = Approval {
        version: c.version,
        contract: c.id(),
        body: c.body_digest(),
        stakeholder: sk(OWNER).public(),
    };
    client.submit(&signed(&approval, OWNER)).unwrap();
    let placement = Placement {
        sequence,
        contract: c.id(),
        version: c.version,
        node,
        owner: c.owner,
        reason: "system test".into(),
    };
    client
        .submit(&signed(&placement, OWNER))
        .unwrap_or_else(|e| panic!("placement refused: {e}"));
}

/// The state and exit code of the first workload in the contract's latest report.
fn report(client: &Client, id: &ContractId) -> Option<(String, Option<i64>, String)> {
    let v: Value = client.contract(id).ok()?;
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

/// Boots the node image with 2 CPUs, 2 GiB and the data disk.
fn boot_node(image: &Path, disk: &Path) -> Vm {
    let accel = Accel::detect().unwrap_or_else(|e| panic!("{e}"));
    let boot: Boot = qemu::image::direct_boot(image).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = VmConfig::new(boot, accel);
    cfg.memory_mib = 2048;
    cfg.cpus = 2;
    cfg.extra_args.push("-drive".into());
    cfg.extra_args
        .push(format!("file={},if=virtio,format=raw", disk.display()).into());
    Vm::start(cfg).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
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

/// A notary with the farm registered and hello's blobs pushed, and the node image naming it.
struct Grid {
    root: tempfile::TempDir,
    data: PathBuf,
    notary: Notary,
    client: Client,
    hello: PathBuf,
    manifest: Digest,
    image: PathBuf,
}

fn grid() -> Grid {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("notary");
    std::fs::create_dir_all(&data).unwrap();
    let notary = Notary::start(&data, "127.0.0.1:0");
    let client = Client::new(&notary.url, &notary.key).unwrap();
    client
        .submit(&signed(
            &Farm {
                version: 1,
                farmer: sk(FARMER).public(),
                name: "system test farm".into(),
            },
            FARMER,
        ))
        .unwrap();
    let hello = hello_workload(root.path());
    let manifest = push(&client, &hello.join("workload.manifest"));
    push(&client, &hello.join("root.img"));
    let profile = node_profile(root.path(), &notary);
    let config = BuildConfig::load(&profile).unwrap_or_else(|e| panic!("{e}"));
    let image = root.path().join("image");
    build(&config, &image, 0, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    Grid {
        root,
        data,
        notary,
        client,
        hello,
        manifest,
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

/// Waits for the node's ready line, enrolls it with the farm, waits until it is live.
fn enroll(client: &Client, vm: &Vm) -> (PublicKey, String) {
    let ready = wait_ready(vm);
    let node_hex = ready.get("node").cloned().unwrap_or_default();
    let node = PublicKey::from_text(&format!("nullos-ed25519 {node_hex}"))
        .unwrap_or_else(|_| panic!("ready line without node=<id>: {ready:?}"));
    wait_line(vm, &format!("nullos: registered node={node_hex} "));
    client
        .submit(&signed(
            &Enrollment {
                sequence: 1,
                farmer: sk(FARMER).public(),
                node,
                enrolled: true,
            },
            FARMER,
        ))
        .unwrap();
    eventually("the node is live", vm, || {
        live(client, &node_hex) == Some(true)
    });
    (node, node_hex)
}

/// Whether the notary's directory calls the node live.
fn live(client: &Client, node_hex: &str) -> Option<bool> {
    let nodes = client.nodes().ok()?;
    let node = nodes["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["key"].as_str().is_some_and(|k| k.contains(node_hex)))?
        .clone();
    node["live"].as_bool()
}

#[test]
fn a_contract_whose_node_died_runs_on_the_node_it_is_placed_on_next() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let g = grid();
    let a = boot_node(&g.image, &data_disk(g.root.path(), "a.img"));
    let b = boot_node(&g.image, &data_disk(g.root.path(), "b.img"));
    let (node_a, a_hex) = enroll(&g.client, &a);
    let (node_b, b_hex) = enroll(&g.client, &b);
    assert_ne!(a_hex, b_hex);

    let c = contract(g.manifest, "heal");
    let id = c.id();
    let id_hex = id.0.to_hex();
    deploy(&g.client, &c, 1, node_a);
    wait_line(
        &a,
        &format!("nullos: workload hello exited code=0 contract={id_hex}"),
    );

    // Node A loses power; its lease lapses.
    a.kill().unwrap();
    eventually("node A's lease lapses", &b, || {
        live(&g.client, &a_hex) == Some(false)
    });
    // What the owner's agent does then (`nullos agent`): a newer placement on a live node.
    let heal = Placement {
        sequence: 2,
        contract: id,
        version: 1,
        node: node_b,
        owner: c.owner,
        reason: format!("node {a_hex} stopped renewing its lease"),
    };
    g.client
        .submit(&signed(&heal, OWNER))
        .unwrap_or_else(|e| panic!("re-placement refused: {e}"));
    wait_line(&b, &format!("nullos: contract {id_hex} version 1 accepted"));
    wait_line(
        &b,
        &format!("nullos: workload hello exited code=0 contract={id_hex}"),
    );
    eventually("B reports exited 0", &b, || {
        let v: Value = match g.client.contract(&id) {
            Ok(v) => v,
            Err(_) => return false,
        };
        v["reports"].as_array().is_some_and(|reports| {
            reports.iter().any(|r| {
                r["node"].as_str().is_some_and(|n| n.contains(&b_hex))
                    && r["workloads"][0]["state"] == "exited"
                    && r["workloads"][0]["exit_code"] == 0
            })
        })
    });
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
        client,
        hello,
        manifest,
        image,
    } = grid();
    let farmer = sk(FARMER).public();
    let disk = data_disk(root.path(), "data.img");

    let vm = boot_node(&image, &disk);
    let wait = |needle: &str| wait_line(&vm, needle);

    // 1. Ready, named, not listening; registered with its real capacity; live.
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
    eventually("the node is live in /v1/nodes", &vm, || {
        let nodes = client.nodes().unwrap();
        nodes["nodes"].as_array().unwrap().iter().any(|n| {
            n["key"].as_str().is_some_and(|k| k.contains(&node_hex))
                && n["live"] == Value::Bool(true)
                && n["capacity"]["cpus"] == 2
                && n["capacity"]["disk_mib"] == 256
        })
    });
    client
        .submit(&signed(
            &Enrollment {
                sequence: 1,
                farmer,
                node,
                enrolled: true,
            },
            FARMER,
        ))
        .unwrap();

    // 2. Hello, placed: pulled, verified, run; exited 0, reported.
    let c = contract(manifest, "one");
    let id = c.id();
    let id_hex = id.0.to_hex();
    deploy(&client, &c, 1, node);
    wait(&format!("nullos: contract {id_hex} version 1 accepted"));
    wait(&format!(
        "nullos: workload hello exited code=0 contract={id_hex}"
    ));
    eventually("the report says exited 0", &vm, || {
        report(&client, &id).is_some_and(|(s, code, _)| s == "exited" && code == Some(0))
    });
    wait("[hello] hello: counter=1");

    // 2b. A new version replaces it and keeps its volume: the counter goes on.
    let c2 = Contract {
        version: 2,
        supersedes: Some(Previous {
            contract: id,
            body: c.body_digest(),
        }),
        ..contract(manifest, "two")
    };
    deploy(&client, &c2, 2, node);
    wait(&format!("nullos: contract {id_hex} version 2 accepted"));
    wait("[hello] hello: counter=2");
    eventually("version 2 exited 0 and is reported", &vm, || {
        count_lines(
            &vm,
            &format!("nullos: workload hello exited code=0 contract={id_hex}"),
        ) == 2
            && report(&client, &id).is_some_and(|(s, code, _)| s == "exited" && code == Some(0))
    });

    // 2c. The notary goes down and comes back: one line each way, and the node re-syncs (the
    // steps below go through the restarted notary).
    let port = notary.port();
    drop(notary);
    wait(&format!(
        "nullos: notary http://10.0.2.2:{port} unreachable"
    ));
    notary = Notary::start(&data, &format!("127.0.0.1:{port}"));
    wait(&format!(
        "nullos: notary http://10.0.2.2:{port} reachable again"
    ));
    assert_eq!(
        count_lines(&vm, "nullos: notary http://10.0.2.2:"),
        2,
        "one line per change of state, not per try"
    );

    // 3. An artifact whose bytes in the blob store no longer match its digest.
    let bad_dir = root.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let mut bad_root = std::fs::read(hello.join("root.img")).unwrap();
    let n = bad_root.len();
    bad_root[n - 1] ^= 0x5a; // another root image (its last byte differs)...
    std::fs::write(bad_dir.join("root.img"), &bad_root).unwrap();
    let mut m = trust::verify_workload(
        &std::fs::read(hello.join("workload.manifest")).unwrap(),
        &SignerPolicy::single(
            keys::load_secret(&build_dir().join("keys/dev.key"))
                .unwrap()
                .public(),
        ),
    )
    .unwrap();
    m.root = trust::ArtifactRef::of(&bad_root);
    let mut doc = m.to_document();
    doc.sign(&keys::load_secret(&build_dir().join("keys/dev.key")).unwrap())
        .unwrap();
    std::fs::write(bad_dir.join("workload.manifest"), doc.encode()).unwrap();
    let bad_manifest = push(&client, &bad_dir.join("workload.manifest"));
    let bad_root_digest = push(&client, &bad_dir.join("root.img"));
    // ...then altered in the notary's store: the node must catch it while it downloads.
    let stored = data.join("blobs").join(bad_root_digest.to_hex());
    let mut altered = std::fs::read(&stored).unwrap();
    altered[0] ^= 1;
    std::fs::write(&stored, &altered).unwrap();
    let bad = contract(bad_manifest, "bad");
    let bad_id = bad.id();
    let bad_hex = bad_id.0.to_hex();
    deploy(&client, &bad, 1, node);
    let refused = wait(&format!("nullos: contract {bad_hex} version 1 refused "));
    assert!(
        refused.contains(&format!(
            "blob {bad_root_digest} arrived with digest {}",
            Digest::of(&altered)
        )),
        "{refused}"
    );
    eventually("the refusal is reported", &vm, || {
        report(&client, &bad_id)
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
    // again without being re-told (its volume's counter goes on).
    vm.powerdown().unwrap();
    vm.wait_exit(TIMEOUT).unwrap();
    drop(vm);
    let vm = boot_node(&image, &disk);
    let wait = |needle: &str| wait_line(&vm, needle);
    let again = wait_ready(&vm);
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

    // 4. Cancel: stopped, volumes removed, reported.
    client
        .submit(&signed(
            &Cancellation {
                version: 2,
                contract: id,
                owner: c.owner,
                reason: "system test done".into(),
            },
            OWNER,
        ))
        .unwrap();
    wait(&format!("nullos: contract {id_hex} version 2 stopped"));
    eventually("the stop is reported", &vm, || {
        report(&client, &id).is_some_and(|(s, _, _)| s == "stopped")
    });

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
