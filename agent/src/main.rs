//! `nullos`, the user's agent. See `docs/AGENT.md`.
//!
//! Exit status: 0 success, 1 the operation failed, 2 bad input (a usage error, an unknown or
//! out-of-bounds template parameter, an unreadable or altered contract file, a wrong key), with
//! one line on stderr per problem.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cli;

use agent::config::{Config, ConfigError, DEFAULT_NOTARY, NOTARY_ENV};
use agent::contract_file::{ContractFile, ContractFileError};
use agent::keys::{self, KeyFileError};
use agent::show::{Summary, TemplateSummary};
use agent::template::{Inputs, Template, TemplateError};
use agent::witness::WitnessError;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cli::online::Online;

/// Largest template read, in bytes.
const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;
/// Largest `--set NAME=@FILE` file read, in bytes.
const MAX_SET_FILE_BYTES: u64 = 64 * 1024;

#[derive(Parser)]
#[command(
    name = "nullos",
    version,
    about = "The user's agent: contracts for the NullOS grid"
)]
struct Cli {
    /// The notary's URL (used by the commands that talk to it).
    #[arg(long, global = true, env = NOTARY_ENV, default_value = DEFAULT_NOTARY, value_name = "URL")]
    notary: String,
    /// The notary's checkpoint key (`nullos-ed25519 <hex>` as nullos-notary printed it, or a
    /// .pub file); pinned in the state directory on first use.
    #[arg(long, global = true, env = "NULLOS_NOTARY_KEY", value_name = "KEY")]
    notary_key: Option<String>,
    /// Where the pinned notary key and the last verified checkpoint are kept (default
    /// $XDG_DATA_HOME/nullos or ~/.local/share/nullos).
    #[arg(long, global = true, env = "NULLOS_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Templates: what parameters a contract template takes.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Contracts: instantiate a template, show a contract file, approve it.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// The notary's log, witnessed.
    #[command(subcommand)]
    Log(LogCommand),
    /// Farms: register one, enroll its nodes.
    #[command(subcommand)]
    Farm(FarmCommand),
    /// The node directory: capacity, free capacity, liveness.
    Nodes {
        /// Only the nodes of this farm (its farmer key).
        #[arg(long, value_name = "KEY")]
        farm: Option<String>,
        /// Only nodes with at least this much memory.
        #[arg(long, value_name = "MIB")]
        min_memory: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload a built workload (image-builder workload's output) to the notary's blob store.
    Push {
        /// The workload folder (workload.manifest, root.img).
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register a contract with its approvals and place it on a node.
    Deploy {
        /// The contract file.
        contract: PathBuf,
        /// The owner's secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The node to place it on (its key); by default the live node it fits best.
        #[arg(long, value_name = "ID")]
        node: Option<String>,
        /// Follow it until the node reports it running or exited, or why not.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A contract's approvals, placement and the node's report.
    Status {
        /// The contract id (64 hex) or contract file.
        id: String,
        /// Print again on every change, until interrupted.
        #[arg(long)]
        watch: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a contract: its node stops it.
    Cancel {
        /// The contract id (64 hex) or contract file.
        id: String,
        /// The owner's secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Why (one line, logged).
        #[arg(long, default_value = "cancelled by its owner")]
        reason: String,
    },
    /// The self-healing agent: re-places the owner's contracts whose node failed them.
    Agent {
        /// The owner's secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Seconds past a node's lease expiry before the contract moves.
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        grace: u64,
        /// Restarts after which a failing workload moves.
        #[arg(long, default_value_t = 3, value_name = "N")]
        restart_limit: u32,
        /// Seconds between checks when the log is quiet.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        poll: u64,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Check the notary's checkpoint extends the kept one (and keep the new one).
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FarmCommand {
    /// Register (or rename) the farm of a farmer key.
    Register {
        /// The farmer's secret key file (the farm's id is its public key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The farm's name.
        #[arg(long)]
        name: String,
    },
    /// Enroll nodes in the farm (the farmer vouches for them).
    Approve {
        /// Node keys (nullos-ed25519 <hex>, 64 hex, or .pub files).
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
        /// The farmer's secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Withdraw the enrollment instead.
        #[arg(long)]
        withdraw: bool,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// A template's parameters: type, default or required, bounds, description.
    Show {
        /// The template (TOML).
        template: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// A new ed25519 key pair: FILE (secret, mode 0600) and FILE.pub (public, one line).
    New {
        /// The secret key file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A comment stored in the secret key file.
        #[arg(long, default_value = "nullos key")]
        comment: String,
    },
}

#[derive(Subcommand)]
enum ContractCommand {
    /// Instantiate a template into a contract file signed by its owner.
    New {
        /// The template (TOML).
        template: PathBuf,
        /// A parameter's value (repeatable); NAME=@FILE takes the value from FILE (e.g. a .pub).
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// The owner's secret key file.
        #[arg(long, value_name = "FILE")]
        owner_key: PathBuf,
        /// The contract file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// What a contract runs, where it may run, who must sign and who has.
    Show {
        /// The contract file.
        contract: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a stakeholder's approval to a contract file.
    Sign {
        /// The contract file (rewritten in place).
        contract: PathBuf,
        /// The stakeholder's secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Also send the approval to the notary (the contract must be registered).
        #[arg(long)]
        send: bool,
    },
}

fn parse_set(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not NAME=VALUE")),
    }
}

/// The user's input is at fault: a file that cannot be read, an output that exists.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::from(if is_bad_input(&err) { 2 } else { 1 })
        }
    }
}

/// One line per problem: the error chain on one line, or each template mistake on its own.
fn report(err: &anyhow::Error) {
    let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
    match err.chain().find_map(|e| e.downcast_ref::<TemplateError>()) {
        Some(TemplateError(mistakes)) => {
            let context = &chain[..chain.len().saturating_sub(1)];
            for m in mistakes {
                let mut line = context.to_vec();
                line.push(m.clone());
                eprintln!("nullos: error: {}", line.join(": "));
            }
        }
        None => eprintln!("nullos: error: {}", chain.join(": ")),
    }
}

fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<TemplateError>()
            || e.is::<ContractFileError>()
            || e.is::<InputError>()
            || e.is::<ConfigError>()
            || e.is::<cli::BadInput>()
            || e.downcast_ref::<WitnessError>()
                .is_some_and(WitnessError::is_bad_input)
            || e.downcast_ref::<KeyFileError>()
                .is_some_and(KeyFileError::is_bad_input)
    })
}

fn run(cli: Cli) -> Result<()> {
    // Checked for every command, so a bad URL is refused early.
    let config = Config::new(&cli.notary)?;
    let notary_key = cli
        .notary_key
        .as_deref()
        .map(cli::parse_key_arg)
        .transpose()?;
    let state = cli.state.clone();
    let online = || Online::open(&config.notary, notary_key, state.as_deref());
    match cli.command {
        Command::Key(KeyCommand::New { out, comment }) => {
            let (public_path, public) = keys::generate(&out, &comment)?;
            println!("wrote {} (secret key, keep it private)", out.display());
            println!("wrote {} (public key)", public_path.display());
            println!("{public}");
        }
        Command::Template(TemplateCommand::Show { template, json }) => {
            let summary = TemplateSummary::of(&load_template(&template)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.to_text());
            }
        }
        Command::Contract(ContractCommand::New {
            template,
            sets,
            owner_key,
            out,
        }) => contract_new(&template, &sets, &owner_key, &out)?,
        Command::Contract(ContractCommand::Show { contract, json }) => {
            let file = read_contract(&contract)?;
            let summary = Summary::of(&file);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.to_text());
            }
        }
        Command::Contract(ContractCommand::Sign {
            contract,
            key,
            send,
        }) => {
            let mut file = read_contract(&contract)?;
            let key = keys::load_secret(&key)?;
            let name = file
                .approve(&key)
                .with_context(|| format!("cannot approve {}", contract.display()))?;
            replace_file(&contract, file.encode().as_bytes())?;
            println!("approved by '{name}' ({})", key.public().short());
            println!("policy {}", Summary::of(&file).stakeholders.policy);
            if send {
                let document = file
                    .approval_documents()
                    .last()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                let receipt = online()?.submit(&document, "approval")?;
                println!(
                    "sent the approval to the notary (log index {})",
                    receipt.index
                );
            }
        }
        Command::Log(LogCommand::Verify { json }) => cli::grid::log_verify(&mut online()?, json)?,
        Command::Farm(FarmCommand::Register { key, name }) => {
            cli::grid::farm_register(&mut online()?, &key, &name)?;
        }
        Command::Farm(FarmCommand::Approve {
            nodes,
            key,
            withdraw,
        }) => cli::grid::farm_approve(&mut online()?, &key, &nodes, withdraw)?,
        Command::Nodes {
            farm,
            min_memory,
            json,
        } => cli::grid::nodes(&mut online()?, farm.as_deref(), min_memory, json)?,
        Command::Push { dir, json } => cli::grid::push(&mut online()?, &dir, json)?,
        Command::Deploy {
            contract,
            key,
            node,
            wait,
            timeout,
            json,
        } => {
            let file = read_contract(&contract)?;
            let args = cli::deploy::DeployArgs {
                key: &key,
                node: node.as_deref(),
                wait,
                timeout_secs: timeout,
                json,
            };
            cli::deploy::deploy(&mut online()?, &file, &args)?;
        }
        Command::Status { id, watch, json } => {
            let id = cli::deploy::resolve_id(&id)?;
            cli::deploy::status(&mut online()?, &id, watch, json)?;
        }
        Command::Cancel { id, key, reason } => {
            let id = cli::deploy::resolve_id(&id)?;
            cli::deploy::cancel(&mut online()?, &id, &key, &reason)?;
        }
        Command::Agent {
            key,
            grace,
            restart_limit,
            poll,
        } => {
            let args = cli::heal::AgentArgs {
                key: &key,
                grace_secs: grace,
                restart_limit,
                poll_secs: poll,
            };
            cli::heal::run(&mut online()?, &args)?;
        }
    }
    Ok(())
}

fn contract_new(
    template_path: &Path,
    sets: &[(String, String)],
    owner_key: &Path,
    out: &Path,
) -> Result<()> {
    if out.exists() {
        return Err(InputError::Exists(out.to_owned()).into());
    }
    let owner = keys::load_secret(owner_key)?;
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
    let read_file = |path: &Path| read_limited(path, trust::limits::MAX_DOCUMENT_BYTES as u64 + 1);
    let contract = template
        .instantiate(&Inputs {
            sets: &sets,
            owner: owner.public(),
            base_dir,
            read_file: &read_file,
        })
        .with_context(|| template_path.display().to_string())?;
    let file = ContractFile::new(contract, &owner)?;
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

fn load_template(path: &Path) -> Result<Template> {
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

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, InputError> {
    read_limited(path, max).map_err(|source| InputError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_contract(path: &Path) -> Result<ContractFile> {
    cli::read_contract(path)
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
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
