use proptest::prelude::*;
use trust::{ArtifactRef, RestartPolicy, VolumeSpec, WorkloadManifest};

use super::*;

const CONTRACT_EXAMPLE: &str = r#"
name = "hello"
entrypoint = ["/bin/hello"]
env = [["GREETING", "hi"]]
workdir = "/"
network = true
[[volume]]
name = "data"
mount = "/data"
"#;

fn manifest() -> WorkloadManifest {
    WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 4,
        root: ArtifactRef::of(b"root"),
        kernel: None,
        initrd: None,
        entrypoint: vec!["/bin/hello".into(), "--loud".into()],
        env: vec![("GREETING".into(), "hi \"there\"".into())],
        workdir: "/".into(),
        vcpus: 2,
        memory_mib: 128,
        volumes: vec![
            VolumeSpec {
                name: "data".into(),
                mount: "/data".into(),
                size_mib: 16,
            },
            VolumeSpec {
                name: "logs".into(),
                mount: "/var/log".into(),
                size_mib: 1,
            },
        ],
        network: true,
        restart: RestartPolicy::OnFailure,
    }
}

fn minimal() -> GuestConfig {
    GuestConfig::parse("name = \"a\"\nentrypoint = [\"/x\"]\n").unwrap()
}

#[test]
fn the_text_is_what_the_node_always_wrote() {
    let text = GuestConfig::from_manifest(&manifest()).to_toml().unwrap();
    assert_eq!(
        text,
        "# Written by the node's init for the guest role.\n\
         name = \"hello\"\n\
         entrypoint = [\"/bin/hello\", \"--loud\"]\n\
         env = [[\"GREETING\", 'hi \"there\"']]\n\
         workdir = \"/\"\n\
         network = true\n\
         \n\
         [[volume]]\n\
         name = \"data\"\n\
         mount = \"/data\"\n\
         \n\
         [[volume]]\n\
         name = \"logs\"\n\
         mount = \"/var/log\"\n"
    );
}

#[test]
fn a_verified_manifest_round_trips() {
    let config = GuestConfig::from_manifest(&manifest());
    assert_eq!(
        GuestConfig::parse(&config.to_toml().unwrap()).unwrap(),
        config
    );
    assert_eq!(
        config.volumes[1].mount, "/var/log",
        "volumes keep disk order"
    );
}

#[test]
fn odd_values_round_trip() {
    let mut config = minimal();
    config.entrypoint = vec![
        "/opt/my prog/bin'\"x".into(),
        String::new(),
        "--".into(),
        "]] [[volume]]\n# not a comment\r\t\u{1}\u{7f}".into(),
        "é漢字🦀\\u0041\\".into(),
        "x".repeat(MAX_WORKLOAD_STRING_BYTES),
    ];
    config.env = vec![
        ("PATH".into(), String::new()),
        ("K ey.\"'".into(), "v=a=l\nue".into()),
    ];
    config.workdir = "/a b/'c'/\"d\"".into();
    config.volumes = vec![
        Volume {
            name: "0".into(),
            mount: "/d a t a".into(),
        },
        Volume {
            name: "-".into(),
            mount: "/d a t a/below".into(),
        },
    ];
    let text = config.to_toml().unwrap();
    assert_eq!(GuestConfig::parse(&text).unwrap(), config, "{text}");
}

proptest! {
    #[test]
    fn generated_configs_round_trip(
        name in "[a-z0-9-]{1,32}",
        program in "(/[^/\u{0}]{1,12}){1,4}",
        args in proptest::collection::vec("[^\u{0}]{0,24}", 0..6),
        env in proptest::collection::btree_map("[^=\u{0}]{1,12}", "[^\u{0}]{0,24}", 0..6),
        workdir in "/|(/[a-z .'\"]{1,6}[a-z]){1,3}",
        network in any::<bool>(),
        mounts in proptest::collection::btree_set("/[a-z]{1,6}", 0..4),
    ) {
        let mut entrypoint = vec![program];
        entrypoint.extend(args);
        let volumes: Vec<Volume> = mounts
            .into_iter()
            .filter(|m| !RESERVED_MOUNTS.iter().any(|r| is_at_or_below(m, r)))
            .enumerate()
            .map(|(i, mount)| Volume { name: format!("v{i}"), mount })
            .collect();
        let workdir = workdir.replace("//", "/");
        let config = GuestConfig {
            name,
            entrypoint,
            env: env.into_iter().collect(),
            workdir,
            network,
            volumes,
        };
        prop_assume!(config.validate().is_ok());
        let text = config.to_toml().unwrap();
        prop_assert_eq!(GuestConfig::parse(&text).unwrap(), config);
    }
}

#[test]
fn parses_the_contract_example() {
    let c = GuestConfig::parse(CONTRACT_EXAMPLE).unwrap();
    assert_eq!(c.name, "hello");
    assert_eq!(c.entrypoint, ["/bin/hello"]);
    assert_eq!(c.env, [("GREETING".to_owned(), "hi".to_owned())]);
    assert_eq!(c.workdir, "/");
    assert!(c.network);
    assert_eq!(
        c.volumes,
        [Volume {
            name: "data".into(),
            mount: "/data".into()
        }]
    );
}

#[test]
fn defaults_when_optional_keys_are_absent() {
    let c = GuestConfig::parse("name = \"a\"\nentrypoint = [\"/x\", \"-v\"]\n").unwrap();
    assert_eq!(c.workdir, "/");
    assert!(!c.network && c.env.is_empty() && c.volumes.is_empty());
}

#[test]
fn unknown_keys_are_refused() {
    let e = GuestConfig::parse("name = \"a\"\nentrypoint = [\"/x\"]\nshell = true\n");
    assert!(matches!(e, Err(GuestConfigError::Parse(_))), "{e:?}");
    let e = GuestConfig::parse(
        "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/v\"\nsize_mib = 3\n",
    );
    assert!(matches!(e, Err(GuestConfigError::Parse(_))), "{e:?}");
}

#[test]
fn invalid_values_are_refused_on_reading_and_on_writing() {
    let bad = [
        "name = \"Hello\"\nentrypoint = [\"/x\"]",
        "name = \"\"\nentrypoint = [\"/x\"]",
        "name = \"a\"\nentrypoint = []",
        "name = \"a\"\nentrypoint = [\"x\"]",
        "name = \"a\"\nentrypoint = [\"/\"]",
        "name = \"a\"\nentrypoint = [\"/x/../y\"]",
        "name = \"a\"\nentrypoint = [\"/x\", \"a\\u0000b\"]",
        "name = \"a\"\nentrypoint = [\"/x\"]\nworkdir = \"rel\"",
        "name = \"a\"\nentrypoint = [\"/x\"]\nenv = [[\"A=B\", \"c\"]]",
        "name = \"a\"\nentrypoint = [\"/x\"]\nenv = [[\"\", \"c\"]]",
        "name = \"a\"\nentrypoint = [\"/x\"]\nenv = [[\"A\", \"c\"], [\"A\", \"d\"]]",
        "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/\"",
        "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/proc/x\"",
        "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/tmp\"",
        "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/d/\"",
        "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/d\"\n[[volume]]\nname = \"w\"\nmount = \"/d\"",
        "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/d\"\n[[volume]]\nname = \"v\"\nmount = \"/e\"",
    ];
    for text in bad {
        let e = GuestConfig::parse(text);
        assert!(
            matches!(e, Err(GuestConfigError::Invalid(_))),
            "{text}: {e:?}"
        );
    }
    let mut config = minimal();
    config.workdir = "rel".into();
    assert!(matches!(
        config.to_toml(),
        Err(GuestConfigError::Invalid(_))
    ));
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "/etc/nullos/guest.toml: workdir \"rel\" is not a normalized absolute path"
    );
}

#[test]
fn the_limits_are_the_workload_manifests() {
    let mut config = minimal();
    config.entrypoint = vec!["/x".to_owned(); MAX_WORKLOAD_ARGS];
    assert!(config.validate().is_ok());
    config.entrypoint.push("one more".into());
    assert!(config.validate().is_err());

    let mut config = minimal();
    config.volumes = (0..MAX_WORKLOAD_VOLUMES)
        .map(|i| Volume {
            name: format!("v{i}"),
            mount: format!("/v{i}"),
        })
        .collect();
    assert!(config.validate().is_ok());
    config.volumes.push(Volume {
        name: "last".into(),
        mount: "/last".into(),
    });
    assert!(config.validate().is_err());

    let mut config = minimal();
    config.name = "n".repeat(MAX_WORKLOAD_NAME_BYTES);
    assert!(config.validate().is_ok());
    config.name.push('n');
    assert!(config.validate().is_err());
    let mut config = minimal();
    config
        .entrypoint
        .push("a".repeat(MAX_WORKLOAD_STRING_BYTES + 1));
    assert!(config.validate().is_err());
    let mut config = minimal();
    config.env = (0..=MAX_WORKLOAD_ENV)
        .map(|i| (format!("K{i}"), String::new()))
        .collect();
    assert!(config.validate().is_err());
}

#[test]
fn load_bounds_the_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.toml");
    let path_str = path.to_str().unwrap();
    assert!(matches!(
        GuestConfig::load(path_str),
        Err(GuestConfigError::Read(_))
    ));
    let mut text = CONTRACT_EXAMPLE.to_owned();
    text.push_str(&"#".repeat(usize::try_from(MAX_FILE_BYTES).unwrap()));
    std::fs::write(&path, text).unwrap();
    assert!(matches!(
        GuestConfig::load(path_str),
        Err(GuestConfigError::TooLarge)
    ));
    std::fs::write(&path, CONTRACT_EXAMPLE).unwrap();
    assert_eq!(GuestConfig::load(path_str).unwrap().name, "hello");
}

#[test]
fn environment_adds_path_only_when_missing() {
    let c = GuestConfig::parse(CONTRACT_EXAMPLE).unwrap();
    assert_eq!(
        c.environment(),
        [
            ("GREETING".to_owned(), "hi".to_owned()),
            ("PATH".to_owned(), DEFAULT_PATH.to_owned())
        ]
    );
    let c =
        GuestConfig::parse("name = \"a\"\nentrypoint = [\"/x\"]\nenv = [[\"PATH\", \"/opt/bin\"]]")
            .unwrap();
    assert_eq!(
        c.environment(),
        [("PATH".to_owned(), "/opt/bin".to_owned())]
    );
}

#[test]
fn at_or_below() {
    assert!(is_at_or_below("/tmp", "/tmp"));
    assert!(is_at_or_below("/tmp/x", "/tmp"));
    assert!(!is_at_or_below("/tmpx", "/tmp"));
    assert!(!is_at_or_below("/", "/tmp"));
}
