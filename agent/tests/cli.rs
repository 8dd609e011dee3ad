//! The `nullos` binary as a user runs it: exit statuses, the one-line errors, and the offline
//! contract flow (key new, contract new, show, sign).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use trust::{Digest, PublicKey, SecretKey, WorkloadManifest};

const TWO_OF_THREE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/contracts/two-of-three.toml"
);
const HELLO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/contracts/hello.toml"
);

/// What one run of `nullos` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    /// Exit status 2 (bad input), every stderr line an error line; returns the lines.
    fn bad_input(self) -> Vec<String> {
        assert_eq!(self.code, 2, "{self:?}");
        let lines: Vec<String> = self.stderr.lines().map(str::to_owned).collect();
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(l.starts_with("nullos: error: "), "{l}");
        }
        lines
    }
}

fn nullos(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_nullos"))
        .args(args)
        .env_remove("NULLOS_NOTARY")
        .output()
        .expect("run nullos");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Makes key `name` in `dir` with `nullos key new`; returns the secret key path.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nullos(&["key", "new", "--out", s(&path)]).ok();
    path
}

fn public(secret: &Path) -> PublicKey {
    let mut pub_path = secret.as_os_str().to_owned();
    pub_path.push(".pub");
    PublicKey::from_text(&std::fs::read_to_string(pub_path).unwrap()).unwrap()
}

fn show_json(contract: &Path) -> Json {
    let run = nullos(&["contract", "show", s(contract), "--json"]).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

fn policy_met(contract: &Path) -> bool {
    show_json(contract)["stakeholders"]["policy_met"]
        .as_bool()
        .unwrap()
}

struct Parties {
    dir: tempfile::TempDir,
    owner: PathBuf,
    security: PathBuf,
    finance: PathBuf,
    operations: PathBuf,
}

fn parties() -> Parties {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    Parties {
        owner: new_key(&d, "owner.key"),
        security: new_key(&d, "security.key"),
        finance: new_key(&d, "finance.key"),
        operations: new_key(&d, "operations.key"),
        dir,
    }
}

const DIGEST: &str = "6e0f7c1d5a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";

/// `contract new` of the two-of-three example with every key given; returns the file.
fn two_of_three(p: &Parties, out: &str) -> PathBuf {
    let out = p.dir.path().join(out);
    let set = |name: &str, key: &Path| format!("{name}=@{}.pub", key.display());
    nullos(&[
        "contract",
        "new",
        TWO_OF_THREE,
        "--owner-key",
        s(&p.owner),
        "--out",
        s(&out),
        "--set",
        &format!("workload={DIGEST}"),
        "--set",
        &set("security", &p.security),
        "--set",
        &set("finance", &p.finance),
        "--set",
        &set("operations", &p.operations),
        "--set",
        "memory=512MiB",
    ])
    .ok();
    out
}

#[test]
fn key_new_writes_a_private_key_pair_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.key");
    let run = nullos(&["key", "new", "--out", s(&path)]).ok();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let secret = SecretKey::from_text(&text).unwrap();
    assert_eq!(public(&path), secret.public());
    assert!(run.stdout.contains(&secret.public().to_string()));

    let lines = nullos(&["key", "new", "--out", s(&path)]).bad_input();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("already exists"), "{lines:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn template_mistakes_are_one_line_each_and_write_nothing() {
    let p = parties();
    let out = p.dir.path().join("c.contract");
    let base = |extra: &[&str]| {
        let mut args = vec![
            "contract".to_owned(),
            "new".into(),
            TWO_OF_THREE.into(),
            "--owner-key".into(),
            s(&p.owner).into(),
            "--out".into(),
            s(&out).into(),
        ];
        for (name, key) in [
            ("security", &p.security),
            ("finance", &p.finance),
            ("operations", &p.operations),
        ] {
            args.push("--set".into());
            args.push(format!("{name}=@{}.pub", key.display()));
        }
        for e in extra {
            args.push("--set".into());
            args.push((*e).to_owned());
        }
        args
    };
    let run = |extra: &[&str]| {
        let args = base(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        nullos(&refs)
    };
    let digest = format!("workload={DIGEST}");
    // (what, extra --set values, the one line expected)
    let cases: [(&str, Vec<&str>, &str); 5] = [
        ("unknown parameter", vec![&digest, "colour=blue"], "--set colour: unknown parameter (the template has: api_host, finance, memory, name, operations, security, storage, vcpus, workload)"),
        ("out of bounds", vec![&digest, "memory=16GiB"], "--set memory: 16GiB is above the maximum 8GiB"),
        ("below bounds", vec![&digest, "vcpus=0"], "--set vcpus: 0 is below the minimum 1"),
        ("wrong type", vec![&digest, "storage=lots"], "--set storage: 'lots' is not a size"),
        ("missing required", vec![], "parameter 'workload' (digest) has no default and was not set"),
    ];
    for (what, extra, expect) in cases {
        let lines = run(&extra).bad_input();
        assert_eq!(lines.len(), 1, "{what}: {lines:?}");
        assert!(lines[0].contains(expect), "{what}: {lines:?}");
        assert!(
            lines[0].contains("two-of-three.toml: "),
            "{what}: the line names the template"
        );
        assert!(!out.exists(), "{what}: nothing is written");
    }
    // All mistakes at once, one line each.
    let lines = run(&["colour=blue", "memory=16GiB", "vcpus=many", "api_host="]).bad_input();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(!out.exists());
}

#[test]
fn two_of_three_is_met_only_with_the_required_member_in_any_order() {
    let p = parties();
    let fresh = two_of_three(&p, "fresh.contract");
    let shown = show_json(&fresh);
    assert_eq!(shown["workloads"][0]["manifest"], DIGEST);
    assert_eq!(shown["workloads"][0]["memory_mib"], 512);
    assert_eq!(shown["stakeholders"]["threshold"], 2);
    assert_eq!(shown["stakeholders"]["members"][0]["name"], "security");
    assert_eq!(shown["stakeholders"]["members"][0]["required"], true);
    assert_eq!(shown["stakeholders"]["policy_met"], false);
    let text = nullos(&["contract", "show", s(&fresh)]).ok().stdout;
    for part in [
        "runs",
        "may run on",
        "must be approved by weight 2 of",
        "policy not met",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }

    let (sec, fin, ops) = (&p.security, &p.finance, &p.operations);
    // Each order of signers, with whether the policy is met after each signature.
    let orders: [&[(&PathBuf, bool)]; 6] = [
        &[(fin, false), (ops, false), (sec, true)],
        &[(fin, false), (sec, true)],
        &[(sec, false), (fin, true)],
        &[(sec, false), (ops, true)],
        &[(ops, false), (sec, true)],
        &[(ops, false), (fin, false), (sec, true)],
    ];
    for (i, order) in orders.iter().enumerate() {
        let file = p.dir.path().join(format!("order{i}.contract"));
        std::fs::copy(&fresh, &file).unwrap();
        for (key, met) in *order {
            let run = nullos(&["contract", "sign", s(&file), "--key", s(key)]).ok();
            assert!(
                run.stdout
                    .contains(if *met { "policy met" } else { "policy not met" }),
                "{run:?}"
            );
            assert_eq!(policy_met(&file), *met, "order {i}");
        }
        let approved: Vec<bool> = show_json(&file)["stakeholders"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["approved"].as_bool().unwrap())
            .collect();
        assert_eq!(approved.iter().filter(|a| **a).count(), order.len());
    }
}

#[test]
fn a_non_stakeholder_or_a_second_signature_is_refused() {
    let p = parties();
    let file = two_of_three(&p, "c.contract");
    let before = std::fs::read(&file).unwrap();
    let stranger = new_key(p.dir.path(), "stranger.key");
    for key in [&stranger, &p.owner] {
        let lines = nullos(&["contract", "sign", s(&file), "--key", s(key)]).bad_input();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("is not a stakeholder of this contract (stakeholders: security, finance, operations)"), "{lines:?}");
        assert_eq!(std::fs::read(&file).unwrap(), before);
    }
    nullos(&["contract", "sign", s(&file), "--key", s(&p.finance)]).ok();
    let lines = nullos(&["contract", "sign", s(&file), "--key", s(&p.finance)]).bad_input();
    assert!(
        lines[0].contains("stakeholder 'finance' has already approved"),
        "{lines:?}"
    );
}

#[test]
fn an_altered_contract_file_is_refused() {
    let p = parties();
    let file = two_of_three(&p, "c.contract");
    nullos(&["contract", "sign", s(&file), "--key", s(&p.security)]).ok();
    let good = std::fs::read(&file).unwrap();
    let altered = p.dir.path().join("altered.contract");
    // A byte in the header, in the contract, in the approval, and the last newline.
    let approval_at = good.len() - 40;
    for at in [3, 200, good.len() / 2, approval_at, good.len() - 1] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x01;
        std::fs::write(&altered, &bytes).unwrap();
        let lines = nullos(&["contract", "show", s(&altered)]).bad_input();
        assert_eq!(lines.len(), 1, "byte {at}: {lines:?}");
        assert!(
            lines[0].contains("altered.contract is refused: "),
            "{lines:?}"
        );
        let lines = nullos(&["contract", "sign", s(&altered), "--key", s(&p.finance)]).bad_input();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            std::fs::read(&altered).unwrap(),
            bytes,
            "a refused file is left alone"
        );
    }
    let lines = nullos(&["contract", "show", s(&p.dir.path().join("missing"))]).bad_input();
    assert!(lines[0].contains("cannot read"), "{lines:?}");
}

/// A signed workload manifest as `image-builder workload` writes it.
fn workload_manifest() -> Vec<u8> {
    let manifest = WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 1,
        root: trust::ArtifactRef::of(b"root image"),
        kernel: None,
        initrd: None,
        entrypoint: vec!["/bin/hello".into()],
        env: vec![],
        workdir: "/".into(),
        vcpus: 1,
        memory_mib: 128,
        volumes: vec![trust::VolumeSpec {
            name: "data".into(),
            mount: "/data".into(),
            size_mib: 16,
        }],
        network: true,
        restart: trust::RestartPolicy::OnFailure,
    };
    let mut doc = manifest.to_document();
    doc.sign(&SecretKey::from_seed([7; 32])).unwrap();
    doc.encode()
}

/// `contract new` of hello.toml at `template` as the owner alone, who then approves it.
fn hello_flow(p: &Parties, template: &Path, name: &str) -> Json {
    let out = p.dir.path().join(name);
    nullos(&[
        "contract",
        "new",
        s(template),
        "--owner-key",
        s(&p.owner),
        "--out",
        s(&out),
        "--set",
        "data_size=1GiB",
    ])
    .ok();
    assert!(!policy_met(&out));
    nullos(&["contract", "sign", s(&out), "--key", s(&p.owner)]).ok();
    let shown = show_json(&out);
    assert_eq!(shown["stakeholders"]["policy_met"], true);
    assert_eq!(shown["stakeholders"]["members"][0]["name"], "owner");
    shown
}

#[test]
fn hello_hashes_its_built_workload_folder() {
    let p = parties();
    // The example template in a tree of its own, beside a generated build/workloads/hello.
    let root = p.dir.path().join("tree");
    let templates = root.join("examples/contracts");
    let built = root.join("build/workloads/hello");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::create_dir_all(&built).unwrap();
    std::fs::copy(HELLO, templates.join("hello.toml")).unwrap();
    let template = templates.join("hello.toml");

    let lines = nullos(&[
        "contract",
        "new",
        s(&template),
        "--owner-key",
        s(&p.owner),
        "--out",
        s(&p.dir.path().join("x")),
    ])
    .bad_input();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("build it first (make workloads)"),
        "{lines:?}"
    );

    let manifest = workload_manifest();
    std::fs::write(built.join("workload.manifest"), &manifest).unwrap();
    let shown = hello_flow(&p, &template, "generated.contract");
    let w = &shown["workloads"][0];
    assert_eq!(w["manifest"], Digest::of(&manifest).to_string());
    assert_eq!(w["volumes"][0]["name"], "data");
    assert_eq!(w["volumes"][0]["size_mib"], 1024);
    assert_eq!(w["egress"], "none");

    // The real example, when `make workloads` has built it.
    let real =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/workloads/hello/workload.manifest");
    match std::fs::read(&real) {
        Ok(bytes) => {
            let shown = hello_flow(&p, Path::new(HELLO), "real.contract");
            assert_eq!(shown["workloads"][0]["manifest"], Digest::of(&bytes).to_string());
        }
        Err(_) => eprintln!(
            "note: {} is not built (make workloads); the example ran against a generated manifest only",
            real.display()
        ),
    }
}

#[test]
fn the_notary_url_is_checked_from_the_option_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let lines = nullos(&[
        "--notary",
        "ftp://x",
        "key",
        "new",
        "--out",
        s(&dir.path().join("k")),
    ])
    .bad_input();
    assert!(lines[0].contains("notary URL 'ftp://x'"), "{lines:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_nullos"))
        .args(["key", "new", "--out", s(&dir.path().join("k"))])
        .env("NULLOS_NOTARY", "not a url")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("k").exists());
    nullos(&[
        "--notary",
        "http://notary.example:7878",
        "key",
        "new",
        "--out",
        s(&dir.path().join("k")),
    ])
    .ok();
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(nullos(&["contract", "frobnicate"]).code, 2);
    assert_eq!(
        nullos(&[
            "contract",
            "new",
            "t.toml",
            "--set",
            "novalue",
            "--owner-key",
            "k",
            "--out",
            "o"
        ])
        .code,
        2
    );
}

#[test]
fn template_show_lists_the_parameters() {
    let text = nullos(&["template", "show", TWO_OF_THREE]).ok().stdout;
    assert!(
        text.starts_with("two-of-three: One workload, approved by"),
        "{text}"
    );
    assert!(
        text.contains("  memory (size, default 256MiB, min 64MiB, max 8GiB)\n      Guest memory\n"),
        "{text}"
    );
    assert!(text.contains("  security (key, required)\n"), "{text}");
    let json: Json =
        serde_json::from_str(&nullos(&["template", "show", HELLO, "--json"]).ok().stdout).unwrap();
    let network = json["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "network")
        .unwrap();
    assert_eq!(network["type"], "string");
    assert_eq!(network["allowed"], serde_json::json!(["none", "any"]));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[parameters.n]\ntype = 'int'\nmin = 3\nmax = 1\n").unwrap();
    let lines = nullos(&["template", "show", s(&bad)]).bad_input();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].ends_with("bad.toml: template parameter 'n': 'min' 3 is above 'max' 1"),
        "{lines:?}"
    );
}
