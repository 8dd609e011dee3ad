//! The node's grid loop against a real `nullos-notary serve` (grid rules, a temporary redb
//! data folder) with a fake runner: the test plays the farmer and the contract's owner with
//! `trust::grid` documents and `notary-client`, and drives the node's pull loop round by round.
//!
//! Needs the notary binary beside this test's (`cargo build --release -p notary`); it fails,
//! naming it, when the binary is missing.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grid_node::{Console, ConsoleTail, Deployment, Outgoing, Reports, Runner, Settings};
use notary_client::Client;
use serde_json::Value;
use trust::grid::sealed;
use trust::grid::{
    Approval, Cancellation, Capacity, Constraints, Contract, ContractId, ContractWorkload, Disk,
    Egress, Enrollment, Farm, Placement, Previous, StatusReport, VolumeClaim, WorkloadState,
    WorkloadStatus,
};
use trust::{verify_named, ArtifactRef, Digest, NamedSigner, PublicKey, SecretKey, SignerPolicy};

const FARMER: u8 = 1;
const OWNER: u8 = 2;

fn sk(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

fn signed<B: NamedSigner>(body: &B, seed: u8) -> Vec<u8> {
    let mut d = body.to_document();
    d.sign(&sk(seed)).unwrap();
    d.encode()
}

/// A real notary process, killed on drop (the one starter of every test suite).
use notary::test_support::TestNotary as Notary;

/// The console's lines, kept.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Console for Lines {
    fn line(&self, text: &str) {
        eprintln!("console: {text}");
        self.0.lock().unwrap().push(text.to_owned());
    }
    fn debug(&self, text: &str) {
        eprintln!("debug: {text}");
    }
}

impl Lines {
    fn has(&self, line: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l == line)
    }
    fn starting(&self, prefix: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ran {
    Start(ContractId, u64, Vec<u8>),
    Stop(ContractId, bool),
}

/// Records what the loop asks, and reports each workload as running, then exited with 0.
#[derive(Clone, Default)]
struct FakeRunner(Arc<Mutex<Vec<Ran>>>);

impl Runner for FakeRunner {
    fn start(&mut self, deployment: Deployment, reports: Reports) -> Result<(), String> {
        let root = std::fs::read(&deployment.workloads[0].root).map_err(|e| e.to_string())?;
        self.0
            .lock()
            .unwrap()
            .push(Ran::Start(deployment.contract, deployment.version, root));
        for w in &deployment.workloads {
            for (state, exit_code) in [
                (WorkloadState::Running, None),
                (WorkloadState::Exited, Some(0)),
            ] {
                reports.send(Outgoing::Workload {
                    contract: deployment.contract,
                    version: deployment.version,
                    status: WorkloadStatus {
                        name: w.spec.name.clone(),
                        state,
                        exit_code,
                        restarts: 0,
                        reason: String::new(),
                        tail: None,
                    },
                    // The supervisor hands over the console's last lines when the VM ends.
                    console: exit_code.map(|_| ConsoleTail {
                        owner: deployment.owner,
                        text: format!(
                            "{}: version {}\n{}: bye",
                            w.spec.name, deployment.version, w.spec.name
                        ),
                    }),
                });
            }
        }
        Ok(())
    }

    fn stop(&mut self, contract: &ContractId, remove_volumes: bool) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push(Ran::Stop(*contract, remove_volumes));
        Ok(())
    }
}

impl FakeRunner {
    fn log(&self) -> Vec<Ran> {
        self.0.lock().unwrap().clone()
    }
}

fn capacity() -> Capacity {
    Capacity {
        cpus: 2,
        memory_mib: 2048,
        disks: vec![Disk {
            name: "vdb".into(),
            size_mib: 1024,
        }],
        nics: vec![],
    }
}

/// Asks `check` until it says yes (the outbox sends on its own thread); fails after a generous
/// number of tries, never on how long one took.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never: {what}");
}

/// A signed workload manifest whose root image is `root`; returns the manifest file's bytes.
fn manifest(root: &[u8]) -> Vec<u8> {
    let m = trust::WorkloadManifest {
        format: trust::WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 1,
        root: ArtifactRef::of(root),
        kernel: None,
        initrd: None,
        entrypoint: vec!["/bin/hello".into()],
        env: vec![],
        workdir: "/".into(),
        vcpus: 1,
        memory_mib: 64,
        volumes: vec![trust::VolumeSpec {
            name: "data".into(),
            mount: "/data".into(),
            size_mib: 16,
        }],
        network: false,
        restart: trust::RestartPolicy::Never,
    };
    let mut d = m.to_document();
    d.sign(&sk(9)).unwrap();
    d.encode()
}

fn push(client: &Client, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
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
            memory_mib: 64,
            volumes: vec![VolumeClaim {
                name: "data".into(),
                size_mib: 16,
            }],
            egress: Egress::None,
            env: vec![("TAG".into(), tag.into())],
        }],
        constraints: Constraints {
            farms: vec![],
            min_memory_mib: 0,
            min_cpus: 0,
            copies: 1,
        },
    }
}

/// Logs the contract version and the owner's approval, and places it on `node`.
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
        reason: "test".into(),
    };
    client.submit(&signed(&placement, OWNER)).unwrap();
}

/// The latest report's first workload as the notary's directory shows it.
fn report_state(client: &Client, id: &ContractId) -> Option<(u64, String, Option<i64>)> {
    let v: Value = client.contract(id).ok()?;
    let report = v["reports"].as_array()?.last()?.clone();
    let w = report["workloads"].as_array()?.first()?.clone();
    Some((
        report["version"].as_u64()?,
        w["state"].as_str()?.to_owned(),
        w["exit_code"].as_i64(),
    ))
}

/// The newest status report on contract `id` in the log.
fn latest_report(client: &Client, id: &ContractId) -> StatusReport {
    let key = format!("contract/{}", id.0.to_hex());
    client
        .wait(&key, None, Duration::ZERO)
        .unwrap()
        .into_iter()
        .filter_map(|(_, bytes)| verify_named::<StatusReport>(&bytes).ok())
        .map(|opened| opened.body)
        .max_by_key(|r| r.sequence)
        .expect("a status report in the log")
}

fn join(
    notary: &Notary,
    state: &Path,
    console: Arc<Lines>,
    runner: FakeRunner,
) -> grid_node::Joined {
    let mut settings = Settings::new(&notary.url, notary.key, sk(FARMER).public());
    settings.lease_secs = 60;
    grid_node::join(
        settings,
        state,
        console,
        Box::new(runner),
        Box::new(|| Some(capacity())),
    )
    .unwrap()
}

#[test]
fn a_node_registers_runs_replaces_resumes_refuses_and_stops_against_a_real_notary() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let notary = Notary::start(data.path(), "127.0.0.1:0");
    let client = Client::new(&notary.url, &notary.key).unwrap();
    let farmer = sk(FARMER).public();
    let farm = Farm {
        version: 1,
        farmer,
        name: "test farm".into(),
    };
    client.submit(&signed(&farm, FARMER)).unwrap();

    // The node registers with its capacity and renews its lease.
    let console = Arc::new(Lines::default());
    let runner = FakeRunner::default();
    let joined = join(&notary, state.path(), console.clone(), runner.clone());
    let node = joined.node;
    let node_hex = hex::encode(node.as_bytes());
    let mut pull = joined.pull;
    pull.round(Duration::from_secs(1)).unwrap();
    eventually("the node is live in /v1/nodes", || {
        let nodes = client.nodes().unwrap();
        nodes["nodes"].as_array().unwrap().iter().any(|n| {
            n["key"].as_str().is_some_and(|k| k.contains(&node_hex))
                && n["live"] == Value::Bool(true)
                && n["capacity"]["cpus"] == 2
                && n["capacity"]["memory_mib"] == 2048
                && n["capacity"]["disk_mib"] == 1024
        })
    });
    assert_eq!(
        console.starting("nullos: registered "),
        [format!(
            "nullos: registered node={node_hex} farm={} notary={} cpus=2 memory_mib=2048 disk_mib=1024",
            hex::encode(farmer.as_bytes()),
            notary.url
        )]
    );
    assert_eq!(
        std::fs::metadata(state.path().join("node.key"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap(),
        0o600
    );
    let enrollment = Enrollment {
        sequence: 1,
        farmer,
        node,
        enrolled: true,
    };
    client.submit(&signed(&enrollment, FARMER)).unwrap();

    // A placed contract is pulled, verified, its artifacts fetched, run; the report says exited 0.
    let root = b"root image of hello, version 1".to_vec();
    push(&client, &root);
    let manifest_bytes = manifest(&root);
    let manifest_digest = push(&client, &manifest_bytes);
    let c1 = contract(manifest_digest, "one");
    let id = c1.id();
    deploy(&client, &c1, 1, node);
    pull.round(Duration::from_secs(5)).unwrap();
    assert!(console.has(&format!("nullos: contract {id} version 1 accepted")));
    assert_eq!(runner.log(), [Ran::Start(id, 1, root.clone())]);
    eventually("the report says exited 0", || {
        report_state(&client, &id) == Some((1, "exited".into(), Some(0)))
    });
    // Its console tail is in the logged report sealed to the owner: the directory shows only its
    // size, the owner's key opens it, another key does not.
    let v: Value = client.contract(&id).unwrap();
    let tail_bytes = v["reports"][0]["workloads"][0]["tail_bytes"].as_u64();
    assert_eq!(
        tail_bytes,
        Some(("hello: version 1\nhello: bye".len() + 48) as u64)
    );
    let report = latest_report(&client, &id);
    let sealed_tail = report.workloads[0].tail.as_deref().expect("a sealed tail");
    assert_eq!(
        sealed::open(&sk(OWNER), &report.tail_context("hello"), sealed_tail).as_deref(),
        Ok("hello: version 1\nhello: bye")
    );
    assert!(sealed::open(&sk(FARMER), &report.tail_context("hello"), sealed_tail).is_err());

    // A new version replaces the running one, its volumes kept.
    let mut c2 = c1.clone();
    c2.version = 2;
    c2.supersedes = Some(Previous {
        contract: id,
        body: c1.body_digest(),
    });
    c2.workloads[0].env = vec![("TAG".into(), "two".into())];
    deploy(&client, &c2, 2, node);
    pull.round(Duration::from_secs(5)).unwrap();
    assert!(console.has(&format!("nullos: contract {id} version 2 accepted")));
    assert_eq!(
        runner.log()[1..],
        [Ran::Stop(id, false), Ran::Start(id, 2, root.clone())]
    );
    eventually("the report is on version 2", || {
        report_state(&client, &id) == Some((2, "exited".into(), Some(0)))
    });
    // Nothing new: nothing done.
    pull.round(Duration::from_secs(1)).unwrap();
    assert_eq!(runner.log().len(), 3);

    // The node restarts (same state folder, same key): what is still placed here runs again
    // without being re-told, and the node registers again under the same id.
    drop(pull);
    let console2 = Arc::new(Lines::default());
    let runner2 = FakeRunner::default();
    let joined = join(&notary, state.path(), console2.clone(), runner2.clone());
    assert_eq!(joined.node, node);
    let mut pull = joined.pull;
    pull.round(Duration::from_secs(1)).unwrap();
    assert_eq!(runner2.log(), [Ran::Start(id, 2, root.clone())]);
    assert!(console2.has(&format!("nullos: contract {id} version 2 accepted")));

    // An artifact whose bytes in the blob store do not match its digest: refused, nothing run.
    let bad_root = b"root image that will be altered".to_vec();
    let bad_root_digest = push(&client, &bad_root);
    let bad_manifest = manifest(&bad_root);
    let bad_manifest_digest = push(&client, &bad_manifest);
    let blob_file = data.path().join("blobs").join(bad_root_digest.to_hex());
    let mut altered = std::fs::read(&blob_file).unwrap();
    altered[0] ^= 1;
    std::fs::write(&blob_file, &altered).unwrap();
    let bad = contract(bad_manifest_digest, "bad");
    let bad_id = bad.id();
    deploy(&client, &bad, 1, node);
    pull.round(Duration::from_secs(5)).unwrap();
    let refused = console2.starting(&format!("nullos: contract {bad_id} version 1 refused "));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains(&format!(
            "workload hello: fetch from the notary's blob store: blob {} arrived with digest {}",
            bad_root_digest,
            Digest::of(&altered)
        )),
        "{}",
        refused[0]
    );
    assert!(!runner2
        .log()
        .iter()
        .any(|r| matches!(r, Ran::Start(c, ..) if *c == bad_id)));
    eventually("the refusal is reported", || {
        report_state(&client, &bad_id).is_some_and(|(v, s, _)| v == 1 && s == "refused")
    });
    assert!(!state
        .path()
        .join("blobs")
        .join(bad_root_digest.to_hex())
        .exists());

    // Cancel: stopped, volumes removed, reported.
    let cancel = Cancellation {
        version: 2,
        contract: id,
        owner: c1.owner,
        reason: "done".into(),
    };
    client.submit(&signed(&cancel, OWNER)).unwrap();
    pull.round(Duration::from_secs(5)).unwrap();
    assert!(console2.has(&format!("nullos: contract {id} version 2 stopped")));
    assert_eq!(runner2.log().last(), Some(&Ran::Stop(id, true)));
    eventually("the stop is reported", || {
        report_state(&client, &id).is_some_and(|(_, s, _)| s == "stopped")
    });

    // A notary that lost or rewrote its log (same key, another history): the node refuses its
    // checkpoint, says so once, and acts on nothing from it.
    let key_file = data.path().join("notary.key");
    drop(notary);
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(&key_file, other.path().join("notary.key")).unwrap();
    let liar = Notary::start(other.path(), "127.0.0.1:0");
    let mut settings = Settings::new(&liar.url, liar.key, farmer);
    settings.lease_secs = 60;
    let runner3 = FakeRunner::default();
    let console3 = Arc::new(Lines::default());
    let mut pull = grid_node::join(
        settings,
        state.path(),
        console3.clone(),
        Box::new(runner3.clone()),
        Box::new(|| Some(capacity())),
    )
    .unwrap()
    .pull;
    for _ in 0..2 {
        assert!(pull.round(Duration::from_secs(1)).is_err());
    }
    let refused = console3.starting("nullos: notary checkpoint refused: ");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains(" is older than the kept one of size ")
            && refused[0].ends_with("; nothing new is acted on"),
        "{}",
        refused[0]
    );
    assert!(runner3.log().is_empty());
}
