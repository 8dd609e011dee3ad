//! Host tools in the node image (`[tools] binaries`): a dynamically linked executable travels
//! with its program interpreter (`PT_INTERP`) and every library it needs (`DT_NEEDED`,
//! recursively), each at its absolute path in the tree it is taken from, so the loader finds
//! them at run time exactly as it would in that tree.
//!
//! The tree is a sysroot (`[tools] sysroot`: the pinned Debian packages of `debian.lock`,
//! unpacked by `make sysroot`), so what goes into an image does not depend on what the build
//! host has installed; without one it is the build machine's `/`. Symbolic links are followed
//! inside the tree, an absolute target meaning the tree's root (libc6 links
//! `/lib64/ld-linux-x86-64.so.2` to `/lib/x86_64-linux-gnu/…`), never out to the host.
//!
//! Libraries are searched like `ld.so` does without a cache: the needing object's `DT_RUNPATH`
//! (or, without one, its `DT_RPATH`), `$ORIGIN` expanded, then the multiarch and 64-bit system
//! folders ([`SYSTEM_DIRS`]). Written here because no crate resolves ELF dependencies against a
//! file tree; parsing is the `object` crate's.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use object::read::elf::{Dyn, ElfFile64, ProgramHeader};
use object::{elf, Endianness};

/// The folders searched after an object's own run path, in order.
pub const SYSTEM_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
];

/// Most symbolic links followed for one path (Linux's own limit, `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Why a tool could not be taken into the image.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// A tool path is not absolute.
    #[error("tool '{0}' must be an absolute path")]
    NotAbsolute(String),
    /// A tool is not a file in the tree.
    #[error("{path} is not a file in {}", root.display())]
    Missing {
        /// The tool's path in the tree.
        path: String,
        /// The tree.
        root: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not an x86-64 ELF object.
    #[error("{path} is not a 64-bit x86-64 ELF file")]
    NotElf {
        /// The file.
        path: String,
    },
    /// A needed library is nowhere on the search path.
    #[error("{library}, needed by {needed_by}, is not in its run path or {}", SYSTEM_DIRS.join(", "))]
    MissingLibrary {
        /// The library's name (`DT_NEEDED`).
        library: String,
        /// The object that needs it.
        needed_by: String,
    },
}

/// One file a tool brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFile {
    /// Absolute path in the image (the same as on the build machine).
    pub dest: String,
    /// Where it is read from: `dest` in the tree, symbolic links followed inside it.
    pub source: PathBuf,
    /// Permission bits: 0755 for the tools and the loader (the kernel executes both), 0644 for
    /// libraries.
    pub mode: u32,
}

/// What the dynamic linker needs to know about one ELF object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `PT_INTERP`, for executables.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` folders.
    pub runpath: Vec<String>,
    /// `DT_RPATH` folders (used only without a run path).
    pub rpath: Vec<String>,
}

/// Reads the interpreter and dynamic entries of an x86-64 ELF64 object (`None` if it is not one).
pub fn read_dynamic(bytes: &[u8]) -> Option<Dynamic> {
    let file = ElfFile64::<Endianness>::parse(bytes).ok()?;
    let endian = file.endian();
    if file.elf_header().e_machine.get(endian) != elf::EM_X86_64 {
        return None;
    }
    let mut out = Dynamic::default();
    for ph in file.elf_program_headers() {
        if let Ok(Some(interp)) = ph.interpreter(endian, bytes) {
            let interp = interp.split(|b| *b == 0).next().unwrap_or(interp);
            out.interpreter = Some(String::from_utf8_lossy(interp).into_owned());
        }
    }
    let sections = file.elf_section_table();
    let Ok(Some((entries, link))) = sections.dynamic(endian, bytes) else {
        return Some(out);
    };
    let strings = sections.strings(endian, bytes, link).ok()?;
    for entry in entries {
        let Some(tag) = entry.tag32(endian) else {
            continue;
        };
        let text = || {
            entry
                .string(endian, strings)
                .ok()
                .map(|s| String::from_utf8_lossy(s).into_owned())
        };
        let split = |s: String| -> Vec<String> {
            s.split(':')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match tag {
            elf::DT_NEEDED => out.needed.extend(text()),
            elf::DT_RUNPATH => out.runpath.extend(text().map(split).unwrap_or_default()),
            elf::DT_RPATH => out.rpath.extend(text().map(split).unwrap_or_default()),
            elf::DT_NULL => break,
            _ => {}
        }
    }
    Some(out)
}

/// Whether `library` is the file name of an interpreter already taken (executable, 0755).
fn is_loader(files: &BTreeMap<String, u32>, library: &str) -> bool {
    files.iter().any(|(path, mode)| {
        *mode == 0o755 && path.rsplit('/').next() == Some(library) && library.starts_with("ld-")
    })
}

/// The folders searched for the libraries of the object at `origin_path` (an absolute path).
pub fn search_dirs(dynamic: &Dynamic, origin_path: &str) -> Vec<String> {
    let origin = origin_path
        .rsplit_once('/')
        .map(|(dir, _)| if dir.is_empty() { "/" } else { dir })
        .unwrap_or("/");
    let own = if dynamic.runpath.is_empty() {
        &dynamic.rpath
    } else {
        &dynamic.runpath
    };
    own.iter()
        .map(|d| d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        .filter(|d| d.starts_with('/'))
        .chain(SYSTEM_DIRS.iter().map(|d| (*d).to_owned()))
        .collect()
}

/// Where the absolute `path` of the tree at `root` is on this machine, symbolic links followed
/// inside the tree (an absolute target starts again at `root`); `None` unless it is a regular
/// file. With `root` = `/` this is the kernel's own resolution.
pub fn locate(root: &Path, path: &str) -> Option<PathBuf> {
    let parts = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    let mut pending: VecDeque<String> = parts(path).into();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let here: PathBuf = resolved
            .iter()
            .chain([&part])
            .fold(root.into(), |p, c| p.join(c));
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if !meta.file_type().is_symlink() {
            resolved.push(part);
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return None;
        }
        let target = std::fs::read_link(&here).ok()?;
        let target = target.to_str()?;
        if target.starts_with('/') {
            resolved.clear();
        }
        for part in parts(target).into_iter().rev() {
            pending.push_front(part);
        }
    }
    let found = resolved.iter().fold(root.to_owned(), |p, c| p.join(c));
    found.is_file().then_some(found)
}

/// Every file the `binaries` (absolute paths in the tree at `root`: a sysroot, or `/` on the
/// build machine) need, themselves included, sorted by destination.
pub fn resolve(root: &Path, binaries: &[String]) -> Result<Vec<ToolFile>, ToolsError> {
    let mut files: BTreeMap<String, u32> = BTreeMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for binary in binaries {
        if !binary.starts_with('/') {
            return Err(ToolsError::NotAbsolute(binary.clone()));
        }
        files.insert(binary.clone(), 0o755);
        queue.push_back(binary.clone());
    }
    let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
    while let Some(path) = queue.pop_front() {
        let source = locate(root, &path).ok_or_else(|| ToolsError::Missing {
            path: path.clone(),
            root: root.to_owned(),
        })?;
        sources.insert(path.clone(), source.clone());
        let bytes = std::fs::read(&source).map_err(|e| ToolsError::Read {
            path: source.clone(),
            source: e,
        })?;
        let dynamic =
            read_dynamic(&bytes).ok_or_else(|| ToolsError::NotElf { path: path.clone() })?;
        if let Some(interp) = &dynamic.interpreter {
            if files.insert(interp.clone(), 0o755).is_none() {
                queue.push_back(interp.clone());
            }
        }
        let dirs = search_dirs(&dynamic, &path);
        for library in &dynamic.needed {
            // libc names the loader by its soname; the loader, mapped already, satisfies that.
            if is_loader(&files, library) {
                continue;
            }
            let found = if library.contains('/') {
                Some(library.clone()).filter(|l| l.starts_with('/') && locate(root, l).is_some())
            } else {
                dirs.iter()
                    .map(|d| format!("{}/{library}", d.trim_end_matches('/')))
                    .find(|candidate| locate(root, candidate).is_some())
            };
            let Some(found) = found else {
                return Err(ToolsError::MissingLibrary {
                    library: library.clone(),
                    needed_by: path.clone(),
                });
            };
            if !files.contains_key(&found) {
                files.insert(found.clone(), 0o644);
                queue.push_back(found);
            }
        }
    }
    Ok(files
        .into_iter()
        .filter_map(|(dest, mode)| {
            let source = sources.remove(&dest)?;
            Some(ToolFile { dest, source, mode })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MKE2FS: &str = "/sbin/mke2fs";

    /// Whether the host's `mke2fs` is there. Without it the test fails naming the package,
    /// unless `NULLOS_SKIP_HOST_TOOL_TESTS=1` (the integration tests' switch, which CI never
    /// sets) asks to skip it, which is printed.
    fn host_has_mke2fs() -> bool {
        if Path::new(MKE2FS).is_file() {
            return true;
        }
        let why = format!("{MKE2FS} is not installed (apt-get install e2fsprogs)");
        if std::env::var("NULLOS_SKIP_HOST_TOOL_TESTS").as_deref() == Ok("1") {
            println!("skipped (NULLOS_SKIP_HOST_TOOL_TESTS=1): {why}");
            false
        } else {
            panic!("{why}; set NULLOS_SKIP_HOST_TOOL_TESTS=1 to skip the tests that need it");
        }
    }

    #[test]
    fn mke2fs_brings_its_loader_and_libraries() {
        if !host_has_mke2fs() {
            return;
        }
        let files = resolve(Path::new("/"), &[MKE2FS.to_owned()]).unwrap();
        let dests: Vec<&str> = files.iter().map(|f| f.dest.as_str()).collect();
        let find = |name: &str| files.iter().find(|f| f.dest.ends_with(name));
        assert_eq!(find("/mke2fs").map(|f| f.mode), Some(0o755), "{dests:?}");
        assert_eq!(
            find("ld-linux-x86-64.so.2").map(|f| f.mode),
            Some(0o755),
            "{dests:?}"
        );
        for lib in [
            "libext2fs.so.2",
            "libcom_err.so.2",
            "libblkid.so.1",
            "libuuid.so.1",
            "libe2p.so.2",
            "libc.so.6",
        ] {
            assert_eq!(find(lib).map(|f| f.mode), Some(0o644), "{lib} in {dests:?}");
        }
        assert_eq!(
            files.iter().filter(|f| f.dest.contains("ld-linux")).count(),
            1,
            "the loader once, at its PT_INTERP path: {dests:?}"
        );
        // Sorted, each once, every one readable.
        assert!(dests.windows(2).all(|w| w[0] < w[1]));
        assert!(files.iter().all(|f| f.source.is_file()));
    }

    /// A fake root where the libraries are only in /usr/lib64 (last in the search order) and
    /// one of them is missing.
    #[test]
    fn a_fake_tree_is_searched_in_order_and_a_missing_library_is_named() {
        if !host_has_mke2fs() {
            return;
        }
        let real = resolve(Path::new("/"), &[MKE2FS.to_owned()]).unwrap();
        let root = tempfile::tempdir().unwrap();
        let put = |dest: &str, source: &Path| {
            let to = root.path().join(dest.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(source, to).unwrap();
        };
        let mut libraries = Vec::new();
        for f in &real {
            let name = f.dest.rsplit('/').next().unwrap();
            if f.mode == 0o644 {
                put(&format!("/usr/lib64/{name}"), &f.source);
                libraries.push(name.to_owned());
            } else {
                put(&f.dest, &f.source);
            }
        }
        let files = resolve(root.path(), &[MKE2FS.to_owned()]).unwrap();
        for name in &libraries {
            let dest = format!("/usr/lib64/{name}");
            assert!(files.iter().any(|f| f.dest == dest), "{dest}");
        }
        // Libraries in an earlier folder win.
        put(
            "/lib/x86_64-linux-gnu/libuuid.so.1",
            &root.path().join("usr/lib64/libuuid.so.1"),
        );
        let files = resolve(root.path(), &[MKE2FS.to_owned()]).unwrap();
        assert!(files
            .iter()
            .any(|f| f.dest == "/lib/x86_64-linux-gnu/libuuid.so.1"));
        assert!(!files.iter().any(|f| f.dest == "/usr/lib64/libuuid.so.1"));

        std::fs::remove_file(root.path().join("usr/lib64/libe2p.so.2")).unwrap();
        let err = resolve(root.path(), &[MKE2FS.to_owned()]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("libe2p.so.2, needed by /"), "{text}");
        assert!(!text.contains('\n'));
    }

    /// libc6's loader link is absolute: in a sysroot it must lead to the sysroot's loader, never
    /// the build host's.
    #[test]
    fn symbolic_links_are_followed_inside_the_tree() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(r.join("lib64")).unwrap();
        std::fs::write(r.join("lib/x86_64-linux-gnu/ld.so"), b"loader").unwrap();
        symlink("/lib/x86_64-linux-gnu/ld.so", r.join("lib64/ld.so")).unwrap();
        symlink("../lib64/./ld.so", r.join("lib/rel.so")).unwrap();
        // Exists on every build host, not in the tree.
        symlink("/proc/self/exe", r.join("lib/host")).unwrap();
        symlink("loop", r.join("lib/loop")).unwrap();
        let real = r.join("lib/x86_64-linux-gnu/ld.so");
        assert_eq!(locate(r, "/lib64/ld.so"), Some(real.clone()));
        assert_eq!(locate(r, "/lib/rel.so"), Some(real));
        assert_eq!(locate(r, "/lib/host"), None);
        assert_eq!(locate(r, "/lib/loop"), None);
        assert_eq!(locate(r, "/lib64"), None, "a folder is not a file");
        assert!(matches!(
            resolve(r, &["/lib/missing".into()]),
            Err(ToolsError::Missing { .. })
        ));
    }

    #[test]
    fn run_paths_expand_origin_and_runpath_overrides_rpath() {
        let d = Dynamic {
            interpreter: None,
            needed: vec![],
            runpath: vec!["$ORIGIN/../lib".into(), "relative".into()],
            rpath: vec!["/ignored".into()],
        };
        let dirs = search_dirs(&d, "/opt/tool/bin/t");
        assert_eq!(dirs[0], "/opt/tool/bin/../lib");
        assert_eq!(&dirs[1..], SYSTEM_DIRS);
        let d = Dynamic {
            rpath: vec!["${ORIGIN}".into()],
            ..Dynamic::default()
        };
        assert_eq!(search_dirs(&d, "/t")[0], "/");
    }

    #[test]
    fn non_elf_and_relative_tools_are_refused() {
        assert_eq!(read_dynamic(b"#!/bin/sh\n"), None);
        assert!(matches!(
            resolve(Path::new("/"), &["sbin/mke2fs".into()]),
            Err(ToolsError::NotAbsolute(_))
        ));
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("script"), b"#!/bin/sh\n").unwrap();
        assert!(matches!(
            resolve(root.path(), &["/script".into()]),
            Err(ToolsError::NotElf { .. })
        ));
    }
}
