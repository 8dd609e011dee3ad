//! `nullos` against a real `nullos-notary serve` (redb in a temporary directory) and simulated
//! nodes speaking the node protocol (tests/support/node.rs): farms, the node directory, push,
//! approvals (carried in the file and sent separately), deploy --wait (success and failure
//! paths), status, cancel, the self-healing agent, and the witness refusing a rewritten log.
//!
//! Needs `cargo build --release -p notary` first (the harness fails, naming the command, when
//! the binary is missing or older than its sources).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;

use support::node::{Behaviour, Shape, SimNode};
use support::{eventually, s, workload_folder, Notary, User};
use trust::PublicKey;

const TWO_OF_THREE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/contracts/two-of-three.toml"
);

const SMALL: Shape = Shape {
    cpus: 2,
    memory_mib: 1024,
    disk_mib: 4096,
};
const BIG: Shape = Shape {
    cpus: 4,
    memory_mib: 4096,
    disk_mib: 8192,
};

/// A notary, a user, a registered farm.
struct Grid {
    _data: tempfile::TempDir,
    notary: Notary,
    user: User,
    farmer: PathBuf,
    farm: PublicKey,
}

impl Grid {
    fn new() -> Grid {
        let data = tempfile::tempdir().unwrap();
        let notary = Notary::start(&data.path().join("notary"));
        let user = User::new(&notary);
        let (farmer, farm) = user.key("farmer.key");
        user.run(&[
            "farm",
            "register",
            "--key",
            s(&farmer),
            "--name",
            "test farm",
        ])
        .ok();
        Grid {
            _data: data,
            notary,
            user,
            farmer,
            farm,
        }
    }

    /// A simulated node of the farm, enrolled by the farmer with `nullos farm approve`.
    fn node(&self, seed: u8, shape: Shape, behaviour: Behaviour) -> SimNode {
        let node = SimNode::start(
            &self.notary.url,
            &self.notary.key,
            seed,
            self.farm,
            shape,
            behaviour,
        );
        self.user
            .run(&[
                "farm",
                "approve",
                &node.key.to_text(),
                "--key",
                s(&self.farmer),
            ])
            .ok();
        node
    }

    /// A template owned by the user whose workload is the folder `workload` (by `path`).
    fn hello_template(&self, workload: &Path, memory: &str) -> PathBuf {
        let path = self.user.path("hello.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[parameters.memory]
type = "size"
default = "{memory}"
min = "64MiB"
max = "64GiB"

[[workload]]
name = "hello"
path = "{}"
vcpus = 1
memory = "${{memory}}"
egress = "none"

[[workload.volume]]
name = "data"
size = "16MiB"
"#,
                workload.display()
            ),
        )
        .unwrap();
        path
    }

    /// `contract new` of `template` by `owner` into NAME, then the owner's approval.
    fn owned_contract(
        &self,
        template: &Path,
        owner: &Path,
        name: &str,
        sets: &[&str],
    ) -> (PathBuf, String) {
        let out = self.user.path(name);
        let mut args = vec![
            "contract",
            "new",
            s(template),
            "--owner-key",
            s(owner),
            "--out",
            s(&out),
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        self.user.run(&args).ok();
        self.user
            .run(&["contract", "sign", s(&out), "--key", s(owner)])
            .ok();
        let id = self
            .user
            .run(&["contract", "show", s(&out), "--json"])
            .ok()
            .json()["contract"]
            .as_str()
            .unwrap()
            .to_owned();
        (out, id)
    }

    fn node_json(&self, key: &PublicKey) -> serde_json::Value {
        let nodes = self.user.run(&["nodes", "--json"]).ok().json();
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["key"] == hex::encode(key.as_bytes()))
            .cloned()
            .unwrap_or_else(|| panic!("node {key} not in {nodes}"))
    }
}

fn hex_of(key: &PublicKey) -> String {
    hex::encode(key.as_bytes())
}

#[test]
fn the_walk_through_push_deploy_wait_status_and_cancel() {
    let g = Grid::new();
    let small = g.node(11, SMALL, Behaviour::Run);
    let big = g.node(12, BIG, Behaviour::Run);
    // The directory: capacity, free capacity, liveness; filters.
    let n = g.node_json(&big.key);
    assert_eq!(n["capacity"]["memory_mib"], 4096);
    assert_eq!(n["free"]["memory_mib"], 4096);
    assert_eq!(n["live"], true);
    assert_eq!(n["approved"], true);
    let listed = g
        .user
        .run(&["nodes", "--json", "--min-memory", "2048"])
        .ok()
        .json();
    assert_eq!(listed["nodes"].as_array().unwrap().len(), 1);
    let text = g
        .user
        .run(&["nodes", "--farm", &g.farm.to_text()])
        .ok()
        .stdout;
    assert!(
        text.contains(&hex_of(&small.key)[..16]) && text.contains("live"),
        "{text}"
    );

    let workload = g.user.path("build/hello");
    let manifest = workload_folder(&workload, b"the root image");
    let pushed = g.user.run(&["push", s(&workload), "--json"]).ok().json();
    assert_eq!(pushed["manifest"], manifest.as_str());
    assert!(pushed["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["uploaded"] == true));
    // Pushing again skips what is there.
    let again = g.user.run(&["push", s(&workload), "--json"]).ok().json();
    // A root image that is not the one the manifest names is refused before any upload.
    let tampered = g.user.path("build/tampered");
    workload_folder(&tampered, b"the root image");
    std::fs::write(tampered.join("root.img"), b"the root imagE").unwrap();
    let line = g.user.run(&["push", s(&tampered)]).fails(2);
    assert!(line.contains("the manifest names 14 bytes with"), "{line}");
    assert!(again["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["uploaded"] == false));

    let (owner, _) = g.user.key("me.key");
    let template = g.hello_template(&workload, "256MiB");
    let (contract, id) = g.owned_contract(&template, &owner, "hello.contract", &[]);
    let run = g
        .user
        .run(&["deploy", s(&contract), "--key", s(&owner), "--wait"])
        .ok();
    assert!(run.stdout.contains("hello running"), "{run:#?}");
    let status = g.user.status(&id);
    assert_eq!(status["state"], "done", "{status}");
    // The best fit: the node with the most memory left.
    assert_eq!(status["placement"]["node"], hex_of(&big.key).as_str());
    assert_eq!(status["placement"]["node_live"], true);
    assert_eq!(status["reports"][0]["workloads"][0]["state"], "running");
    assert_eq!(g.node_json(&big.key)["free"]["memory_mib"], 4096 - 256);
    // Deploying again changes nothing.
    g.user
        .run(&[
            "deploy",
            s(&contract),
            "--key",
            s(&owner),
            "--wait",
            "--json",
        ])
        .ok();
    assert_eq!(g.user.status(&id)["placement"]["sequence"], 1);

    // Cancel: only by the owner.
    let line = g.user.run(&["cancel", &id, "--key", s(&g.farmer)]).fails(2);
    assert!(line.contains("is not the contract's owner key"), "{line}");
    g.user
        .run(&["cancel", s(&contract), "--key", s(&owner)])
        .ok();
    let status = g.user.status(&id);
    assert_eq!(status["cancelled"], true);
    assert_eq!(status["state"], "failed");
    assert_eq!(g.node_json(&big.key)["free"]["memory_mib"], 4096);

    // Placement on capacity: 3000 MiB fits only the big node; then 2900 MiB fits nowhere.
    let (large, large_id) =
        g.owned_contract(&template, &owner, "large.contract", &["memory=3000MiB"]);
    g.user.run(&["deploy", s(&large), "--key", s(&owner)]).ok();
    assert_eq!(
        g.user.status(&large_id)["placement"]["node"],
        hex_of(&big.key).as_str()
    );
    let (second, _) = g.owned_contract(&template, &owner, "second.contract", &["memory=2900MiB"]);
    let line = g
        .user
        .run(&["deploy", s(&second), "--key", s(&owner)])
        .fails(1);
    assert!(
        line.contains("the node has 1096 MiB of memory free, the contract's workloads need 2900"),
        "{line}"
    );
    assert!(
        line.contains("the node has 1024 MiB of memory free"),
        "{line}"
    );
    drop(small);
}

/// The `make run` story in one command: a node that names the farm is enrolled by `farm approve
/// --pending`, and `deploy TEMPLATE --wait` without `--key` makes the owner's key, pushes the
/// workload, instantiates and approves the contract, places and follows it.
#[test]
fn deploy_of_a_template_pushes_signs_places_and_waits_in_one_command() {
    let g = Grid::new();
    let node = SimNode::start(
        &g.notary.url,
        &g.notary.key,
        31,
        g.farm,
        SMALL,
        Behaviour::Run,
    );
    // Not enrolled yet: --pending enrolls it (and only nodes of this farm), once.
    assert_eq!(g.node_json(&node.key)["approved"], false);
    let other_farm = g.user.key("other-farmer.key").1;
    let stranger = SimNode::start(
        &g.notary.url,
        &g.notary.key,
        32,
        other_farm,
        SMALL,
        Behaviour::Run,
    );
    let out = g
        .user
        .run(&["farm", "approve", "--pending", "--key", s(&g.farmer)])
        .ok();
    assert!(out.stdout.contains("enrolled by farm"), "{out:#?}");
    assert_eq!(g.node_json(&node.key)["approved"], true);
    assert_eq!(g.node_json(&stranger.key)["approved"], false);
    let again = g
        .user
        .run(&["farm", "approve", "--pending", "--key", s(&g.farmer)])
        .ok();
    assert!(!again.stdout.contains("enrolled by farm"), "{again:#?}");
    // Without --pending, nodes must be named (a usage error).
    let usage = g.user.run(&["farm", "approve", "--key", s(&g.farmer)]);
    assert_eq!(usage.code, 2, "{usage:#?}");

    let workload = g.user.path("build/hello");
    workload_folder(&workload, b"the root image");
    let template = g.hello_template(&workload, "128MiB");
    let run = g
        .user
        .run(&["deploy", s(&template), "--set", "memory=96MiB", "--wait"])
        .ok();
    let key = g.user.path("state").join("owner.key");
    assert!(key.exists(), "{run:#?}");
    assert!(run.stdout.contains("made your owner key"), "{run:#?}");
    assert!(
        run.stdout.contains("workload hello (") && run.stdout.contains("2 of 2 files uploaded"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("approved by its owner"), "{run:#?}");
    assert!(run.stdout.contains("hello running"), "{run:#?}");
    // The same template and settings are the same contract: deploying again changes nothing,
    // and uploads nothing.
    let again = g
        .user
        .run(&["deploy", s(&template), "--set", "memory=96MiB", "--json"])
        .ok();
    let placed = again.json();
    assert_eq!(placed["placement"], 1, "{again:#?}");
    assert_eq!(placed["node"], hex_of(&node.key).as_str());
    assert!(!again.stdout.contains("made your owner key"), "{again:#?}");
    let status = g.user.status(placed["contract"].as_str().unwrap());
    assert_eq!(status["state"], "done", "{status}");
    // --set is for templates; a file that is neither is refused as a contract file.
    let contract = g.user.path("hello.contract");
    g.user
        .run(&[
            "contract",
            "new",
            s(&template),
            "--owner-key",
            s(&key),
            "--out",
            s(&contract),
        ])
        .ok();
    let line = g
        .user
        .run(&["deploy", s(&contract), "--set", "memory=96MiB"])
        .fails(2);
    assert!(line.contains("--set is for templates"), "{line}");
    let junk = g.user.path("junk.toml");
    std::fs::write(&junk, "not = [a contract").unwrap();
    let line = g.user.run(&["deploy", s(&junk)]).fails(2);
    assert!(
        line.contains("is neither a contract file nor a contract template"),
        "{line}"
    );
}

#[test]
fn deploy_wait_says_why_not() {
    let g = Grid::new();
    let _node = g.node(21, SMALL, Behaviour::Run);
    let workload = g.user.path("build/hello");
    workload_folder(&workload, b"root");
    let (owner, _) = g.user.key("me.key");

    // No node has the memory: placement impossible, and why.
    let template = g.hello_template(&workload, "2GiB");
    let (big, _) = g.owned_contract(&template, &owner, "big.contract", &[]);
    let line = g
        .user
        .run(&["deploy", s(&big), "--key", s(&owner), "--wait"])
        .fails(1);
    assert!(
        line.contains("placement impossible: no live node fits"),
        "{line}"
    );
    assert!(
        line.contains("the contract's workloads need 2048"),
        "{line}"
    );

    // Not pushed: the node refuses, and deploy shows the node's line.
    std::fs::remove_file(&template).unwrap();
    let template = g.hello_template(&workload, "128MiB");
    let (unpushed, id) = g.owned_contract(&template, &owner, "unpushed.contract", &[]);
    let line = g
        .user
        .run(&["deploy", s(&unpushed), "--key", s(&owner), "--wait"])
        .fails(1);
    assert!(
        line.contains("refused workload hello: workload manifest"),
        "{line}"
    );
    assert_eq!(g.user.status(&id)["state"], "failed");

    // A workload in a crash loop: the node's line, without waiting for the timeout.
    let crashing = g.node(23, SMALL, Behaviour::Crash);
    g.user.run(&["push", s(&workload)]).ok();
    let (crash, _) = g.owned_contract(&template, &owner, "crash.contract", &["memory=96MiB"]);
    let line = g
        .user
        .run(&[
            "deploy",
            s(&crash),
            "--key",
            s(&owner),
            "--node",
            &hex_of(&crashing.key),
            "--wait",
        ])
        .fails(1);
    assert!(
        line.contains("workload hello exited with code 1 and is restarting"),
        "{line}"
    );

    // A wrong key is bad input; so is an unknown node.
    let (other, _) = g.user.key("other.key");
    let line = g
        .user
        .run(&["deploy", s(&unpushed), "--key", s(&other)])
        .fails(2);
    assert!(line.contains("is not the contract's owner key"), "{line}");
    let line = g
        .user
        .run(&["deploy", s(&unpushed), "--key", s(&owner), "--node", "zz"])
        .fails(2);
    assert!(line.contains("'zz' is not a public key"), "{line}");
    // A node that is not enrolled: the notary's refusal line.
    let stray = SimNode::start(
        &g.notary.url,
        &g.notary.key,
        22,
        g.farm,
        BIG,
        Behaviour::Run,
    );
    let (third, _) = g.owned_contract(&template, &owner, "third.contract", &["memory=64MiB"]);
    let line = g
        .user
        .run(&[
            "deploy",
            s(&third),
            "--key",
            s(&owner),
            "--node",
            &hex_of(&stray.key),
        ])
        .fails(1);
    assert!(line.contains("is not enrolled by its farm"), "{line}");
}

#[test]
fn logs_open_the_console_tail_for_the_owner_only() {
    let g = Grid::new();
    let crashing = g.node(25, SMALL, Behaviour::Crash);
    let workload = g.user.path("build/hello");
    workload_folder(&workload, b"root");
    g.user.run(&["push", s(&workload)]).ok();
    let (owner, _) = g.user.key("me.key");
    let template = g.hello_template(&workload, "96MiB");

    // Running, nothing ended yet: no tail, one line saying so.
    let runner = g.node(26, SMALL, Behaviour::Run);
    let (calm, calm_id) = g.owned_contract(&template, &owner, "calm.contract", &["memory=64MiB"]);
    g.user
        .run(&[
            "deploy",
            s(&calm),
            "--key",
            s(&owner),
            "--node",
            &hex_of(&runner.key),
            "--wait",
        ])
        .ok();
    let line = g.user.run(&["logs", &calm_id, "--key", s(&owner)]).fails(1);
    assert!(line.contains("no console lines for contract"), "{line}");

    // A crash loop: the node's report carries the sealed tail; the public status shows its size
    // only, and `nullos logs` with the owner's key prints the lines.
    let (crash, id) = g.owned_contract(&template, &owner, "crash.contract", &[]);
    g.user
        .run(&[
            "deploy",
            s(&crash),
            "--key",
            s(&owner),
            "--node",
            &hex_of(&crashing.key),
            "--wait",
        ])
        .fails(1);
    let expected = "hello: console of version 1\nhello: exited with code 1";
    let status = g.user.status(&id);
    assert_eq!(
        status["reports"][0]["workloads"][0]["tail_bytes"],
        expected.len() + 48,
        "{status}"
    );
    assert!(
        !status.to_string().contains("console of version"),
        "{status}"
    );
    let out = g.user.run(&["logs", s(&crash), "--key", s(&owner)]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:#?}");
    assert!(
        lines[0].starts_with("== workload hello on node nullos-ed25519 ")
            && lines[0].ends_with(": restarting =="),
        "{out:#?}"
    );
    assert_eq!(lines[1..].join("\n"), expected);

    // Any other key, a stakeholder's or the farmer's, is refused with one line.
    let (other, _) = g.user.key("other.key");
    for key in [&other, &g.farmer] {
        let line = g.user.run(&["logs", &id, "--key", s(key)]).fails(2);
        assert!(line.contains("is not the contract's owner key"), "{line}");
    }

    // Cancelled: the stopped report carries the last lines too.
    g.user.run(&["cancel", &id, "--key", s(&owner)]).ok();
    let out = eventually("the stopped report", 30, || {
        let out = g.user.run(&["logs", &id, "--key", s(&owner)]).ok();
        out.stdout.contains(": stopped ==").then_some(out)
    });
    assert!(
        out.stdout.ends_with("hello: cancelled by its owner\n"),
        "{out:#?}"
    );
}

#[test]
fn an_altered_contract_file_is_refused() {
    let g = Grid::new();
    let workload = g.user.path("build/hello");
    workload_folder(&workload, b"root");
    let (owner, _) = g.user.key("me.key");
    let template = g.hello_template(&workload, "128MiB");
    let (contract, id) = g.owned_contract(&template, &owner, "c.contract", &[]);
    let mut text = std::fs::read_to_string(&contract).unwrap();
    // Change one hex digit of the signed contract.
    let at = text.find("contract ").unwrap() + 60;
    let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
    text.replace_range(at..=at, flipped);
    std::fs::write(&contract, text).unwrap();
    let line = g
        .user
        .run(&["deploy", s(&contract), "--key", s(&owner)])
        .fails(2);
    assert!(line.contains("is refused"), "{line}");
    // Nothing reached the log.
    let run = g.user.run(&["status", &id]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("not in the notary's log"), "{run:#?}");
}

#[test]
fn two_of_three_is_sealed_only_when_the_policy_is_met_with_approvals_sent_separately() {
    let g = Grid::new();
    let node = g.node(31, BIG, Behaviour::Run);
    let workload = g.user.path("build/app");
    let manifest = workload_folder(&workload, b"app root");
    g.user.run(&["push", s(&workload)]).ok();
    let (owner, _) = g.user.key("owner.key");
    let (security, security_pub) = g.user.key("security.key");
    let (finance, finance_pub) = g.user.key("finance.key");
    let (operations, operations_pub) = g.user.key("operations.key");
    let new = |name: &str, storage: &str| -> (PathBuf, String) {
        let out = g.user.path(name);
        g.user
            .run(&[
                "contract",
                "new",
                TWO_OF_THREE,
                "--owner-key",
                s(&owner),
                "--out",
                s(&out),
                "--set",
                &format!("workload={manifest}"),
                "--set",
                &format!("security={security_pub}"),
                "--set",
                &format!("finance={finance_pub}"),
                "--set",
                &format!("operations={operations_pub}"),
                "--set",
                storage,
            ])
            .ok();
        let id = g
            .user
            .run(&["contract", "show", s(&out), "--json"])
            .ok()
            .json()["contract"]
            .as_str()
            .unwrap()
            .to_owned();
        (out, id)
    };
    let (contract, id) = new("app.contract", "storage=64MiB");

    // Finance alone: the required security officer is missing.
    g.user
        .run(&["contract", "sign", s(&contract), "--key", s(&finance)])
        .ok();
    let line = g
        .user
        .run(&["deploy", s(&contract), "--key", s(&owner), "--wait"])
        .fails(1);
    assert!(
        line.contains("signatures missing: required stakeholders security have not approved"),
        "{line}"
    );
    assert!(
        line.contains("signed: finance; not signed: security, operations"),
        "{line}"
    );
    assert!(g.user.status(&id)["placement"].is_null());

    // Security signs a copy of the file and sends the approval to the notary itself.
    let copy = g.user.path("security-copy.contract");
    std::fs::copy(&contract, &copy).unwrap();
    let sent = g
        .user
        .run(&[
            "contract",
            "sign",
            s(&copy),
            "--key",
            s(&security),
            "--send",
        ])
        .ok();
    assert!(sent.stdout.contains("sent the approval"), "{sent:#?}");
    // The owner's file still has finance only: deploy counts the approval in the log.
    g.user
        .run(&["deploy", s(&contract), "--key", s(&owner), "--wait"])
        .ok();
    let status = g.user.status(&id);
    assert_eq!(status["approvals"]["policy_met"], true);
    assert_eq!(status["placement"]["node"], hex_of(&node.key).as_str());
    assert_eq!(status["state"], "done");

    // The other order: security first is weight 1 of 2, then operations meets it.
    // Another body (another contract): security first is weight 1 of 2, then operations.
    let (second, second_id) = new("second.contract", "storage=65MiB");
    g.user
        .run(&["contract", "sign", s(&second), "--key", s(&security)])
        .ok();
    let line = g
        .user
        .run(&["deploy", s(&second), "--key", s(&owner)])
        .fails(1);
    assert!(
        line.contains("approved weight 1 is below threshold 2"),
        "{line}"
    );
    g.user
        .run(&["contract", "sign", s(&second), "--key", s(&operations)])
        .ok();
    g.user
        .run(&["deploy", s(&second), "--key", s(&owner), "--wait"])
        .ok();
    assert_eq!(g.user.status(&second_id)["state"], "done");
}

/// Reads the agent's stdout lines on a thread.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_agent_re_places_a_contract_whose_node_went_silent() {
    let g = Grid::new();
    let first = g.node(41, BIG, Behaviour::Run);
    let second = g.node(42, BIG, Behaviour::Run);
    let workload = g.user.path("build/hello");
    workload_folder(&workload, b"root");
    g.user.run(&["push", s(&workload)]).ok();
    let (owner, _) = g.user.key("me.key");
    let template = g.hello_template(&workload, "256MiB");
    let (contract, id) = g.owned_contract(&template, &owner, "hello.contract", &[]);
    g.user
        .run(&[
            "deploy",
            s(&contract),
            "--key",
            s(&owner),
            "--node",
            &hex_of(&first.key),
            "--wait",
        ])
        .ok();

    let mut agent = Killed(
        g.user
            .command(&["agent", "--key", s(&owner), "--grace", "2", "--poll", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut agent.0);
    first.stop_lease();
    let status = eventually(
        "the agent to place the contract on the second node",
        120,
        || {
            let v = g.user.status(&id);
            (v["placement"]["node"] == hex_of(&second.key).as_str() && v["state"] == "done")
                .then_some(v)
        },
    );
    assert_eq!(status["placement"]["sequence"], 2);
    assert!(
        status["placement"]["reason"]
            .as_str()
            .unwrap()
            .contains("stopped renewing its lease"),
        "{status}"
    );
    // Exactly one live placement: the notary counts the contract on the second node only.
    assert_eq!(g.node_json(&first.key)["free"]["memory_mib"], 4096);
    assert_eq!(g.node_json(&second.key)["free"]["memory_mib"], 4096 - 256);
    let mut said = Vec::new();
    eventually("the agent's line about the placement", 60, || {
        said.extend(lines.try_iter());
        said.iter()
            .any(|l| l.contains("placed on node") && l.contains("stopped renewing"))
            .then_some(())
    });
    drop(agent);

    // A restarted agent reads the same log and leaves the healthy placement alone; a workload
    // failing past the restart limit then moves too.
    let third = g.node(43, BIG, Behaviour::Crash);
    let (crashing, crash_id) =
        g.owned_contract(&template, &owner, "crash.contract", &["memory=128MiB"]);
    g.user
        .run(&[
            "deploy",
            s(&crashing),
            "--key",
            s(&owner),
            "--node",
            &hex_of(&third.key),
        ])
        .ok();
    let _agent = Killed(
        g.user
            .command(&[
                "agent",
                "--key",
                s(&owner),
                "--grace",
                "2",
                "--poll",
                "1",
                "--restart-limit",
                "2",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let moved = eventually("the agent to move the crashing contract", 120, || {
        let v = g.user.status(&crash_id);
        (v["placement"]["node"] != hex_of(&third.key).as_str()).then_some(v)
    });
    assert!(
        moved["placement"]["reason"]
            .as_str()
            .unwrap()
            .contains("failed on node"),
        "{moved}"
    );
    assert_eq!(g.user.status(&id)["placement"]["sequence"], 2);
}

#[test]
fn a_notary_whose_log_was_rewritten_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let notary = Notary::start(&dir.path().join("first"));
    let user = User::new(&notary);
    // A mistyped key: the checkpoint does not verify, and the key is not pinned.
    let wrong = trust::SecretKey::from_seed([99; 32]).public().to_text();
    let line = user
        .command(&["log", "verify"])
        .env("NULLOS_NOTARY_KEY", &wrong)
        .output()
        .unwrap();
    assert_eq!(line.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&line.stderr);
    assert!(
        stderr.contains("does not verify under notary key"),
        "{stderr}"
    );
    let (farmer, _) = user.key("farmer.key");
    user.run(&["farm", "register", "--key", s(&farmer), "--name", "one"])
        .ok();
    user.run(&["farm", "register", "--key", s(&farmer), "--name", "two"])
        .ok();
    let verified = user.run(&["log", "verify", "--json"]).ok().json();
    assert_eq!(verified["size"], 2);
    let key_file = notary.data.join("notary.key");
    notary.stop();

    // The same key on a fresh data directory: another history.
    let fresh = dir.path().join("second");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::copy(&key_file, fresh.join("notary.key")).unwrap();
    let forged = Notary::start(&fresh);
    assert_eq!(forged.key, user.key);
    let user = User {
        url: forged.url.clone(),
        ..user
    };
    let line = user.run(&["log", "verify"]).fails(1);
    assert!(
        line.contains("does not extend the checkpoint of size 2 kept in"),
        "{line}"
    );
    assert!(line.contains("rewritten"), "{line}");
    // Grown past the kept size, it still cannot prove consistency.
    let client = forged.client();
    for name in ["x", "y", "z"] {
        let farm = trust::grid::Farm {
            version: 1,
            farmer: trust::SecretKey::from_seed([name.as_bytes()[0]; 32]).public(),
            name: name.into(),
        };
        let key = trust::SecretKey::from_seed([name.as_bytes()[0]; 32]);
        client.submit(&support::node::signed(&farm, &key)).unwrap();
    }
    let line = user.run(&["nodes"]).fails(1);
    assert!(
        line.contains("does not extend the checkpoint of size 2"),
        "{line}"
    );
    // Without a pin or a key: bad input, named.
    let run = user
        .command(&["log", "verify"])
        .env_remove("NULLOS_NOTARY_KEY")
        .env("NULLOS_STATE", user.path("other-state"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no notary key is pinned"));
}
