//! The command line: every command and option (`nullos --help`).

use std::path::PathBuf;

use agent::config::{DEFAULT_NOTARY, NOTARY_ENV};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nullos",
    version,
    about = "The user's agent: contracts for the NullOS grid"
)]
pub struct Cli {
    /// The notary's URL (used by the commands that talk to it).
    #[arg(long, global = true, env = NOTARY_ENV, default_value = DEFAULT_NOTARY, value_name = "URL")]
    pub notary: String,
    /// The notary's checkpoint key (`nullos-ed25519 <hex>` as nullos-notary printed it, or a
    /// .pub file); pinned in the state directory on first use.
    #[arg(long, global = true, env = "NULLOS_NOTARY_KEY", value_name = "KEY")]
    pub notary_key: Option<String>,
    /// Where the pinned notary key and the last verified checkpoint are kept (default
    /// $XDG_DATA_HOME/nullos or ~/.local/share/nullos).
    #[arg(long, global = true, env = "NULLOS_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Register a contract with its approvals and place it on a node. Given a template, first
    /// instantiates it (`--set`), signs it as its owner and pushes the workloads it names.
    Deploy {
        /// The contract file, or a contract template (TOML).
        contract: PathBuf,
        /// The owner's secret key file (default: your key in the state directory, `owner.key`,
        /// made on first use).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// With a template: a parameter's value (repeatable); NAME=@FILE reads it from FILE.
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
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
    /// The last console lines of a contract's workloads, which the node sealed to the owner.
    Logs {
        /// The contract id (64 hex) or contract file.
        id: String,
        /// The owner's secret key file (only it opens the lines).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
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
pub enum LogCommand {
    /// Check the notary's checkpoint extends the kept one (and keep the new one).
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum FarmCommand {
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
        #[arg(required_unless_present = "pending", value_name = "NODE")]
        nodes: Vec<String>,
        /// The farmer's secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Withdraw the enrollment instead.
        #[arg(long, conflicts_with = "pending")]
        withdraw: bool,
        /// Enroll every node the directory lists as registered with this farm and not enrolled:
        /// only for a farm whose boot network you control (any machine can name your farm).
        #[arg(long, conflicts_with = "nodes")]
        pending: bool,
        /// With --pending: look again every SECS seconds, until interrupted.
        #[arg(long, requires = "pending", value_name = "SECS")]
        watch: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum TemplateCommand {
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
pub enum KeyCommand {
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
pub enum ContractCommand {
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

pub fn parse_set(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not NAME=VALUE")),
    }
}
