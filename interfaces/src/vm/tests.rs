use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

fn round_trip(spec: &VmSpec) -> VmSpec {
    VmSpec::parse_args(spec.to_args()).unwrap_or_else(|e| panic!("{spec:?}: {e}"))
}

fn disk(path: &str, read_only: bool) -> Disk {
    Disk {
        path: path.into(),
        read_only,
    }
}

#[test]
fn the_arguments_are_what_the_node_always_passed() {
    let spec = VmSpec {
        kernel: "/lib/nullos/guest/vmlinuz".into(),
        initrd: Some("/run/nullos/guest/hello.initrd".into()),
        cmdline: "console=ttyS0 quiet".into(),
        memory_mib: 128,
        vcpus: 2,
        disks: vec![
            disk("/lib/nullos/workloads/hello/root.img", true),
            disk("/var/lib/nullos/volumes/hello/data.img", false),
        ],
        net: true,
        net_allow: Vec::new(),
        net_deny: Vec::new(),
        serial: Serial::Stdout,
        kvm: None,
    };
    assert_eq!(
        spec.to_args(),
        [
            "--kernel",
            "/lib/nullos/guest/vmlinuz",
            "--initrd",
            "/run/nullos/guest/hello.initrd",
            "--cmdline",
            "console=ttyS0 quiet",
            "--memory-mib",
            "128",
            "--vcpus",
            "2",
            "--disk",
            "/lib/nullos/workloads/hello/root.img,ro",
            "--disk",
            "/var/lib/nullos/volumes/hello/data.img",
            "--net",
            "--serial",
            "stdout"
        ]
    );
    assert_eq!(round_trip(&spec), spec);
}

#[test]
fn defaults_fill_what_is_not_given() {
    assert_eq!(
        VmSpec::parse_args(["--kernel", "k"]).unwrap(),
        VmSpec::new("k")
    );
    let minimal = VmSpec::new("k");
    assert_eq!(round_trip(&minimal), minimal);
}

#[test]
fn odd_values_round_trip() {
    let mut spec = VmSpec::new(PathBuf::from(OsString::from_vec(
        b"/k\xff\xfe rnel".to_vec(),
    )));
    spec.initrd = Some("--net".into());
    spec.cmdline = "-- --kernel x \"quoted arg\" a=b=c 'single' \\ é\t\n".into();
    spec.memory_mib = u64::MAX;
    spec.vcpus = 0;
    spec.disks = vec![
        disk("/a,ro", false),
        disk("/b,rw", true),
        disk("/c,", false),
        disk("/d,x,ro", true),
        disk(",", false),
        disk("-", false),
        disk("/with space", false),
        Disk {
            path: PathBuf::from(OsString::from_vec(b"/bad\xff,utf8".to_vec())),
            read_only: false,
        },
    ];
    spec.net = true;
    spec.serial = Serial::File("/tmp/console,ro".into());
    assert_eq!(round_trip(&spec), spec);

    spec.cmdline = String::new();
    spec.serial = Serial::File(PathBuf::from(OsString::from_vec(b"-\xff".to_vec())));
    assert_eq!(round_trip(&spec), spec);
    spec.serial = Serial::File("./stdout".into());
    assert_eq!(round_trip(&spec), spec);
}

#[test]
fn inherited_descriptors_round_trip_as_file_arguments() {
    let mut spec = VmSpec::new(fd_path(3));
    spec.initrd = Some(fd_path(4));
    spec.kvm = Some(fd_path(5));
    spec.disks = vec![
        Disk {
            path: fd_path(6),
            read_only: true,
        },
        Disk {
            path: fd_path(7),
            read_only: false,
        },
    ];
    let args = spec.to_args();
    assert!(args.windows(2).any(|w| w == ["--kvm", "/proc/self/fd/5"]));
    assert!(args
        .windows(2)
        .any(|w| w == ["--disk", "/proc/self/fd/6,ro"]));
    let parsed = round_trip(&spec);
    assert_eq!(parsed, spec);
    let fds: Vec<_> = parsed
        .disks
        .iter()
        .map(|d| parse_fd_path(&d.path))
        .collect();
    assert_eq!(fds, [Some(6), Some(7)]);
    assert_eq!(parse_fd_path(&parsed.kernel), Some(3));
    assert_eq!(parsed.kvm.as_deref().and_then(parse_fd_path), Some(5));
    for not_a_descriptor in [
        "/proc/self/fd/",
        "/proc/self/fd/07",
        "/proc/self/fd/-1",
        "/proc/self/fd/+1",
        "/proc/self/fd/1x",
        "/proc/self/fd/99999999999",
        "/proc/self/fd/3/x",
        "proc/self/fd/3",
        "/dev/kvm",
    ] {
        assert_eq!(
            parse_fd_path(Path::new(not_a_descriptor)),
            None,
            "{not_a_descriptor}"
        );
    }
    assert_eq!(parse_fd_path(Path::new("/proc/self/fd/0")), Some(0));
}

#[test]
fn egress_rules_round_trip_and_bad_ones_are_refused() {
    let mut spec = VmSpec::new("k");
    spec.net = true;
    spec.net_allow = vec![
        "10.0.2.2:4000".parse().unwrap(),
        "192.168.0.0/16".parse().unwrap(),
    ];
    spec.net_deny = vec!["10.0.2.2:7878".parse().unwrap()];
    let args = spec.to_args();
    assert!(args
        .windows(2)
        .any(|w| w[0] == "--net-allow" && w[1] == "10.0.2.2/32:4000"));
    assert!(args
        .windows(2)
        .any(|w| w[0] == "--net-deny" && w[1] == "10.0.2.2/32:7878"));
    assert_eq!(round_trip(&spec), spec);
    let err = VmSpec::parse_args(["--kernel", "k", "--net-allow", "10.0.0.0/40"])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("--net-allow: "), "{err}");
}

#[test]
fn a_console_file_named_stdout_stays_a_file() {
    let mut spec = VmSpec::new("k");
    spec.serial = Serial::File("stdout".into());
    assert_eq!(round_trip(&spec).serial, Serial::File("./stdout".into()));
}

proptest! {
    #[test]
    fn generated_specs_round_trip(
        kernel in proptest::collection::vec(1u8..=255, 1..16),
        initrd in proptest::option::of(proptest::collection::vec(1u8..=255, 1..16)),
        cmdline in "\\PC{0,40}",
        memory_mib in any::<u64>(),
        vcpus in any::<u32>(),
        disks in proptest::collection::vec(
            (proptest::collection::vec(1u8..=255, 1..12), any::<bool>()), 0..5),
        net in any::<bool>(),
        serial in proptest::option::of(proptest::collection::vec(1u8..=255, 1..12)),
        kvm in proptest::option::of(proptest::collection::vec(1u8..=255, 1..12)),
    ) {
        let path = |bytes: Vec<u8>| PathBuf::from(OsString::from_vec(bytes));
        let spec = VmSpec {
            kernel: path(kernel),
            initrd: initrd.map(path),
            cmdline,
            memory_mib,
            vcpus,
            disks: disks
                .into_iter()
                .map(|(p, read_only)| Disk { path: path(p), read_only })
                .collect(),
            net,
            net_allow: Vec::new(),
            net_deny: Vec::new(),
            serial: serial.map_or(Serial::Stdout, |p| Serial::File(path(p))),
            kvm: kvm.map(path),
        };
        let expected = match &spec.serial {
            Serial::File(p) if p.as_os_str() == "stdout" => VmSpec {
                serial: Serial::File("./stdout".into()),
                ..spec.clone()
            },
            _ => spec.clone(),
        };
        prop_assert_eq!(VmSpec::parse_args(spec.to_args()).unwrap(), expected);
    }
}

#[test]
fn parse_errors_name_the_option() {
    let err = |args: &[&str]| {
        VmSpec::parse_args(args.iter().copied())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(&[]), "--kernel is required (see vmm --help)");
    assert_eq!(
        err(&["--kernel", "k", "--vcpus", "two"]),
        "--vcpus two: not a number (see vmm --help)"
    );
    assert!(err(&["--kernel", "k", "--frobnicate"]).contains("--frobnicate"));
    assert!(err(&["--kernel"]).contains("--kernel"));
    assert_eq!(
        err(&["--kernel", "k", "--disk", "/x.img,rx"]),
        "--disk /x.img,rx: unknown option \"rx\" (expected PATH or PATH,ro)"
    );
    assert_eq!(
        Disk::parse("/x.img,rx"),
        Err(DiskError::Option("/x.img,rx".into(), "rx".into()))
    );
    assert_eq!(Disk::parse(",ro"), Err(DiskError::Path(",ro".into())));
    assert_eq!(Disk::parse(""), Err(DiskError::Path(String::new())));
    assert_eq!(Disk::parse("/a"), Ok(disk("/a", false)));
}

#[test]
fn option_names_are_distinct() {
    for option in VmOption::ALL {
        assert_eq!(VmOption::named(option.name()), Some(option));
    }
    assert_eq!(VmOption::named("seccomp"), None);
}

#[test]
fn exit_codes_are_the_documented_distinct_values() {
    let codes: Vec<(u8, &str)> = VmmExit::ALL.iter().map(|e| (e.code(), e.word())).collect();
    assert_eq!(
        codes,
        [
            (0, "poweroff"),
            (1, "vmm-error"),
            (2, "bad-input"),
            (10, "reboot"),
            (11, "crash"),
            (12, "panic")
        ]
    );
    for exit in VmmExit::ALL {
        assert_eq!(VmmExit::from_code(i32::from(exit.code())), Some(exit));
    }
    for code in [-1, 3, 9, 13, 137, 256] {
        assert_eq!(VmmExit::from_code(code), None);
    }
}

#[test]
fn the_exit_code_line_round_trips_and_is_recognised_exactly() {
    for code in [0, 1, 42, 255] {
        assert_eq!(
            parse_guest_exit_code(&guest_exit_code_line(code)),
            Some(code)
        );
    }
    assert_eq!(guest_exit_code_line(7), "vmm: guest exit code=7");
    assert_eq!(
        parse_guest_exit_code("vmm: guest exit code=255\n"),
        Some(255)
    );
    assert_eq!(parse_guest_exit_code("vmm: guest exit code=256"), None);
    assert_eq!(parse_guest_exit_code("vmm: guest exit code="), None);
    assert_eq!(parse_guest_exit_code("vmm: info: guest exit code=1"), None);
    assert_eq!(parse_guest_exit_code("[x] vmm: guest exit code=1"), None);
}
