//! Choosing the image's modules: wanted names and groups, their dependency closure, the index.

use std::collections::BTreeMap;

use modindex::index::{dependency_closure, ClosureError};
use modindex::{IndexError, ModinfoError, ModuleIndex, ModuleInfo};

use crate::config::ModulesSection;
use crate::kernel::{KernelError, KernelSource};

/// Why the module set could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// A module named in the config does not exist in the kernel.
    #[error("unknown module '{0}': kernel {1} has no such module")]
    UnknownModule(String, String),
    /// A group matches no module.
    #[error("module group '{0}' matches no module of kernel {1} (groups are folders under lib/modules/<release>/kernel/)")]
    EmptyGroup(String, String),
    /// A module needs a module the kernel does not ship.
    #[error("module '{module}' depends on '{dependency}', which kernel {release} does not have")]
    MissingDependency {
        /// The module.
        module: String,
        /// Its missing dependency.
        dependency: String,
        /// The kernel release.
        release: String,
    },
    /// Reading a module file failed.
    #[error("reading module file")]
    Read(#[source] KernelError),
    /// A module's metadata is unreadable.
    #[error("module {path}")]
    Modinfo {
        /// The module's path under `kernel/`.
        path: String,
        /// What failed.
        #[source]
        source: ModinfoError,
    },
    /// The resulting index is inconsistent.
    #[error("building the module index")]
    Index(#[source] IndexError),
}

/// The modules that go into the image.
#[derive(Debug)]
pub struct SelectedModules {
    /// The coldplug index (`/lib/modules/nullos.index`).
    pub index: ModuleIndex,
    /// `(path in the image, bytes)` of every module.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Computes the module set of an image.
pub fn select(
    kernel: &KernelSource,
    wanted: &ModulesSection,
) -> Result<SelectedModules, ModulesError> {
    // Module name (normalized file stem) → path under kernel/.
    let by_name: BTreeMap<String, &str> = kernel
        .modules
        .keys()
        .map(|rel| {
            let stem = rel
                .rsplit('/')
                .next()
                .unwrap_or(rel)
                .trim_end_matches(".ko");
            (modindex::normalize_name(stem), rel.as_str())
        })
        .collect();
    let mut roots: Vec<String> = wanted
        .names
        .iter()
        .chain(&wanted.boot)
        .map(|n| modindex::normalize_name(n))
        .collect();
    for name in &roots {
        if !by_name.contains_key(name) {
            return Err(ModulesError::UnknownModule(
                name.clone(),
                kernel.release.clone(),
            ));
        }
    }
    for group in &wanted.groups {
        let prefix = format!("{}/", group.trim_matches('/'));
        let before = roots.len();
        roots.extend(
            by_name
                .iter()
                .filter(|(_, rel)| rel.starts_with(&prefix))
                .map(|(name, _)| name.clone()),
        );
        if roots.len() == before {
            return Err(ModulesError::EmptyGroup(
                group.clone(),
                kernel.release.clone(),
            ));
        }
    }

    let mut bytes_by_name: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    let lookup = |name: &str| -> Result<Option<ModuleInfo>, ModulesError> {
        let Some(rel) = by_name.get(name) else {
            return Ok(None);
        };
        let bytes = kernel.read_module(rel).map_err(ModulesError::Read)?;
        let info = ModuleInfo::from_elf(&bytes, name).map_err(|source| ModulesError::Modinfo {
            path: (*rel).to_owned(),
            source,
        })?;
        bytes_by_name.insert(info.name.clone(), ((*rel).to_owned(), bytes));
        Ok(Some(info))
    };
    let closure = dependency_closure(&roots, lookup).map_err(|e| match e {
        ClosureError::UnknownModule(n) => ModulesError::UnknownModule(n, kernel.release.clone()),
        ClosureError::MissingDependency { module, dependency } => ModulesError::MissingDependency {
            module,
            dependency,
            release: kernel.release.clone(),
        },
        ClosureError::Lookup(e) => e,
    })?;

    let mut entries = Vec::with_capacity(closure.len());
    let mut files = Vec::with_capacity(closure.len());
    for info in closure {
        let Some((rel, bytes)) = bytes_by_name.remove(&info.name) else {
            continue;
        };
        let image_path = format!("/lib/modules/{}/kernel/{rel}", kernel.release);
        files.push((image_path.clone(), bytes));
        entries.push((info, image_path));
    }
    let index = ModuleIndex::from_modules(&kernel.release, &entries, &wanted.boot)
        .map_err(ModulesError::Index)?;
    Ok(SelectedModules { index, files })
}
