//! `deploy`, `status` and `cancel`: a contract's life in the notary.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use agent::contract_file::ContractFile;
use agent::keys;
use agent::ledger::{ContractLog, Progress};
use agent::placement::{choose_node, next_placement};
use anyhow::{Context, Result};
use serde_json::{json, Value as Json};
use trust::grid::rules::approvals_satisfy;
use trust::grid::{Cancellation, Contract, ContractId, Placement};
use trust::{PublicKey, SecretKey};

use super::online::{candidates, now, parse_contract_id, Online};
use super::{sign, BadInput, Failed};

/// What `deploy` was asked.
pub struct DeployArgs<'a> {
    pub key: &'a Path,
    pub node: Option<&'a str>,
    pub wait: bool,
    pub timeout_secs: u64,
    pub json: bool,
}

/// The owner key `deploy` uses without `--key`: `owner.key` in the state directory, made on
/// first use (said on stderr, so `--json` output stays one document).
pub fn default_owner_key(state: Option<&Path>, json: bool) -> Result<std::path::PathBuf> {
    let path = agent::witness::state_dir(state)?.join(DEFAULT_OWNER_KEY);
    if !path.exists() {
        let (_, public) = keys::generate(&path, "nullos owner key")?;
        let line = format!("made your owner key {} ({public})", path.display());
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(path)
}

/// The file name of [`default_owner_key`].
pub const DEFAULT_OWNER_KEY: &str = "owner.key";

/// The contract file at `path`, or, when `path` is a contract template, version 1 of the
/// contract it describes with `sets`, owned and approved by `key` (when the owner is one of its
/// stakeholders), after pushing the workload folders it names. `sets` with a contract file is
/// bad input.
pub fn contract_or_template(
    online: &mut Online,
    path: &Path,
    sets: &[(String, String)],
    key: &Path,
    json: bool,
) -> Result<ContractFile> {
    let bytes = super::offline::read_bounded(path, super::MAX_FILE_BYTES as u64 + 1)?;
    let file_error = match ContractFile::decode(&bytes) {
        Ok(file) if sets.is_empty() => return Ok(file),
        Ok(_) => {
            return Err(BadInput(format!(
                "{} is a contract file: --set is for templates",
                path.display()
            ))
            .into())
        }
        Err(e) => e,
    };
    let is_template = std::str::from_utf8(&bytes)
        .ok()
        .is_some_and(|text| agent::template::Template::parse(text).is_ok());
    if !is_template {
        return Err(anyhow::Error::new(file_error).context(format!(
            "{} is neither a contract file nor a contract template; as a contract file it is refused",
            path.display()
        )));
    }
    let owner = keys::load_secret(key)?;
    let (mut file, folders) = super::offline::instantiate(path, sets, &owner)?;
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    for folder in folders {
        let pushed = super::grid::push_workload(online, &folder)?;
        let uploaded = pushed.files.iter().filter(|f| f.3).count();
        say(format!(
            "workload {} ({}): {uploaded} of {} files uploaded, the rest already there",
            pushed.name,
            folder.display(),
            pushed.files.len()
        ));
    }
    let id = file.contract().id();
    match file.approve(&owner) {
        Ok(name) => say(format!(
            "contract {id} version 1 from {}, approved by its owner '{name}'",
            path.display()
        )),
        Err(e) => say(format!(
            "contract {id} version 1 from {}; not approved by its owner ({e})",
            path.display()
        )),
    }
    Ok(file)
}

/// Loads the owner's key and checks it is `owner`.
fn owner_key(path: &Path, owner: &PublicKey) -> Result<SecretKey> {
    let key = keys::load_secret(path)?;
    if key.public() != *owner {
        return Err(BadInput(format!(
            "{} is not the contract's owner key ({} is)",
            path.display(),
            owner.short()
        ))
        .into());
    }
    Ok(key)
}

/// `nullos deploy C --key FILE [--node ID] [--wait]`.
pub fn deploy(online: &mut Online, file: &ContractFile, args: &DeployArgs<'_>) -> Result<()> {
    let contract = file.contract();
    let id = contract.id();
    let key = owner_key(args.key, &contract.owner)?;
    let node = args.node.map(super::parse_key_arg).transpose()?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    let mut log = online.contract_log(&id)?;
    register(online, file, &log, &say)?;
    online.refresh(&id, &mut log)?;
    if let Some(c) = &log.cancellation {
        return Err(Failed(format!("contract {id} is cancelled: {}", c.reason)).into());
    }
    let weight = approvals_met(contract, &log)?;
    say(format!(
        "approvals met: weight {weight} of threshold {}",
        contract.stakeholders.threshold
    ));
    let placement = place(online, contract, &key, &mut log, node, &say)?;
    if !args.wait {
        if args.json {
            println!(
                "{}",
                json!({
                    "contract": id.0.to_hex(),
                    "version": contract.version,
                    "node": hex::encode(placement.node.as_bytes()),
                    "placement": placement.sequence,
                    "state": "placed",
                })
            );
        }
        return Ok(());
    }
    let limit = Duration::from_secs(args.timeout_secs);
    let outcome = watch_progress(online, &id, &mut log, Some(limit), args.json)?;
    if args.json {
        let status = status_json(online, &id, &log)?;
        println!("{}", serde_json::to_string_pretty(&status)?);
    }
    match outcome {
        Progress::Done(_) => Ok(()),
        Progress::Failed(line) => Err(Failed(line).into()),
        Progress::Waiting(line) => {
            Err(Failed(format!("gave up after {} s: {line}", args.timeout_secs)).into())
        }
    }
}

/// Sends the contract unless the log holds this version, and each approval of the file the log
/// does not hold.
fn register(
    online: &mut Online,
    file: &ContractFile,
    log: &ContractLog,
    say: &dyn Fn(String),
) -> Result<()> {
    let contract = file.contract();
    let (id, version) = (contract.id(), contract.version);
    match log.latest() {
        Some(l) if l.version > version => {
            return Err(BadInput(format!(
            "the log holds version {} of contract {id}, newer than the file's version {version}",
            l.version
        ))
            .into())
        }
        Some(l) if l.version == version && l.body_digest() != contract.body_digest() => {
            return Err(BadInput(format!(
                "the log holds another body for version {version} of contract {id}"
            ))
            .into())
        }
        Some(l) if l.version == version => {
            say(format!("contract {id} version {version} is registered"));
        }
        _ => {
            let r = online.submit(file.contract_document(), "contract")?;
            say(format!(
                "registered contract {id} version {version} (log index {})",
                r.index
            ));
        }
    }
    for (approval, document) in file.approvals().zip(file.approval_documents()) {
        if online.logged(document)?.is_some() {
            continue;
        }
        let r = online.submit(document, "approval")?;
        say(format!(
            "sent the approval of {} (log index {})",
            approval.stakeholder.short(),
            r.index
        ));
    }
    Ok(())
}

/// The approved weight when the approvals in the log (from the file or sent by the
/// stakeholders themselves) meet the policy; else which signatures are missing.
fn approvals_met(contract: &Contract, log: &ContractLog) -> Result<u64> {
    let tally = approvals_satisfy(contract, &log.approvals).map_err(|e| {
        let body = contract.body_digest();
        let (signed, unsigned): (Vec<_>, Vec<_>) =
            contract.stakeholders.members.iter().partition(|m| {
                log.approvals.iter().any(|a| {
                    a.stakeholder == m.key && a.version == contract.version && a.body == body
                })
            });
        let names = |members: Vec<&trust::PolicyMember>| {
            members.iter().map(|m| m.name.clone()).collect::<Vec<_>>()
        };
        Failed(format!(
            "signatures missing: {e} (signed: {}; not signed: {})",
            list(&names(signed)),
            list(&names(unsigned))
        ))
    })?;
    Ok(tally.weight)
}

/// The contract's placement: the one in the log if it places this version (on `node`, when
/// given), else a new one on `node` or on the live node it fits best.
fn place(
    online: &mut Online,
    contract: &Contract,
    key: &SecretKey,
    log: &mut ContractLog,
    node: Option<PublicKey>,
    say: &dyn Fn(String),
) -> Result<Placement> {
    let current = log
        .placement
        .as_ref()
        .filter(|p| p.version == contract.version && node.is_none_or(|n| n == p.node));
    if let Some(p) = current {
        say(format!(
            "placed on node {} (placement {})",
            p.node.short(),
            p.sequence
        ));
        return Ok(p.clone());
    }
    let (chosen, reason) = match node {
        Some(n) => (n, "placed by its owner on this node (nullos deploy --node)"),
        None => {
            let candidates = candidates(&online.nodes()?, contract, log);
            let c = choose_node(contract, &candidates, now(), None)
                .map_err(|e| Failed(format!("placement impossible: {e}")))?;
            (
                c.registration.node,
                "the live node it fits best (nullos deploy)",
            )
        }
    };
    let p = next_placement(contract, log.placement.as_ref(), chosen, reason);
    let r = online.submit(&sign(&p, key)?, "placement").map_err(|e| {
        Failed(format!(
            "placement on node {} refused: {}",
            chosen.short(),
            super::chain(&e)
        ))
    })?;
    say(format!(
        "placed on node {} (placement {}, log index {})",
        chosen.short(),
        p.sequence,
        r.index
    ));
    online.refresh(&contract.id(), log)?;
    Ok(p)
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nobody".into()
    } else {
        names.join(", ")
    }
}

/// Follows the contract's log until its progress is done or failed (or `deadline`), showing
/// each change: a spinner on a terminal, one line per change otherwise (none with `json`).
fn watch_progress(
    online: &mut Online,
    id: &ContractId,
    log: &mut ContractLog,
    limit: Option<Duration>,
    json: bool,
) -> Result<Progress> {
    let started = Instant::now();
    let spinner = (!json && std::io::stdout().is_terminal()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mut shown = String::new();
    loop {
        let progress = log.progress();
        let line = match &progress {
            Progress::Waiting(l) | Progress::Done(l) | Progress::Failed(l) => l.clone(),
        };
        if line != shown {
            match &spinner {
                Some(s) => s.set_message(line.clone()),
                None if !json => println!("{line}"),
                None => {}
            }
            shown = line;
        }
        if !matches!(progress, Progress::Waiting(_)) {
            if let Some(s) = spinner {
                s.finish_with_message(shown);
            }
            return Ok(progress);
        }
        let left = limit.map(|l| l.saturating_sub(started.elapsed()));
        if left == Some(Duration::ZERO) {
            if let Some(s) = spinner {
                s.abandon_with_message(shown);
            }
            return Ok(progress);
        }
        let poll = left.map_or(Duration::from_secs(10), |l| l.min(Duration::from_secs(10)));
        let poll = poll.max(Duration::from_secs(1));
        for (index, data) in online.wait(&super::online::contract_key(id), log.last_index, poll)? {
            log.apply(id, index, &data);
        }
    }
}

/// A contract id from `text`: 64 hex characters, or a contract file.
pub fn resolve_id(text: &str) -> Result<ContractId> {
    if let Some(id) = parse_contract_id(text) {
        return Ok(id);
    }
    let path = Path::new(text);
    if path.exists() {
        return Ok(super::read_contract(path)?.contract().id());
    }
    Err(BadInput(format!(
        "'{text}' is neither a contract id (64 hex) nor a contract file"
    ))
    .into())
}

/// What `status --json` prints.
fn status_json(online: &mut Online, id: &ContractId, log: &ContractLog) -> Result<Json> {
    let Some(c) = log.latest() else {
        return Err(Failed(format!("contract {id} is not in the notary's log")).into());
    };
    let policy = log.policy();
    let placement = match &log.placement {
        Some(p) => {
            let node = online.nodes()?.into_iter().find(|n| n.key == p.node);
            json!({
                "node": hex::encode(p.node.as_bytes()),
                "sequence": p.sequence,
                "version": p.version,
                "reason": p.reason,
                "node_live": node.as_ref().map(|n| n.live),
                "lease_expires": node.as_ref().and_then(|n| n.lease_expires),
            })
        }
        None => Json::Null,
    };
    let (state, line) = match log.progress() {
        Progress::Waiting(l) => ("waiting", l),
        Progress::Done(l) => ("done", l),
        Progress::Failed(l) => ("failed", l),
    };
    let reports: Vec<Json> = log
        .reports
        .iter()
        .map(|r| {
            json!({
                "node": hex::encode(r.node.as_bytes()),
                "sequence": r.sequence,
                "version": r.version,
                "workloads": r.workloads.iter().map(|w| json!({
                    "name": w.name, "state": w.state.name(), "exit_code": w.exit_code,
                    "restarts": w.restarts, "reason": w.reason,
                    "tail_bytes": w.tail.as_ref().map(Vec::len),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "id": id.0.to_hex(),
        "owner": hex::encode(c.owner.as_bytes()),
        "version": c.version,
        "cancelled": log.cancellation.is_some(),
        "approvals": {
            "policy_met": policy.as_ref().is_some_and(Result::is_ok),
            "reason": policy.and_then(|p| p.err()).map(|e| e.to_string()),
        },
        "placement": placement,
        "reports": reports,
        "state": state,
        "line": line,
    }))
}

fn status_text(v: &Json) -> String {
    let mut out = format!(
        "contract {} version {}\n",
        v["id"].as_str().unwrap_or(""),
        v["version"]
    );
    out.push_str(&format!(
        "approvals: {}\n",
        if v["approvals"]["policy_met"].as_bool() == Some(true) {
            "policy met".to_owned()
        } else {
            v["approvals"]["reason"]
                .as_str()
                .unwrap_or("policy not met")
                .to_owned()
        }
    ));
    if v["cancelled"].as_bool() == Some(true) {
        out.push_str("cancelled\n");
    }
    match v["placement"].as_object() {
        Some(p) => out.push_str(&format!(
            "placed on node {} (placement {}, node {}): {}\n",
            p["node"].as_str().unwrap_or(""),
            p["sequence"],
            match p["node_live"].as_bool() {
                Some(true) => "live",
                Some(false) => "down",
                None => "unknown",
            },
            p["reason"].as_str().unwrap_or("")
        )),
        None => out.push_str("not placed\n"),
    }
    out.push_str(&format!(
        "{}: {}\n",
        v["state"].as_str().unwrap_or(""),
        v["line"].as_str().unwrap_or("")
    ));
    out
}

/// `nullos status ID [--watch] [--json]`.
pub fn status(online: &mut Online, id: &ContractId, watch: bool, json: bool) -> Result<()> {
    let mut log = online.contract_log(id)?;
    let mut shown = Json::Null;
    loop {
        let v = status_json(online, id, &log)?;
        if v != shown {
            if json {
                println!(
                    "{}",
                    if watch {
                        v.to_string()
                    } else {
                        serde_json::to_string_pretty(&v)?
                    }
                );
            } else {
                print!("{}", status_text(&v));
            }
            shown = v;
        }
        if !watch {
            return Ok(());
        }
        for (index, data) in online.wait(
            &super::online::contract_key(id),
            log.last_index,
            Duration::from_secs(10),
        )? {
            log.apply(id, index, &data);
        }
    }
}

/// `nullos logs ID --key FILE`: each node's newest report's console tails, opened with the
/// owner's key (reports verified and proven into the notary's checkpoint like everything else).
pub fn logs(online: &mut Online, id: &ContractId, key_file: &Path) -> Result<()> {
    let log = online.contract_log(id)?;
    let Some(c) = log.latest() else {
        return Err(Failed(format!("contract {id} is not in the notary's log")).into());
    };
    let key = owner_key(key_file, &c.owner)?;
    let tails = log.tails(&key);
    if tails.is_empty() {
        return Err(Failed(format!(
            "no console lines for contract {id} yet: a node attaches them to its report when a workload's VM ends"
        ))
        .into());
    }
    let mut out = String::new();
    for tail in tails {
        let text = tail.text.map_err(|e| {
            Failed(format!(
                "workload {} in node {}'s report {}: {e}",
                tail.workload.name,
                tail.report.node.short(),
                tail.report.sequence
            ))
        })?;
        out.push_str(&format!(
            "== workload {} on node {} (version {}, report {}): {} ==\n",
            tail.workload.name,
            tail.report.node.short(),
            tail.report.version,
            tail.report.sequence,
            tail.workload.state.name()
        ));
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
        }
    }
    print!("{out}");
    Ok(())
}

/// `nullos cancel ID --key FILE [--reason TEXT]`.
pub fn cancel(online: &mut Online, id: &ContractId, key_file: &Path, reason: &str) -> Result<()> {
    let log = online.contract_log(id)?;
    let Some(c) = log.latest() else {
        return Err(Failed(format!("contract {id} is not in the notary's log")).into());
    };
    let key = owner_key(key_file, &c.owner)?;
    if log.cancellation.is_some() {
        println!("contract {id} is already cancelled");
        return Ok(());
    }
    let cancellation = Cancellation {
        version: c.version,
        contract: *id,
        owner: c.owner,
        reason: reason
            .chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .collect(),
    };
    let r = online
        .submit(&sign(&cancellation, &key)?, "cancellation")
        .context("cannot cancel")?;
    println!(
        "cancelled contract {id} (log index {}); its node stops it",
        r.index
    );
    Ok(())
}
