//! Tier-2 tests: tiny hand-written guests on the host's /dev/kvm, through the `vmm` binary and
//! its real boot path (bzImage loader, zero page, long-mode registers, buses, exit codes).

mod common;

use common::{assemble_elf, kvm_available, Vmm};

#[test]
fn long_mode_guest_prints_hello_boot_data_and_powers_off_with_0() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let kernel = vmm.guest("hello");
    let run = vmm.run(&kernel, &["--cmdline", "console=ttyS0 nullos.test=1"]);
    println!("{run:?}");
    assert_eq!(run.code, Some(0), "poweroff is exit code 0");
    assert_eq!(
        run.serial,
        "hello from a long-mode guest\ne820=2\ncmdline=console=ttyS0 nullos.test=1\n"
    );
    assert!(run.stderr.contains("guest poweroff"), "{}", run.stderr);
}

#[test]
fn i8042_reset_is_a_reboot_exit_code_10() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("reboot"), &[]);
    println!("{run:?}");
    assert_eq!(run.code, Some(10));
    assert_eq!(run.serial, "rebooting\n");
}

#[test]
fn halt_with_interrupts_off_is_a_crash_exit_code_11() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("halt"), &[]);
    println!("{run:?}");
    assert_eq!(run.code, Some(11));
    assert_eq!(run.serial, "halting\n");
    assert!(
        run.stderr
            .contains("all vCPUs halted with interrupts disabled"),
        "{}",
        run.stderr
    );
}

#[test]
fn triple_fault_is_a_crash_exit_code_11() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("triple_fault"), &[]);
    println!("{run:?}");
    assert_eq!(run.code, Some(11));
    assert_eq!(run.serial, "faulting\n");
    assert!(run.stderr.contains("triple fault"), "{}", run.stderr);
}

#[test]
fn unmapped_mmio_is_logged_and_the_guest_continues() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("mmio"), &[]);
    println!("{run:?}");
    assert_eq!(run.code, Some(0));
    assert_eq!(run.serial, "after mmio write\nmmio read all ones\n");
    assert!(
        run.stderr
            .contains("vmm: warn: unhandled mmio write addr=0xd0000000 data=[78, 56, 34, 12]"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("vmm: warn: unhandled mmio read addr=0xd0000000 len=4"),
        "{}",
        run.stderr
    );
}

#[test]
fn two_vcpus_both_run_the_second_started_by_init_sipi() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("smp"), &["--vcpus", "2"]);
    println!("{run:?}");
    assert_eq!(run.code, Some(0));
    assert_eq!(run.serial, "bsp\nap\nbsp saw ap\n");
}

#[test]
fn a_lone_vcpu_waiting_for_sipi_beside_a_halted_one_is_a_crash() {
    if !kvm_available() {
        return;
    }
    // The halt guest never starts vCPU 1: both are stuck, the VM can never progress.
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("halt"), &["--vcpus", "2"]);
    println!("{run:?}");
    assert_eq!(run.code, Some(11));
}

#[test]
fn elf_kernel_is_entered_at_its_elf_entry_in_long_mode() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let kernel = assemble_elf("hello", vmm.dir.path());
    let run = vmm.run(&kernel, &["--cmdline", "elf=1"]);
    println!("{run:?}");
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.serial,
        "hello from a long-mode guest\ne820=2\ncmdline=elf=1\n"
    );
}

/// An ELF with a PVH note is entered at the note's 32-bit address (its ELF entry is a `ud2`),
/// with `ebx` = `hvm_start_info` describing the command line, memory map, initrd and RSDP.
#[test]
fn elf_kernel_with_a_pvh_note_is_entered_through_pvh() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let kernel = assemble_elf("pvh", vmm.dir.path());
    let initrd = vmm.dir.path().join("initrd");
    std::fs::write(&initrd, b"PVH! and more").unwrap();
    let run = vmm.run(
        &kernel,
        &["--cmdline", "pvh=1", "--initrd", initrd.to_str().unwrap()],
    );
    println!("{run:?}");
    assert_eq!(run.code, Some(0), "poweroff");
    assert_eq!(
        run.serial,
        "hello from a PVH guest\ncmdline=pvh=1\nmemmap=2\nmodules=1\ninitrd=PVH!\nrsdp=RSD PTR \n"
    );
    assert!(
        run.stderr.lines().any(|l| l == "vmm: guest exit code=7"),
        "{}",
        run.stderr
    );

    // Without an initrd there is no module.
    let run = vmm.run(&kernel, &["--cmdline", "x"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.serial,
        "hello from a PVH guest\ncmdline=x\nmemmap=2\nmodules=0\nrsdp=RSD PTR \n"
    );
}

#[test]
fn initrd_is_placed_and_described_in_the_zero_page() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let kernel = vmm.guest("initrd");
    let initrd = vmm.dir.path().join("initrd");
    std::fs::write(&initrd, b"initrd says hi\n").unwrap();
    let run = vmm.run(&kernel, &["--initrd", initrd.to_str().unwrap()]);
    println!("{run:?}");
    assert_eq!(run.code, Some(0));
    assert_eq!(run.serial, "initrd says hi\n");
}

#[test]
fn acpi_tables_are_found_from_the_zero_page_and_the_exit_code_is_reported() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("acpi_exit"), &[]);
    println!("{run:?}");
    assert_eq!(run.code, Some(0), "poweroff");
    assert_eq!(run.serial, "RSD PTR NULLOS\nFACP\n");
    assert!(
        run.stderr.lines().any(|l| l == "vmm: guest exit code=42"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_panic_reported_on_the_pvpanic_port_is_exit_12() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("panic"), &[]);
    println!("{run:?}");
    assert_eq!(run.code, Some(12));
    assert_eq!(run.serial, "1\n", "the port offers PVPANIC_PANICKED");
    assert!(run.stderr.contains("kernel panic"), "{}", run.stderr);
}

#[test]
fn a_guest_that_reports_no_code_gets_no_exit_code_line() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("hello"), &[]);
    assert_eq!(run.code, Some(0));
    assert!(!run.stderr.contains("guest exit code"), "{}", run.stderr);
}

/// Every thread of a running VMM is under the seccomp filter (mode 2) with no_new_privs.
#[test]
fn every_vmm_thread_runs_under_seccomp_with_no_new_privs() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let kernel = vmm.guest("spin");
    let serial = vmm.dir.path().join("spin.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vmm"))
        .arg("--kernel")
        .arg(&kernel)
        .arg("--serial")
        .arg(&serial)
        .args(["--memory-mib", "32", "--vcpus", "2"])
        .spawn()
        .expect("spawn vmm");
    let pid = child.id();
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&serial).unwrap_or_default() != "spinning\n" {
        assert!(started.elapsed().as_secs() < 20, "guest did not start");
        assert!(child.try_wait().unwrap().is_none(), "vmm exited early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(field("Seccomp:"), "2", "{status}");
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
        threads += 1;
    }
    assert!(threads >= 3, "main + 2 vCPU threads, saw {threads}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The virtio-mmio windows answer the driver's identity reads: a block device in the first
/// window (id 2), the network device after the disks (id 1), both version 2.
#[test]
fn virtio_mmio_windows_identify_block_then_net_devices() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let disk = vmm.dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let disk_arg = format!("{},ro", disk.display());
    let run = vmm.run(&vmm.guest("virtio_probe"), &["--disk", &disk_arg, "--net"]);
    println!("{run:?}");
    assert_eq!(run.code, Some(0));
    assert_eq!(run.serial, "virt22\nvirt21\n");
}

#[test]
fn a_disk_that_cannot_be_opened_is_bad_input() {
    if !kvm_available() {
        return;
    }
    let vmm = Vmm::new();
    let run = vmm.run(&vmm.guest("hello"), &["--disk", "/nonexistent/disk.img"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("vmm: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(errors[0].contains("/nonexistent/disk.img"), "{}", errors[0]);
}
