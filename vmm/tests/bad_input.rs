//! Bad input is one `vmm: error:` line and exit code 2, never a panic; checked before /dev/kvm
//! is opened, so these run everywhere.

mod common;

use common::Vmm;

fn assert_bad_input(run: &common::Run, needle: &str) {
    println!("{run:?}");
    assert_eq!(run.code, Some(2), "bad input is exit code 2");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", run.stderr);
    assert!(lines[0].starts_with("vmm: error: "), "{}", lines[0]);
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn missing_kernel_file() {
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.dir.path().join("nope"), &[]);
    assert_bad_input(&run, "open kernel");
}

#[test]
fn a_file_that_is_not_a_kernel() {
    let vmm = Vmm::new();
    let path = vmm.dir.path().join("text");
    std::fs::write(
        &path,
        "just some text, certainly no boot sector\n".repeat(100),
    )
    .unwrap();
    assert_bad_input(&vmm.run(&path, &[]), "not a bzImage or ELF kernel");
    let empty = vmm.dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_bad_input(&vmm.run(&empty, &[]), "load kernel");
}

#[test]
fn a_bzimage_without_the_64_bit_entry() {
    let vmm = Vmm::new();
    let mut img = common::bzimage(&[0xf4]);
    img[0x236] = 0; // clear XLF_KERNEL_64
    let path = vmm.dir.path().join("old.bzImage");
    std::fs::write(&path, img).unwrap();
    assert_bad_input(&vmm.run(&path, &[]), "no 64-bit entry point");
}

#[test]
fn zero_vcpus_and_too_much_memory() {
    let vmm = Vmm::new();
    let kernel = vmm.dir.path().join("k");
    std::fs::write(&kernel, common::bzimage(&[0xf4])).unwrap();
    assert_bad_input(&vmm.run(&kernel, &["--vcpus", "0"]), "--vcpus 0");
    assert_bad_input(
        &vmm.run(&kernel, &["--memory-mib", "100000000"]),
        "--memory-mib 100000000",
    );
}

#[test]
fn missing_initrd_and_oversized_command_line() {
    let vmm = Vmm::new();
    let kernel = vmm.dir.path().join("k");
    std::fs::write(&kernel, common::bzimage(&[0xf4])).unwrap();
    assert_bad_input(
        &vmm.run(&kernel, &["--initrd", "/nonexistent/initrd"]),
        "open initrd",
    );
    let long = "x".repeat(3000);
    assert_bad_input(
        &vmm.run(&kernel, &["--cmdline", &long]),
        "kernel command line",
    );
    // An initrd larger than guest memory cannot be placed.
    let big = vmm.dir.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    assert_bad_input(
        &vmm.run(&kernel, &["--initrd", big.to_str().unwrap()]),
        "place initrd",
    );
}
