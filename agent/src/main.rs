//! `nullos`, the user's agent. See `docs/AGENT.md`.
//!
//! Exit status: 0 success, 1 the operation failed, 2 bad input (a usage error, an unknown or
//! out-of-bounds template parameter, an unreadable or altered contract file, a wrong key), with
//! one line on stderr per problem.

mod cli;

use std::process::ExitCode;

use agent::config::{Config, ConfigError};
use agent::contract_file::ContractFileError;
use agent::keys::{self, KeyFileError};
use agent::show::{Summary, TemplateSummary};
use agent::template::TemplateError;
use agent::witness::WitnessError;
use anyhow::{Context, Result};
use clap::Parser;
use cli::args::{
    Cli, Command, ContractCommand, FarmCommand, KeyCommand, LogCommand, TemplateCommand,
};
use cli::offline::{contract_new, load_template, replace_file, InputError};
use cli::online::Online;
use cli::read_contract;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `nullos nodes --json | head` would panic on the closed pipe;
    // the default disposition ends the process quietly, as other Unix tools do.
    // SAFETY: the first thing main does, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE and no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        None => eprintln!("nullos: error: {}", cli::chain(err)),
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
        Command::Log(LogCommand::Verify { json }) => cli::grid::log_verify(&online()?, json)?,
        Command::Farm(FarmCommand::Register { key, name }) => {
            cli::grid::farm_register(&mut online()?, &key, &name)?;
        }
        Command::Farm(FarmCommand::Approve {
            key,
            pending: true,
            watch,
            ..
        }) => cli::grid::farm_approve_pending(&mut online()?, &key, watch)?,
        Command::Farm(FarmCommand::Approve {
            nodes,
            key,
            withdraw,
            ..
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
            sets,
            node,
            wait,
            timeout,
            json,
        } => {
            let key = match key {
                Some(key) => key,
                None => cli::deploy::default_owner_key(state.as_deref(), json)?,
            };
            let mut online = online()?;
            let file =
                cli::deploy::contract_or_template(&mut online, &contract, &sets, &key, json)?;
            let args = cli::deploy::DeployArgs {
                key: &key,
                node: node.as_deref(),
                wait,
                timeout_secs: timeout,
                json,
            };
            cli::deploy::deploy(&mut online, &file, &args)?;
        }
        Command::Status { id, watch, json } => {
            let id = cli::deploy::resolve_id(&id)?;
            cli::deploy::status(&mut online()?, &id, watch, json)?;
        }
        Command::Logs { id, key } => {
            let id = cli::deploy::resolve_id(&id)?;
            cli::deploy::logs(&mut online()?, &id, &key)?;
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
