//! Contract templates, the IT expert's part: a TOML file with typed parameters and the contract
//! (workloads, resources, volumes, egress, env, placement constraints, stakeholder policy)
//! written in terms of them. [`Template::instantiate`] turns one into a [`trust::grid::Contract`]
//! with the user's `--set` values, checking every value and reporting every mistake at once.
//!
//! The format is documented in `docs/AGENT.md` ("Templates"). In short: `${name}` in a string
//! is replaced by the parameter's value; a field of another type (an int, a size, a key, a
//! digest, a bool) given exactly `"${name}"` takes the parameter's value, which must have that
//! type; otherwise the string is substituted and then read as a literal of the field's type
//! (so `"${gib}GiB"` with an int `gib` is a size). `${owner}` is the owner's key.
//!
//! File access (reading a built workload's `workload.manifest`) goes through a function the
//! caller passes, so instantiation is tested without a file system.

pub mod params;
mod resolve;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use trust::grid::limits::MAX_CONTRACT_WORKLOADS;
use trust::grid::{Contract, ContractWorkload};
use trust::{PolicyMember, PublicKey, SignedBody, SignerPolicy};

use params::{cut, ParamDef};
pub use params::{format_size, parse_size, Param, ParamType, Value};
use resolve::Cx;

/// The name of the built-in parameter holding the owner's key.
pub const OWNER_PARAM: &str = "owner";
/// The signed manifest's file name in a built workload folder (`image-builder workload`).
pub const WORKLOAD_MANIFEST_FILE: &str = "workload.manifest";

/// Why a template could not be read or instantiated: one line per mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct TemplateError(pub Vec<String>);

/// Reads a file's bytes; given to [`Template::instantiate`] so it can be tested without disks.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    template: Option<Header>,
    #[serde(default)]
    parameters: BTreeMap<String, ParamDef>,
    #[serde(default, rename = "workload")]
    workloads: Vec<RawWorkload>,
    #[serde(default)]
    placement: RawPlacement,
    stakeholders: Option<RawStakeholders>,
}

/// The template's own name and description.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// A short name.
    #[serde(default)]
    pub name: String,
    /// What the contract is for.
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: toml::Value,
    manifest: Option<toml::Value>,
    path: Option<toml::Value>,
    vcpus: toml::Value,
    memory: toml::Value,
    #[serde(default, rename = "volume")]
    volumes: Vec<RawVolume>,
    egress: Option<toml::Value>,
    #[serde(default)]
    env: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    name: toml::Value,
    size: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    host: toml::Value,
    port: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    #[serde(default)]
    farms: Vec<toml::Value>,
    min_memory: Option<toml::Value>,
    min_cpus: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStakeholders {
    threshold: toml::Value,
    #[serde(rename = "member")]
    members: Vec<RawMember>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: toml::Value,
    key: toml::Value,
    weight: Option<toml::Value>,
    required: Option<toml::Value>,
}

/// A template whose parameter definitions are checked; the rest is checked on instantiation.
#[derive(Debug)]
pub struct Template {
    /// The `[template]` header.
    pub header: Header,
    /// The parameters, by name.
    pub params: BTreeMap<String, Param>,
    raw: RawTemplate,
}

/// What an instantiation needs besides the template.
pub struct Inputs<'a> {
    /// `--set NAME=VALUE`, in order.
    pub sets: &'a [(String, String)],
    /// The owner's key (`${owner}`, and the contract's owner).
    pub owner: PublicKey,
    /// The folder relative workload paths are read from (the template's folder).
    pub base_dir: &'a Path,
    /// Reads a file.
    pub read_file: ReadFile<'a>,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("sets", &self.sets)
            .field("owner", &self.owner)
            .field("base_dir", &self.base_dir)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Reads a template's text and checks its parameter definitions.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let raw: RawTemplate = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            let line = e.span().map(|s| line_of(text, s.start));
            TemplateError(vec![match line {
                Some(line) => format!("template line {line}: {message}"),
                None => format!("template: {message}"),
            }])
        })?;
        let mut mistakes = Vec::new();
        let mut params = BTreeMap::new();
        for (name, def) in &raw.parameters {
            if name == OWNER_PARAM {
                mistakes.push(format!(
                    "template parameter '{OWNER_PARAM}' is built in (the owner's key); rename it"
                ));
                continue;
            }
            if !valid_param_name(name) {
                mistakes.push(format!(
                    "template parameter '{}': names are letters, digits and '_'",
                    cut(name)
                ));
                continue;
            }
            if let Some(p) = Param::from_def(name, def, &mut mistakes) {
                params.insert(name.clone(), p);
            }
        }
        if !mistakes.is_empty() {
            return Err(TemplateError(mistakes));
        }
        Ok(Template {
            header: raw.template.clone().unwrap_or_default(),
            params,
            raw,
        })
    }

    /// Builds version 1 of the contract the template describes, with `inputs`. Every mistake
    /// (an unknown, missing, mistyped or out-of-bounds parameter, a field out of its range, an
    /// unreadable workload) is reported, one line each.
    pub fn instantiate(&self, inputs: &Inputs<'_>) -> Result<Contract, TemplateError> {
        let mut mistakes = Vec::new();
        let mut values = params::resolve(&self.params, inputs.sets, &mut mistakes);
        values.insert(OWNER_PARAM.to_owned(), Value::Key(inputs.owner));
        let mut cx = Cx {
            params: &self.params,
            values: &values,
            mistakes,
        };
        let raw = &self.raw;

        if raw.workloads.is_empty() {
            cx.say("the template has no [[workload]]".into());
        }
        if raw.workloads.len() > MAX_CONTRACT_WORKLOADS {
            cx.say(format!(
                "the template has {} workloads, more than the {MAX_CONTRACT_WORKLOADS} a contract may run",
                raw.workloads.len()
            ));
        }
        let mut workloads = Vec::new();
        for (i, w) in raw.workloads.iter().enumerate() {
            if let Some(w) = cx.workload(i, w, inputs) {
                if workloads
                    .iter()
                    .any(|o: &ContractWorkload| o.name == w.name)
                {
                    cx.say(format!("two workloads are named '{}'", w.name));
                }
                workloads.push(w);
            }
        }
        let constraints = cx.constraints(&raw.placement);
        let stakeholders = match &raw.stakeholders {
            None => Some(SignerPolicy {
                threshold: 1,
                members: vec![PolicyMember {
                    name: OWNER_PARAM.to_owned(),
                    key: inputs.owner,
                    weight: 1,
                    required: true,
                }],
            }),
            Some(s) => cx.stakeholders(s),
        };
        let mut mistakes = cx.mistakes;
        if !mistakes.is_empty() {
            return Err(TemplateError(mistakes));
        }
        let (Some(constraints), Some(stakeholders)) = (constraints, stakeholders) else {
            return Err(TemplateError(vec!["the template is incomplete".into()]));
        };
        let contract = Contract {
            version: 1,
            supersedes: None,
            owner: inputs.owner,
            stakeholders,
            workloads,
            constraints,
        };
        if let Err(e) = contract.validate() {
            mistakes.push(format!("the contract would not be valid: {e}"));
            return Err(TemplateError(mistakes));
        }
        Ok(contract)
    }
}

/// The one-based line of byte offset `at` (any offset: counted on bytes, never sliced on chars).
fn line_of(text: &str, at: usize) -> usize {
    let before = &text.as_bytes()[..at.min(text.len())];
    1 + before.iter().filter(|&&b| b == b'\n').count()
}

fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
