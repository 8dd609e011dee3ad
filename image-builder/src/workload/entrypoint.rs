//! Will the entrypoint run? It must be in the image, executable, and everything the kernel loads
//! to start it (the ELF program interpreter, or a script's `#!` interpreter) must be there too.
//! The images have no shell and no libc unless the workload brings them.

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{elf, Endianness};

use super::tree::{Node, RootTree};

/// How many `#!` interpreters may chain (Linux allows a few levels too).
const MAX_INTERPRETER_DEPTH: usize = 4;

/// Checks that `path` can be executed inside the image. The error is one line naming the path
/// and what is missing; `read` gives a source file's bytes.
pub fn check(
    tree: &RootTree,
    path: &str,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<Vec<u8>>,
) -> Result<(), String> {
    check_depth(tree, path, read, 0)
}

fn check_depth(
    tree: &RootTree,
    path: &str,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<Vec<u8>>,
    depth: usize,
) -> Result<(), String> {
    let (resolved, node) = tree.resolve(path).map_err(|missing| {
        // Only worth naming when a symlink led elsewhere.
        if path.starts_with(&missing) {
            format!("entrypoint {path} is not in the image")
        } else {
            format!("entrypoint {path} is not in the image ({missing} is missing)")
        }
    })?;
    let Node::File { source, executable } = node else {
        return Err(format!("entrypoint {path} is not a regular file"));
    };
    if !executable {
        return Err(format!(
            "entrypoint {path} is not executable (its source {} has no execute bit)",
            source.display()
        ));
    }
    let bytes = read(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    if let Some(script) = bytes.strip_prefix(b"#!") {
        let line = script.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let Some(interpreter) = line.split_whitespace().next() else {
            return Err(format!(
                "entrypoint {path} is a script without an interpreter"
            ));
        };
        if depth >= MAX_INTERPRETER_DEPTH {
            return Err(format!(
                "entrypoint {path}: too many nested #! interpreters"
            ));
        }
        return check_depth(tree, interpreter, read, depth + 1).map_err(|e| {
            format!("entrypoint {path} is a script for {interpreter}, which cannot run: {e}")
        });
    }
    match elf_interpreter(&bytes) {
        Err(reason) => Err(format!("entrypoint {path} ({resolved}) {reason}")),
        Ok(None) => Ok(()),
        Ok(Some(loader)) => match tree.resolve(&loader) {
            Ok((_, Node::File { .. })) => Ok(()),
            _ => Err(format!(
                "entrypoint {path} is dynamically linked and its interpreter {loader} is not in the image: build it static (-C target-feature=+crt-static) or add the interpreter and its libraries"
            )),
        },
    }
}

/// The PT_INTERP path of an x86-64 ELF executable, `None` when it is static.
fn elf_interpreter(bytes: &[u8]) -> Result<Option<String>, &'static str> {
    let file = ElfFile64::<Endianness>::parse(bytes)
        .map_err(|_| "is neither a 64-bit ELF executable nor a #! script")?;
    let endian = file.endian();
    let header = file.elf_header();
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Err("is not an x86-64 executable");
    }
    if !matches!(header.e_type(endian), elf::ET_EXEC | elf::ET_DYN) {
        return Err("is an ELF file but not an executable");
    }
    for ph in file.elf_program_headers() {
        if let Ok(Some(raw)) = ph.interpreter(endian, bytes) {
            return Ok(Some(String::from_utf8_lossy(raw).into_owned()));
        }
        if ph.p_type(endian) == elf::PT_INTERP {
            return Err("has an unreadable program interpreter");
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::*;

    /// A tree whose files' "sources" are keys into `contents`.
    fn fixture(files: &[(&str, bool, &[u8])]) -> (RootTree, HashMap<PathBuf, Vec<u8>>) {
        let mut tree = RootTree::new();
        let mut contents = HashMap::new();
        for (path, exec, bytes) in files {
            let source = PathBuf::from(format!("src{path}"));
            tree.add_file(path, source.clone(), *exec).unwrap();
            contents.insert(source, bytes.to_vec());
        }
        (tree, contents)
    }

    fn run(files: &[(&str, bool, &[u8])], path: &str) -> Result<(), String> {
        let (tree, contents) = fixture(files);
        let read = |p: &Path| {
            contents
                .get(p)
                .cloned()
                .ok_or_else(|| std::io::Error::other("no such source"))
        };
        check(&tree, path, &read)
    }

    fn me() -> Vec<u8> {
        // The test binary: a dynamically linked x86-64 executable with an interpreter.
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn missing_and_non_executable_are_refused() {
        let err = run(&[], "/bin/hello").unwrap_err();
        assert_eq!(err, "entrypoint /bin/hello is not in the image");
        let err = run(&[("/bin/hello", false, b"#!/x\n")], "/bin/hello").unwrap_err();
        assert!(err.contains("not executable"), "{err}");
        let err = run(&[("/bin/hello", true, b"MZ")], "/bin/hello").unwrap_err();
        assert!(err.contains("neither a 64-bit ELF"), "{err}");
    }

    #[test]
    fn dynamic_needs_its_interpreter_in_the_image() {
        let me = me();
        let err = run(&[("/bin/app", true, &me)], "/bin/app").unwrap_err();
        assert!(err.contains("dynamically linked"), "{err}");
        assert!(!err.contains('\n'));
        let loader = elf_interpreter(&me)
            .unwrap()
            .expect("the test binary is dynamic");
        let ok = run(&[("/bin/app", true, &me), (&loader, true, b"")], "/bin/app");
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn scripts_need_their_interpreter() {
        let me = me();
        let loader = elf_interpreter(&me).unwrap().unwrap();
        let script = b"#!/bin/tool -x\necho\n";
        let err = run(&[("/bin/run", true, script)], "/bin/run").unwrap_err();
        assert!(err.contains("script for /bin/tool"), "{err}");
        let files: &[(&str, bool, &[u8])] = &[
            ("/bin/run", true, script),
            ("/bin/tool", true, &me),
            (&loader, true, b""),
        ];
        assert_eq!(run(files, "/bin/run"), Ok(()));
        let looping: &[(&str, bool, &[u8])] = &[("/bin/run", true, b"#!/bin/run\n")];
        assert!(run(looping, "/bin/run").unwrap_err().contains("too many"));
    }
}
