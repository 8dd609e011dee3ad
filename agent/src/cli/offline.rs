//! The offline commands' file handling: instantiating a template, reading and writing
//! contract files.

use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};

use agent::contract_file::ContractFile;
use agent::keys;
use agent::template::{Inputs, Template, TemplateError};
use anyhow::{Context, Result};

/// Largest template read, in bytes.
const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;
/// Largest `--set NAME=@FILE` file read, in bytes.
const MAX_SET_FILE_BYTES: u64 = 64 * 1024;

/// The user's input is at fault: a file that cannot be read, an output that exists.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

pub fn contract_new(
    template_path: &Path,
    sets: &[(String, String)],
    owner_key: &Path,
    out: &Path,
) -> Result<()> {
    if out.exists() {
        return Err(InputError::Exists(out.to_owned()).into());
    }
    let owner = keys::load_secret(owner_key)?;
    let (file, _) = instantiate(template_path, sets, &owner)?;
    write_new(out, file.encode().as_bytes())?;
    let c = file.contract();
    println!(
        "wrote {}: contract {} version {}",
        out.display(),
        c.id(),
        c.version
    );
    let names: Vec<&str> = c
        .stakeholders
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    println!(
        "to be approved by weight {} of: {} (nullos contract sign {} --key FILE)",
        c.stakeholders.threshold,
        names.join(", "),
        out.display()
    );
    Ok(())
}

/// Version 1 of the contract `template_path` describes with `sets`, signed by `owner` (no
/// approval yet), and the workload folders it read (each folder whose `workload.manifest` the
/// template names).
pub fn instantiate(
    template_path: &Path,
    sets: &[(String, String)],
    owner: &trust::SecretKey,
) -> Result<(ContractFile, Vec<PathBuf>)> {
    let sets = sets
        .iter()
        .map(|(name, value)| match value.strip_prefix('@') {
            Some(file) => {
                let bytes = read_bounded(Path::new(file), MAX_SET_FILE_BYTES)?;
                let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                Ok((name.clone(), text))
            }
            None => Ok((name.clone(), value.clone())),
        })
        .collect::<Result<Vec<_>, InputError>>()?;
    let template = load_template(template_path)?;
    let base_dir = template_path.parent().unwrap_or(Path::new("."));
    let folders = RefCell::new(Vec::new());
    let read_file = |path: &Path| {
        if path.file_name() == Some(interfaces::paths::WORKLOAD_MANIFEST_FILE.as_ref()) {
            if let Some(folder) = path.parent() {
                folders.borrow_mut().push(folder.to_owned());
            }
        }
        read_limited(path, trust::limits::MAX_DOCUMENT_BYTES as u64 + 1)
    };
    let contract = template
        .instantiate(&Inputs {
            sets: &sets,
            owner: owner.public(),
            base_dir,
            read_file: &read_file,
        })
        .with_context(|| template_path.display().to_string())?;
    let file = ContractFile::new(contract, owner)?;
    let mut folders = folders.into_inner();
    folders.dedup();
    Ok((file, folders))
}

pub fn load_template(path: &Path) -> Result<Template> {
    let bytes = read_bounded(path, MAX_TEMPLATE_BYTES)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| TemplateError(vec!["the template is not UTF-8 text".into()]))
        .with_context(|| path.display().to_string())?;
    Template::parse(&text).with_context(|| path.display().to_string())
}

fn read_limited(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, InputError> {
    read_limited(path, max).map_err(|source| InputError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| -> anyhow::Error {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                InputError::Exists(path.to_owned()).into()
            } else {
                anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `path` whole or not at all: a temporary file beside it, then a rename.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
