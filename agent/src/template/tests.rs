use std::path::Path;

use trust::grid::{Egress, Endpoint, VolumeClaim};
use trust::{Digest, SecretKey, WorkloadManifest};

use super::*;

const HELLO: &str = include_str!("../../../examples/contracts/hello.toml");
const TWO_OF_THREE: &str = include_str!("../../../examples/contracts/two-of-three.toml");

fn key(n: u8) -> PublicKey {
    SecretKey::from_seed([n; 32]).public()
}

/// A built hello workload manifest (signed), as `image-builder workload` writes it.
fn hello_manifest() -> Vec<u8> {
    let manifest = WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 1,
        root: trust::ArtifactRef::of(b"root"),
        kernel: None,
        initrd: None,
        entrypoint: vec!["/bin/hello".into()],
        env: vec![],
        workdir: "/".into(),
        vcpus: 1,
        memory_mib: 128,
        volumes: vec![],
        network: true,
        restart: trust::RestartPolicy::OnFailure,
    };
    let mut doc = manifest.to_document();
    doc.sign(&SecretKey::from_seed([9; 32])).unwrap();
    doc.encode()
}

fn no_files(_: &Path) -> std::io::Result<Vec<u8>> {
    Err(std::io::ErrorKind::NotFound.into())
}

fn instantiate(
    text: &str,
    sets: &[(&str, &str)],
    read: ReadFile<'_>,
) -> Result<Contract, Vec<String>> {
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let template = Template::parse(text).map_err(|e| e.0)?;
    template
        .instantiate(&Inputs {
            sets: &sets,
            owner: key(1),
            base_dir: Path::new("/templates"),
            read_file: read,
        })
        .map_err(|e| e.0)
}

#[test]
fn hello_instantiates_with_defaults_from_its_built_folder() {
    let manifest = hello_manifest();
    let read = |p: &Path| {
        assert_eq!(
            p,
            Path::new("/templates/../../build/workloads/hello/workload.manifest")
        );
        Ok(manifest.clone())
    };
    let c = instantiate(HELLO, &[("memory", "256MiB")], &read).unwrap();
    assert_eq!(c.owner, key(1));
    assert_eq!(c.version, 1);
    let w = &c.workloads[0];
    assert_eq!(w.name, "hello");
    assert_eq!(w.manifest, Digest::of(&manifest));
    assert_eq!((w.vcpus, w.memory_mib), (1, 256));
    assert_eq!(
        w.volumes,
        [VolumeClaim {
            name: "data".into(),
            size_mib: 16
        }]
    );
    assert_eq!(w.egress, Egress::None);
    assert_eq!(w.env, [("HELLO_EXIT".to_owned(), "0".to_owned())]);
    assert_eq!(c.constraints.min_cpus, 1);
    // Without [stakeholders] the owner alone approves.
    assert_eq!(c.stakeholders, {
        let mut p = SignerPolicy::single(key(1));
        p.members[0].name = "owner".into();
        p
    });
}

#[test]
fn a_missing_workload_folder_is_one_clear_line() {
    let errs = instantiate(HELLO, &[], &no_files).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("workload 'hello': path: cannot read /templates/../../build/workloads/hello/workload.manifest"), "{errs:?}");
    let junk = |_: &Path| Ok(b"junk".to_vec());
    let errs = instantiate(HELLO, &[], &junk).unwrap_err();
    assert!(
        errs[0].ends_with("is not a signed workload manifest"),
        "{errs:?}"
    );
}

#[test]
fn two_of_three_builds_the_policy_from_keys() {
    let digest = "ab".repeat(32);
    let (k2, k3, k4) = (key(2).to_string(), key(3).to_string(), key(4).to_string());
    let c = instantiate(
        TWO_OF_THREE,
        &[
            ("workload", &digest),
            ("security", &k2),
            ("finance", &k3),
            ("operations", &k4),
            ("api_host", "db.example.org"),
        ],
        &no_files,
    )
    .unwrap();
    let p = &c.stakeholders;
    assert_eq!(p.threshold, 2);
    let names: Vec<(&str, bool)> = p
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.required))
        .collect();
    assert_eq!(
        names,
        [
            ("security", true),
            ("finance", false),
            ("operations", false)
        ]
    );
    assert_eq!(p.members[1].key, key(3));
    let w = &c.workloads[0];
    assert_eq!(w.name, "app");
    assert_eq!(w.manifest.to_hex(), digest);
    assert_eq!(
        w.egress,
        Egress::Only(vec![Endpoint {
            host: "db.example.org".into(),
            port: 443
        }])
    );
    assert_eq!(
        w.env,
        [("API_URL".to_owned(), "https://db.example.org/".to_owned())]
    );
    assert_eq!(c.constraints.min_memory_mib, 256);
}

#[test]
fn every_parameter_mistake_is_reported_at_once() {
    let errs = instantiate(
        TWO_OF_THREE,
        &[
            ("workload", "abc"),
            ("memory", "64GiB"),
            ("vcpus", "two"),
            ("colour", "blue"),
            ("name", "Not A Name"),
        ],
        &no_files,
    )
    .unwrap_err();
    let expect = [
        "--set workload: 'abc' is not a BLAKE3 digest",
        "--set memory: 64GiB is above the maximum 8GiB",
        "--set vcpus: 'two' is not an integer",
        "--set colour: unknown parameter",
        "parameter 'finance' (key) has no default",
        "parameter 'operations' (key) has no default",
        "parameter 'security' (key) has no default",
        "workload 1: name: 'Not A Name'",
    ];
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    for (err, start) in errs.iter().zip(expect) {
        assert!(
            err.starts_with(start),
            "{err:?} should start with {start:?}"
        );
    }
}

#[test]
fn fields_are_typed() {
    let base = r#"
[parameters.mem]
type = "size"
default = "64MiB"
[parameters.n]
type = "int"
default = 2
[parameters.flag]
type = "bool"
default = true
[[workload]]
name = "w"
manifest = "WORKLOAD"
vcpus = VCPUS
memory = MEMORY
"#;
    let digest = "cd".repeat(32);
    let run = |vcpus: &str, memory: &str| {
        let text = base
            .replace("WORKLOAD", &digest)
            .replace("VCPUS", vcpus)
            .replace("MEMORY", memory);
        instantiate(&text, &[], &no_files)
    };
    let c = run("\"${n}\"", "\"${n}GiB\"").unwrap();
    assert_eq!((c.workloads[0].vcpus, c.workloads[0].memory_mib), (2, 2048));
    assert_eq!(run("3", "\"${mem}\"").unwrap().workloads[0].memory_mib, 64);

    let errs = run("\"${mem}\"", "\"${flag}\"").unwrap_err();
    assert_eq!(
        errs,
        [
            "workload 'w': vcpus: parameter 'mem' is a size, this field needs an int",
            "workload 'w': memory: parameter 'flag' is a bool, this field needs a size",
        ]
    );
    let errs = run("33", "\"16MiB\"").unwrap_err();
    assert_eq!(
        errs,
        [
            "workload 'w': vcpus: 33 is out of range (1 to 32)",
            "workload 'w': memory: 16MiB is out of range (32MiB to 64GiB)",
        ]
    );
    let errs = run("\"${nope}\"", "128").unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("'${nope}' is not a parameter"), "{errs:?}");
    assert!(errs[1].contains("memory: 128 is not a size"), "{errs:?}");
}

#[test]
fn template_mistakes_are_refused_before_any_value() {
    let errs = Template::parse("[parameters.owner]\ntype = 'key'\n")
        .unwrap_err()
        .0;
    assert!(errs[0].contains("built in"), "{errs:?}");
    let errs = Template::parse("[[workload]]\nname = 'a'\nvcpus = 1\nmemory = '1GiB'\ncpu = 3\n")
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("template line 5: unknown field `cpu`"),
        "{errs:?}"
    );
    let errs = instantiate("[template]\nname = 'x'\n", &[], &no_files).unwrap_err();
    assert_eq!(errs, ["the template has no [[workload]]"]);
}

#[test]
fn stakeholder_policies_are_checked() {
    let text = format!(
        r#"
[[workload]]
name = "w"
manifest = "{}"
vcpus = 1
memory = "64MiB"
[stakeholders]
threshold = 3
[[stakeholders.member]]
name = "a"
key = "${{owner}}"
[[stakeholders.member]]
name = "b"
key = "${{owner}}"
"#,
        "ef".repeat(32)
    );
    let errs = instantiate(&text, &[], &no_files).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("stakeholders: "), "{errs:?}");
}

#[test]
fn syntax_errors_name_their_line_even_after_multibyte_text() {
    assert_eq!(line_of("é\nx", 1), 1);
    assert_eq!(line_of("é\nx", 3), 2);
    assert_eq!(line_of("", 10), 1);
    let errs = Template::parse("# café\n[template]\nname = \n")
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("template line 3: "), "{errs:?}");
}
