//! The grid's directory commands: `log verify`, `farm register`, `farm approve`, `nodes`,
//! `push`.

use std::io::Read;
use std::path::Path;

use agent::keys;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use trust::grid::{Enrollment, Farm};
use trust::{
    verify_named, ArtifactRef, Digest, DocumentKind, Hasher, PublicKey, SignedBody, SignedDocument,
    WorkloadManifest,
};

use super::online::{now, Online};
use super::{sign, BadInput};

/// `nullos log verify`: the notary's checkpoint extends the kept one.
pub fn log_verify(online: &Online, json: bool) -> Result<()> {
    // `Online::open` has checked the notary's checkpoint against the kept one and kept it.
    let checkpoint = &online.checkpoint;
    let kept = online.witness.kept_path().display().to_string();
    if json {
        println!(
            "{}",
            json!({
                "notary_key": online.witness.key().to_string(),
                "size": checkpoint.size,
                "root": checkpoint.root.to_base64(),
                "kept": kept,
                "previous_size": online.kept_before,
            })
        );
        return Ok(());
    }
    match online.kept_before {
        Some(before) => println!(
            "checkpoint {} root {} is consistent with the kept checkpoint of size {before}; kept in {kept}",
            checkpoint.size,
            checkpoint.root.to_base64(),
        ),
        None => println!(
            "checkpoint {} root {} is the first seen from this notary; kept in {kept}",
            checkpoint.size,
            checkpoint.root.to_base64(),
        ),
    }
    Ok(())
}

/// `nullos farm register --key FILE --name NAME`.
pub fn farm_register(online: &mut Online, key_file: &Path, name: &str) -> Result<()> {
    let key = keys::load_secret(key_file)?;
    let farmer = key.public();
    let farm_key = format!("farm/{}", hex::encode(farmer.as_bytes()));
    let mut latest: Option<Farm> = None;
    for (_, data) in online.entries(&farm_key, None)? {
        if let Ok(f) = verify_named::<Farm>(&data) {
            if f.body.farmer == farmer && latest.as_ref().is_none_or(|l| f.body.version > l.version)
            {
                latest = Some(f.body);
            }
        }
    }
    if let Some(l) = latest.as_ref().filter(|l| l.name == name) {
        println!(
            "farm {} '{}' is registered (version {})",
            farmer, l.name, l.version
        );
        return Ok(());
    }
    let farm = Farm {
        version: latest.map_or(1, |l| l.version + 1),
        farmer,
        name: name.to_owned(),
    };
    // The decoder's checks (name length, one line) before the notary's.
    Farm::decode(&farm.encode()).map_err(|e| BadInput(format!("farm name '{name}': {e}")))?;
    let receipt = online.submit(&sign(&farm, &key)?, "farm")?;
    println!(
        "farm {} '{}' registered (version {}, log index {})",
        farmer, name, farm.version, receipt.index
    );
    println!("its id is the farmer key; nodes name it in their registration");
    Ok(())
}

/// `nullos farm approve NODE... --key FILE [--withdraw]`: the farmer's enrollments.
pub fn farm_approve(
    online: &mut Online,
    key_file: &Path,
    nodes: &[String],
    withdraw: bool,
) -> Result<()> {
    let key = keys::load_secret(key_file)?;
    let farmer = key.public();
    let nodes: Vec<PublicKey> = nodes
        .iter()
        .map(|n| super::parse_key_arg(n))
        .collect::<Result<_>>()?;
    let farm_key = format!("farm/{}", hex::encode(farmer.as_bytes()));
    let mut held: Vec<Enrollment> = Vec::new();
    for (_, data) in online.entries(&farm_key, None)? {
        if let Ok(e) = verify_named::<Enrollment>(&data) {
            if e.body.farmer == farmer {
                held.push(e.body);
            }
        }
    }
    for node in nodes {
        let latest = held
            .iter()
            .filter(|e| e.node == node)
            .max_by_key(|e| e.sequence);
        if latest.is_some_and(|e| e.enrolled != withdraw) {
            println!(
                "node {} is already {}",
                node.short(),
                if withdraw { "withdrawn" } else { "enrolled" }
            );
            continue;
        }
        let enrollment = Enrollment {
            sequence: latest.map_or(1, |e| e.sequence + 1),
            farmer,
            node,
            enrolled: !withdraw,
        };
        let receipt = online.submit(&sign(&enrollment, &key)?, "enrollment")?;
        println!(
            "node {} {} by farm {} (log index {})",
            node.short(),
            if withdraw { "withdrawn" } else { "enrolled" },
            farmer.short(),
            receipt.index
        );
    }
    Ok(())
}

/// `nullos farm approve --pending --key FILE [--watch SECS]`: enrolls the nodes the directory
/// lists as registered with this farm and not enrolled; with `watch`, again every `watch`
/// seconds until interrupted (a failed look is one line, and the next look comes). Any machine
/// can name a farm in its registration, so this is for a farm whose boot network the farmer
/// controls, such as `make run`'s.
pub fn farm_approve_pending(
    online: &mut Online,
    key_file: &Path,
    watch: Option<u64>,
) -> Result<()> {
    let farmer = keys::load_secret(key_file)?.public();
    loop {
        let look = online.nodes().and_then(|nodes| {
            let pending: Vec<String> = nodes
                .iter()
                .filter(|n| n.farm == farmer && !n.approved)
                .map(|n| n.key.to_text())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            farm_approve(online, key_file, &pending, false)
        });
        let Some(seconds) = watch else {
            return look;
        };
        if let Err(e) = look {
            eprintln!("nullos: error: {}", super::chain(&e));
        }
        std::thread::sleep(std::time::Duration::from_secs(seconds.max(1)));
    }
}

/// `nullos nodes [--farm F] [--min-memory MIB] [--json]`.
pub fn nodes(
    online: &mut Online,
    farm: Option<&str>,
    min_memory: Option<u64>,
    json: bool,
) -> Result<()> {
    let farm = farm.map(super::parse_key_arg).transpose()?;
    let now = now();
    let nodes: Vec<_> = online
        .nodes()?
        .into_iter()
        .filter(|n| farm.is_none_or(|f| n.farm == f))
        .filter(|n| min_memory.is_none_or(|m| n.memory_mib >= m))
        .collect();
    if json {
        let list: Vec<_> = nodes
            .iter()
            .map(|n| {
                json!({
                    "key": hex::encode(n.key.as_bytes()),
                    "farm": hex::encode(n.farm.as_bytes()),
                    "approved": n.approved,
                    "live": n.live,
                    "lease_expires": n.lease_expires,
                    "capacity": {"cpus": n.cpus, "memory_mib": n.memory_mib, "disk_mib": n.disk_mib},
                    "free": {
                        "cpus": u64::from(n.cpus).saturating_sub(n.used.vcpus),
                        "memory_mib": n.memory_mib.saturating_sub(n.used.memory_mib),
                        "disk_mib": n.disk_mib.saturating_sub(n.used.disk_mib),
                    },
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "nodes": list }))?
        );
        return Ok(());
    }
    if nodes.is_empty() {
        println!("no nodes");
        return Ok(());
    }
    println!(
        "{:<18} {:<18} {:<9} {:<14} {:>9} {:>15} {:>15}",
        "NODE", "FARM", "ENROLLED", "LIVENESS", "CPUS", "MEMORY MIB", "DISK MIB"
    );
    for n in &nodes {
        let liveness = match n.lease_expires {
            None => "no lease".to_owned(),
            Some(t) if n.live => format!("live {}s", t.saturating_sub(now)),
            Some(t) => format!("down {}s", now.saturating_sub(t)),
        };
        let short = |k: &PublicKey| hex::encode(k.as_bytes())[..16].to_owned();
        println!(
            "{:<18} {:<18} {:<9} {:<14} {:>9} {:>15} {:>15}",
            short(&n.key),
            short(&n.farm),
            if n.approved { "yes" } else { "no" },
            liveness,
            format!(
                "{}/{}",
                u64::from(n.cpus).saturating_sub(n.used.vcpus),
                n.cpus
            ),
            format!(
                "{}/{}",
                n.memory_mib.saturating_sub(n.used.memory_mib),
                n.memory_mib
            ),
            format!(
                "{}/{}",
                n.disk_mib.saturating_sub(n.used.disk_mib),
                n.disk_mib
            ),
        );
    }
    println!("(CPUS, MEMORY and DISK are free/total)");
    Ok(())
}

/// Largest artifact pushed (the notary's blob cap).
const MAX_BLOB_BYTES: u64 = 1 << 30;

/// `nullos push WORKLOAD_DIR`: each artifact the manifest names, then the manifest.
pub fn push(online: &mut Online, dir: &Path, json: bool) -> Result<()> {
    let pushed = push_workload(online, dir)?;
    if json {
        let files: Vec<_> = pushed
            .files
            .iter()
            .map(|(n, d, s, sent)| json!({"file": n, "digest": d.to_hex(), "size": s, "uploaded": sent}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"workload": pushed.name, "manifest": pushed.manifest.to_hex(), "files": files})
            )?
        );
    } else {
        for (n, d, s, sent) in &pushed.files {
            let what = if *sent { "uploaded" } else { "already there" };
            println!("{n} {d} ({s} bytes): {what}");
        }
        println!("workload {} manifest {}", pushed.name, pushed.manifest);
    }
    Ok(())
}

/// What [`push_workload`] did.
pub struct Pushed {
    /// The workload's name in its manifest.
    pub name: String,
    /// The manifest's digest.
    pub manifest: Digest,
    /// Each file: name, digest, size, whether it was uploaded (false: the notary had it).
    pub files: Vec<(String, Digest, u64, bool)>,
}

/// Uploads the workload folder `dir`'s files the notary does not hold yet, each checked against
/// the signed manifest first.
pub fn push_workload(online: &mut Online, dir: &Path) -> Result<Pushed> {
    let manifest_path = dir.join(interfaces::paths::WORKLOAD_MANIFEST_FILE);
    let manifest_bytes = std::fs::read(&manifest_path)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", manifest_path.display())))?;
    let document = SignedDocument::decode(&manifest_bytes)
        .ok()
        .filter(|d| d.kind() == DocumentKind::WorkloadManifest)
        .ok_or_else(|| {
            BadInput(format!(
                "{} is not a signed workload manifest",
                manifest_path.display()
            ))
        })?;
    let manifest = WorkloadManifest::decode(document.body()).map_err(|e| {
        BadInput(format!(
            "{}: the workload manifest does not decode: {e}",
            manifest_path.display()
        ))
    })?;
    let mut files: Vec<(&str, ArtifactRef)> =
        vec![(interfaces::paths::WORKLOAD_ROOT_FILE, manifest.root)];
    if let Some(k) = manifest.kernel {
        files.push(("kernel", k));
    }
    if let Some(i) = manifest.initrd {
        files.push(("initrd", i));
    }
    let mut report = Vec::new();
    for (name, artifact) in files {
        let path = dir.join(name);
        check_artifact(&path, &artifact)?;
        let sent = upload(online, &artifact.digest, artifact.size, &mut || {
            std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))
        })?;
        report.push((name.to_owned(), artifact.digest, artifact.size, sent));
    }
    let digest = Digest::of(&manifest_bytes);
    let sent = upload(online, &digest, manifest_bytes.len() as u64, &mut || {
        std::fs::File::open(&manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))
    })?;
    report.push((
        interfaces::paths::WORKLOAD_MANIFEST_FILE.to_owned(),
        digest,
        manifest_bytes.len() as u64,
        sent,
    ));
    Ok(Pushed {
        name: manifest.name,
        manifest: digest,
        files: report,
    })
}

/// The file's length and BLAKE3 are the manifest's.
fn check_artifact(path: &Path, artifact: &ArtifactRef) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        BadInput(format!(
            "cannot read {} (the manifest names it): {e}",
            path.display()
        ))
    })?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    if len != artifact.size || digest != artifact.digest {
        return Err(BadInput(format!(
            "{} is {len} bytes with BLAKE3 {digest}, the manifest names {} bytes with {}",
            path.display(),
            artifact.size,
            artifact.digest
        ))
        .into());
    }
    if len > MAX_BLOB_BYTES {
        bail!("{} is over the notary's 1 GiB blob limit", path.display());
    }
    Ok(())
}

/// Uploads unless the store has it; returns whether it was sent.
fn upload(
    online: &mut Online,
    digest: &Digest,
    len: u64,
    open: &mut dyn FnMut() -> Result<std::fs::File>,
) -> Result<bool> {
    if online
        .client
        .has_blob(digest)
        .context("cannot ask the notary's blob store")?
    {
        return Ok(false);
    }
    let mut file = open()?;
    let stored = online
        .client
        .put_blob(digest, len, &mut file)
        .with_context(|| format!("cannot upload blob {digest}"))?;
    if stored != len {
        return Err(anyhow!(
            "the notary stored {stored} bytes of blob {digest}, not {len}"
        ));
    }
    Ok(true)
}
