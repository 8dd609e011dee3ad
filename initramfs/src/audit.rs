//! The no-shell rule every initramfs we build must pass: no interactive program or remote-access
//! daemon by name, no script (`#!`), and no executable outside the image's allow-list. Checked by
//! the tests on every archive the project builds (node, stage 0, PXE, the guest's).

use crate::newc::{S_IFMT, S_IFREG};
use crate::Reader;

/// Names of interactive programs and remote-access daemons that must never be in an image.
pub const FORBIDDEN_PROGRAMS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "toybox",
    "login", "getty", "agetty", "su", "sudo", "sshd", "dropbear", "telnetd",
];

/// Every way the (uncompressed, possibly concatenated) newc `archive` breaks the rule, one line
/// each; empty when it passes. `allowed` lists the executables (regular files with an execute
/// bit) it may hold, as archive paths without the leading `/`; an unreadable archive is a
/// problem too.
pub fn shell_problems(archive: &[u8], allowed: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in Reader::new(archive) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(format!("unreadable archive: {e}"));
                break;
            }
        };
        let path = entry.name;
        let name = path.rsplit('/').next().unwrap_or(path);
        if FORBIDDEN_PROGRAMS.contains(&name) {
            problems.push(format!("/{path}: a shell or login program by name"));
        }
        let regular = entry.header.mode & S_IFMT == S_IFREG;
        if regular && entry.data.starts_with(b"#!") {
            problems.push(format!("/{path}: a script"));
        }
        if regular && entry.header.mode & 0o111 != 0 && !allowed.contains(&path) {
            problems.push(format!("/{path}: an executable outside the allow-list"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tree;

    fn archive(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut tree = Tree::new();
        for (path, data, mode) in files {
            tree.add_file(path, data.to_vec(), *mode).unwrap();
        }
        tree.to_cpio(0).unwrap()
    }

    #[test]
    fn allowed_executables_and_data_pass() {
        let a = archive(&[
            ("/init", b"\x7fELF", 0o755),
            ("/etc/nullos/node.toml", b"version = 1\n", 0o644),
        ]);
        assert_eq!(shell_problems(&a, &["init"]), Vec::<String>::new());
    }

    #[test]
    fn shells_scripts_and_unlisted_executables_are_named() {
        let a = archive(&[
            ("/init", b"\x7fELF", 0o755),
            ("/bin/sh", b"\x7fELF", 0o755),
            ("/usr/bin/busybox", b"data", 0o644),
            ("/etc/rc", b"#!/bin/sh\n", 0o755),
            ("/bin/tool", b"\x7fELF", 0o700),
        ]);
        assert_eq!(
            shell_problems(&a, &["init", "etc/rc"]),
            [
                "/bin/sh: a shell or login program by name",
                "/bin/sh: an executable outside the allow-list",
                "/bin/tool: an executable outside the allow-list",
                "/etc/rc: a script",
                "/usr/bin/busybox: a shell or login program by name",
            ]
        );
    }

    #[test]
    fn garbage_is_a_problem_not_a_pass() {
        assert_eq!(shell_problems(b"garbage", &[]).len(), 1);
    }
}
