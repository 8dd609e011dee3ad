//! The coldplug index: which modules the image carries, their dependencies and alias patterns.
//!
//! Text format, one record per line, fields separated by single spaces (no field may contain
//! whitespace; module paths and alias patterns never do):
//!
//! ```text
//! nullos-module-index v1
//! kernel 6.1.0-56-cloud-amd64
//! module virtio_net /lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/net/virtio_net.ko boot=0 depends=net_failover,virtio
//! module kvm /lib/modules/6.1.0-56-cloud-amd64/kernel/arch/x86/kvm/kvm.ko boot=0 depends=-
//! alias virtio:d00000001v* virtio_net
//! ```
//!
//! `depends=-` means none. `boot=1` marks a module `init` loads unconditionally. Records are
//! sorted (modules by name, aliases by pattern then module), so the same inputs give the same
//! bytes. The parser is bounded ([`MAX_INDEX_BYTES`], [`MAX_MODULES`], [`MAX_ALIASES`]) because
//! the same code will read indexes that arrive with releases.

use std::collections::{BTreeMap, BTreeSet};

use crate::glob;
use crate::modinfo::ModuleInfo;

/// The first line of every index.
pub const HEADER: &str = "nullos-module-index v1";
/// Largest index text accepted.
pub const MAX_INDEX_BYTES: usize = 16 << 20;
/// Most modules in one index.
pub const MAX_MODULES: usize = 16 * 1024;
/// Most alias records in one index.
pub const MAX_ALIASES: usize = 256 * 1024;

/// Why an index could not be parsed, built or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The text is larger than [`MAX_INDEX_BYTES`].
    #[error("module index is {0} bytes, more than the {MAX_INDEX_BYTES} allowed")]
    TooLarge(usize),
    /// The first line is not [`HEADER`].
    #[error("not a module index (first line is not '{HEADER}')")]
    BadHeader,
    /// A line could not be understood.
    #[error("module index line {line}: {problem}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// More modules or aliases than allowed.
    #[error("module index has more than {0} {1}")]
    TooMany(usize, &'static str),
    /// The same module is listed twice.
    #[error("module '{0}' is listed twice")]
    DuplicateModule(String),
    /// A module depends on one that is not in the index.
    #[error("module '{module}' depends on '{dependency}', which is not in the index")]
    MissingDependency {
        /// The module with the dependency.
        module: String,
        /// The dependency that is missing.
        dependency: String,
    },
    /// An alias names a module that is not in the index.
    #[error("alias '{pattern}' names module '{module}', which is not in the index")]
    AliasToUnknown {
        /// The alias pattern.
        pattern: String,
        /// The module it names.
        module: String,
    },
    /// A module asked for by name is not in the index.
    #[error("no module named '{0}' in the index")]
    UnknownModule(String),
    /// The dependency graph has a cycle through this module.
    #[error("module dependencies form a cycle through '{0}'")]
    Cycle(String),
    /// A name, path or pattern contains whitespace and cannot be written.
    #[error("'{0}' contains whitespace and cannot go into the index")]
    Whitespace(String),
}

/// One module the image carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Normalized module name.
    pub name: String,
    /// Absolute path of the `.ko` inside the image.
    pub path: String,
    /// Modules that must be loaded first (hard `depends=` plus present `softdep=pre:`).
    pub depends: Vec<String>,
    /// Loaded unconditionally at boot, not only on a modalias match.
    pub boot: bool,
}

/// One alias pattern and the module it loads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AliasEntry {
    /// `fnmatch` pattern matched against device modaliases.
    pub pattern: String,
    /// Module name.
    pub module: String,
}

/// The whole index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModuleIndex {
    /// `uname -r` of the kernel the modules belong to.
    pub kernel_release: String,
    /// Modules, sorted by name.
    pub modules: Vec<ModuleEntry>,
    /// Aliases, sorted.
    pub aliases: Vec<AliasEntry>,
}

impl ModuleIndex {
    /// Builds an index from module metadata and each module's path in the image.
    ///
    /// Hard dependencies must be among `modules`; `softdep=pre:` modules become dependencies only
    /// when present. Modules named in `boot` are marked for unconditional loading.
    pub fn from_modules(
        kernel_release: &str,
        modules: &[(ModuleInfo, String)],
        boot: &[String],
    ) -> Result<ModuleIndex, IndexError> {
        check_field(kernel_release)?;
        let names: BTreeSet<&str> = modules.iter().map(|(m, _)| m.name.as_str()).collect();
        let mut entries = Vec::with_capacity(modules.len());
        let mut aliases = Vec::new();
        for (info, path) in modules {
            check_field(&info.name)?;
            check_field(path)?;
            let mut depends = info.depends.clone();
            depends.extend(
                info.softdeps_pre
                    .iter()
                    .filter(|s| names.contains(s.as_str()))
                    .cloned(),
            );
            depends.sort();
            depends.dedup();
            for pattern in &info.aliases {
                check_field(pattern)?;
                aliases.push(AliasEntry {
                    pattern: pattern.clone(),
                    module: info.name.clone(),
                });
            }
            entries.push(ModuleEntry {
                name: info.name.clone(),
                path: path.clone(),
                depends,
                boot: boot.iter().any(|b| crate::normalize_name(b) == info.name),
            });
        }
        for wanted in boot {
            let wanted = crate::normalize_name(wanted);
            if !names.contains(wanted.as_str()) {
                return Err(IndexError::UnknownModule(wanted));
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        aliases.sort();
        aliases.dedup();
        let index = ModuleIndex {
            kernel_release: kernel_release.to_owned(),
            modules: entries,
            aliases,
        };
        index.validate()?;
        Ok(index)
    }

    /// Parses index text, checking every bound and every cross reference.
    pub fn parse(text: &str) -> Result<ModuleIndex, IndexError> {
        if text.len() > MAX_INDEX_BYTES {
            return Err(IndexError::TooLarge(text.len()));
        }
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(IndexError::BadHeader),
        }
        let mut index = ModuleIndex::default();
        let mut kernel = None;
        for (i, line) in lines {
            let line_no = i + 1;
            let bad = |problem| IndexError::BadLine {
                line: line_no,
                problem,
            };
            // The writer never writes one; a stray `\r` would not survive a round trip
            // (`lines` strips one from a line's end).
            if line.chars().any(char::is_control) {
                return Err(bad("control character"));
            }
            let mut fields = line.split(' ');
            match fields.next() {
                Some("kernel") => {
                    let release = fields.next().filter(|r| !r.is_empty());
                    let release = release.ok_or(bad("kernel record without a release"))?;
                    if kernel.replace(release.to_owned()).is_some() {
                        return Err(bad("second kernel record"));
                    }
                }
                Some("module") => {
                    if index.modules.len() >= MAX_MODULES {
                        return Err(IndexError::TooMany(MAX_MODULES, "modules"));
                    }
                    let name = fields.next().filter(|f| !f.is_empty());
                    let path = fields.next().filter(|f| !f.is_empty());
                    let boot = fields.next().and_then(|f| f.strip_prefix("boot="));
                    let depends = fields.next().and_then(|f| f.strip_prefix("depends="));
                    let (Some(name), Some(path), Some(boot), Some(depends)) =
                        (name, path, boot, depends)
                    else {
                        return Err(bad("expected 'module NAME PATH boot=0|1 depends=A,B|-'"));
                    };
                    let boot = match boot {
                        "0" => false,
                        "1" => true,
                        _ => return Err(bad("boot= must be 0 or 1")),
                    };
                    let depends = match depends {
                        "-" => Vec::new(),
                        list => list.split(',').map(str::to_owned).collect(),
                    };
                    if depends.iter().any(String::is_empty) {
                        return Err(bad("empty dependency name"));
                    }
                    index.modules.push(ModuleEntry {
                        name: name.to_owned(),
                        path: path.to_owned(),
                        depends,
                        boot,
                    });
                }
                Some("alias") => {
                    if index.aliases.len() >= MAX_ALIASES {
                        return Err(IndexError::TooMany(MAX_ALIASES, "aliases"));
                    }
                    let pattern = fields.next().filter(|f| !f.is_empty());
                    let module = fields.next().filter(|f| !f.is_empty());
                    let (Some(pattern), Some(module)) = (pattern, module) else {
                        return Err(bad("expected 'alias PATTERN MODULE'"));
                    };
                    index.aliases.push(AliasEntry {
                        pattern: pattern.to_owned(),
                        module: module.to_owned(),
                    });
                }
                Some("") if fields.next().is_none() => continue,
                _ => return Err(bad("unknown record")),
            }
            if fields.next().is_some() {
                return Err(bad("extra fields"));
            }
        }
        index.kernel_release = kernel.ok_or(IndexError::BadLine {
            line: 2,
            problem: "no kernel record",
        })?;
        index.validate()?;
        Ok(index)
    }

    /// Writes the index text (the inverse of [`ModuleIndex::parse`]).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(HEADER);
        out.push('\n');
        out.push_str("kernel ");
        out.push_str(&self.kernel_release);
        out.push('\n');
        for m in &self.modules {
            let depends = if m.depends.is_empty() {
                "-".to_owned()
            } else {
                m.depends.join(",")
            };
            let boot = if m.boot { 1 } else { 0 };
            out.push_str(&format!(
                "module {} {} boot={boot} depends={depends}\n",
                m.name, m.path
            ));
        }
        for a in &self.aliases {
            out.push_str(&format!("alias {} {}\n", a.pattern, a.module));
        }
        out
    }

    /// The module with this (normalized) name.
    pub fn get(&self, name: &str) -> Option<&ModuleEntry> {
        let name = crate::normalize_name(name);
        self.modules
            .binary_search_by(|m| m.name.as_str().cmp(&name))
            .ok()
            .and_then(|i| self.modules.get(i))
            .or_else(|| self.modules.iter().find(|m| m.name == name))
    }

    /// Names of the modules whose alias patterns match `modalias`, each once, in index order.
    pub fn modules_for_modalias(&self, modalias: &str) -> Vec<&str> {
        let mut found: Vec<&str> = Vec::new();
        for alias in &self.aliases {
            if !found.contains(&alias.module.as_str()) && glob::matches(&alias.pattern, modalias) {
                found.push(&alias.module);
            }
        }
        found
    }

    /// Modules marked `boot=1`.
    pub fn boot_modules(&self) -> impl Iterator<Item = &ModuleEntry> {
        self.modules.iter().filter(|m| m.boot)
    }

    /// `name` and everything it depends on, dependencies first, `name` last.
    pub fn load_order(&self, name: &str) -> Result<Vec<&ModuleEntry>, IndexError> {
        let root = self
            .get(name)
            .ok_or_else(|| IndexError::UnknownModule(crate::normalize_name(name)))?;
        let mut order: Vec<&ModuleEntry> = Vec::new();
        let mut on_path: BTreeSet<&str> = BTreeSet::new();
        // Iterative depth-first post-order: (module, index of the next dependency to visit).
        let mut stack: Vec<(&ModuleEntry, usize)> = vec![(root, 0)];
        on_path.insert(&root.name);
        while let Some((module, next)) = stack.last_mut() {
            let module: &ModuleEntry = module;
            if let Some(dep_name) = module.depends.get(*next) {
                *next += 1;
                if order.iter().any(|m| &m.name == dep_name) {
                    continue;
                }
                if on_path.contains(dep_name.as_str()) {
                    return Err(IndexError::Cycle(dep_name.clone()));
                }
                let dep = self
                    .get(dep_name)
                    .ok_or_else(|| IndexError::MissingDependency {
                        module: module.name.clone(),
                        dependency: dep_name.clone(),
                    })?;
                on_path.insert(&dep.name);
                stack.push((dep, 0));
            } else {
                on_path.remove(module.name.as_str());
                order.push(module);
                stack.pop();
            }
        }
        Ok(order)
    }

    fn validate(&self) -> Result<(), IndexError> {
        let mut names = BTreeMap::new();
        for m in &self.modules {
            if names.insert(m.name.as_str(), m).is_some() {
                return Err(IndexError::DuplicateModule(m.name.clone()));
            }
        }
        for m in &self.modules {
            for d in &m.depends {
                if !names.contains_key(d.as_str()) {
                    return Err(IndexError::MissingDependency {
                        module: m.name.clone(),
                        dependency: d.clone(),
                    });
                }
            }
        }
        for a in &self.aliases {
            if !names.contains_key(a.module.as_str()) {
                return Err(IndexError::AliasToUnknown {
                    pattern: a.pattern.clone(),
                    module: a.module.clone(),
                });
            }
        }
        for m in &self.modules {
            self.load_order(&m.name)?;
        }
        Ok(())
    }
}

fn check_field(field: &str) -> Result<(), IndexError> {
    if field.is_empty() || field.chars().any(char::is_whitespace) {
        return Err(IndexError::Whitespace(field.to_owned()));
    }
    Ok(())
}

/// The dependency closure of `roots`: every module they need, found through `lookup`.
///
/// `lookup` returns a module's metadata by normalized name, or `None` if the kernel has no such
/// module. Roots and hard dependencies must exist; `softdep=pre:` modules are included when the
/// kernel has them. The result is sorted by name.
pub fn dependency_closure<E>(
    roots: &[String],
    mut lookup: impl FnMut(&str) -> Result<Option<ModuleInfo>, E>,
) -> Result<Vec<ModuleInfo>, ClosureError<E>> {
    let mut done: BTreeMap<String, ModuleInfo> = BTreeMap::new();
    // (module name, who needs it, hard dependency?)
    let mut queue: Vec<(String, Option<String>, bool)> = roots
        .iter()
        .map(|r| (crate::normalize_name(r), None, true))
        .collect();
    while let Some((name, needed_by, hard)) = queue.pop() {
        if done.contains_key(&name) {
            continue;
        }
        let info = match lookup(&name).map_err(ClosureError::Lookup)? {
            Some(info) => info,
            None if !hard => continue,
            None => {
                return Err(match needed_by {
                    None => ClosureError::UnknownModule(name),
                    Some(module) => ClosureError::MissingDependency {
                        module,
                        dependency: name,
                    },
                })
            }
        };
        for dep in &info.depends {
            queue.push((dep.clone(), Some(name.clone()), true));
        }
        for dep in &info.softdeps_pre {
            queue.push((dep.clone(), Some(name.clone()), false));
        }
        done.insert(name, info);
    }
    Ok(done.into_values().collect())
}

/// Why a dependency closure could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ClosureError<E> {
    /// A module asked for by name does not exist in the kernel.
    #[error("unknown module '{0}': the kernel has no such module")]
    UnknownModule(String),
    /// A module needs one the kernel does not have.
    #[error("module '{module}' depends on '{dependency}', which the kernel does not have")]
    MissingDependency {
        /// The module with the dependency.
        module: String,
        /// The dependency that is missing.
        dependency: String,
    },
    /// Reading a module's metadata failed.
    #[error("reading module metadata")]
    Lookup(#[source] E),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, depends: &[&str], aliases: &[&str]) -> ModuleInfo {
        ModuleInfo {
            name: name.into(),
            depends: depends.iter().map(|s| s.to_string()).collect(),
            softdeps_pre: Vec::new(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn control_characters_are_refused() {
        // Found by fuzz-run (module_index_parse): "kernel 6.1\r\r\n" read as "6.1\r" and was
        // written back as a line that read as "6.1".
        let text = format!("{HEADER}\nkernel 6.1\r\r\n");
        assert_eq!(
            ModuleIndex::parse(&text),
            Err(IndexError::BadLine {
                line: 2,
                problem: "control character"
            })
        );
        let tab = format!("{HEADER}\nkernel 6.1\nmodule a /a\t.ko boot=0 depends=-\n");
        assert!(ModuleIndex::parse(&tab).is_err());
        let clean = format!("{HEADER}\nkernel 6.1\nmodule a /a.ko boot=0 depends=-\n");
        assert!(ModuleIndex::parse(&clean).is_ok());
    }

    fn sample() -> ModuleIndex {
        let mods = [
            info(
                "virtio_net",
                &["net_failover", "virtio"],
                &["virtio:d00000001v*"],
            ),
            info("net_failover", &["failover"], &[]),
            info("failover", &[], &[]),
            info("virtio", &[], &[]),
            info(
                "kvm_amd",
                &["kvm"],
                &["cpu:type:x86,ven*fam*mod*:feature:*0081*"],
            ),
            info(
                "kvm_intel",
                &["kvm"],
                &["cpu:type:x86,ven*fam*mod*:feature:*0085*"],
            ),
            info("kvm", &[], &[]),
        ];
        let mods: Vec<_> = mods
            .into_iter()
            .map(|m| {
                let path = format!("/lib/modules/k/{}.ko", m.name);
                (m, path)
            })
            .collect();
        ModuleIndex::from_modules("6.1.0-test", &mods, &["kvm".into()]).unwrap()
    }

    #[test]
    fn text_round_trips() {
        let index = sample();
        let text = index.to_text();
        assert!(text.starts_with("nullos-module-index v1\nkernel 6.1.0-test\n"));
        assert!(text.contains("module kvm /lib/modules/k/kvm.ko boot=1 depends=-\n"));
        assert_eq!(ModuleIndex::parse(&text).unwrap(), index);
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let index = sample();
        let order: Vec<_> = index
            .load_order("virtio-net")
            .unwrap()
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(order, ["failover", "net_failover", "virtio", "virtio_net"]);
        assert_eq!(
            index.load_order("nope").unwrap_err(),
            IndexError::UnknownModule("nope".into())
        );
    }

    #[test]
    fn modalias_matching() {
        let index = sample();
        assert_eq!(
            index.modules_for_modalias("virtio:d00000001v00001AF4"),
            ["virtio_net"]
        );
        // The node loads the KVM module of its CPU, by the CPU's modalias: SVM (feature 0x81)
        // on AMD and under QEMU's TCG, VMX (0x85) on Intel; never both.
        assert_eq!(
            index.modules_for_modalias("cpu:type:x86,ven0002fam0019mod0001:feature:,0000,0081,"),
            ["kvm_amd"]
        );
        assert_eq!(
            index.modules_for_modalias("cpu:type:x86,ven0000fam0006mod008F:feature:,0000,0085,"),
            ["kvm_intel"]
        );
        assert!(index
            .modules_for_modalias("pci:v00008086d00001234")
            .is_empty());
        assert_eq!(index.boot_modules().count(), 1);
    }

    #[test]
    fn rejects_broken_indexes() {
        let missing = "nullos-module-index v1\nkernel k\nmodule a /a.ko boot=0 depends=b\n";
        assert!(matches!(
            ModuleIndex::parse(missing),
            Err(IndexError::MissingDependency { .. })
        ));
        let cycle = "nullos-module-index v1\nkernel k\nmodule a /a.ko boot=0 depends=b\nmodule b /b.ko boot=0 depends=a\n";
        assert!(matches!(
            ModuleIndex::parse(cycle),
            Err(IndexError::Cycle(_))
        ));
        let alias = "nullos-module-index v1\nkernel k\nalias x* a\n";
        assert!(matches!(
            ModuleIndex::parse(alias),
            Err(IndexError::AliasToUnknown { .. })
        ));
        assert_eq!(ModuleIndex::parse("hello"), Err(IndexError::BadHeader));
        assert!(matches!(
            ModuleIndex::parse(
                "nullos-module-index v1\nkernel k\nmodule a /a.ko boot=2 depends=-\n"
            ),
            Err(IndexError::BadLine { line: 3, .. })
        ));
        assert!(ModuleIndex::parse("nullos-module-index v1\n").is_err());
    }

    #[test]
    fn closure_follows_hard_and_present_soft_dependencies() {
        let mut kernel: BTreeMap<String, ModuleInfo> = BTreeMap::new();
        for m in [
            info("virtio_net", &["net_failover"], &[]),
            info("net_failover", &["failover"], &[]),
            info("failover", &[], &[]),
        ] {
            kernel.insert(m.name.clone(), m);
        }
        if let Some(m) = kernel.get_mut("virtio_net") {
            m.softdeps_pre = vec!["crc_absent".into(), "failover".into()];
        }
        let lookup = |n: &str| Ok::<_, std::convert::Infallible>(kernel.get(n).cloned());
        let closure = dependency_closure(&["virtio-net".into()], lookup).unwrap();
        let names: Vec<_> = closure.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["failover", "net_failover", "virtio_net"]);

        let err = dependency_closure(&["nope".into()], lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown module 'nope': the kernel has no such module"
        );
        kernel.remove("failover");
        let lookup = |n: &str| Ok::<_, std::convert::Infallible>(kernel.get(n).cloned());
        let err = dependency_closure(&["virtio_net".into()], lookup).unwrap_err();
        assert!(matches!(err, ClosureError::MissingDependency { .. }));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,400}") {
            let _ = ModuleIndex::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_near_valid(lines in proptest::collection::vec(
            "(module|alias|kernel) [a-z/._*]{0,8}( [a-z=,0-9-]{0,8}){0,4}", 0..12)) {
            let text = format!("{HEADER}\n{}", lines.join("\n"));
            let _ = ModuleIndex::parse(&text);
        }
    }
}
