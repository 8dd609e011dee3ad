//! A simulated node for trying `nullos` without a machine: it registers with the notary, renews
//! a short lease every second, long-polls `node/<key>` and answers placements with signed status
//! reports (running, or refused with the reason). It runs nothing; the real node does. The same
//! code drives the grid tests (`agent/tests/support/node.rs`). See docs/AGENT.md.
//!
//! ```sh
//! cargo run --release -p agent --example sim-node -- --key node.key --farm farmer.key.pub
//! ```

#[path = "../tests/support/node.rs"]
#[allow(dead_code)]
mod node;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use node::{Behaviour, Shape, SimNode};
use trust::PublicKey;

#[derive(Parser)]
#[command(
    name = "sim-node",
    about = "A simulated NullOS node (runs nothing, reports as a node does)"
)]
struct Args {
    /// The notary's URL.
    #[arg(long, env = "NULLOS_NOTARY", default_value = "http://127.0.0.1:7878")]
    notary: String,
    /// The notary's key (`nullos-ed25519 <hex>`).
    #[arg(long, env = "NULLOS_NOTARY_KEY")]
    notary_key: String,
    /// The node's secret key file (`nullos key new --out node.key`).
    #[arg(long)]
    key: PathBuf,
    /// The farm's public key file (the farmer's .pub).
    #[arg(long)]
    farm: PathBuf,
    /// CPUs offered.
    #[arg(long, default_value_t = 4)]
    cpus: u32,
    /// Memory offered, MiB.
    #[arg(long, default_value_t = 4096)]
    memory_mib: u64,
    /// Disk offered, MiB.
    #[arg(long, default_value_t = 16384)]
    disk_mib: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let notary = PublicKey::from_text(&args.notary_key).context("--notary-key")?;
    let secret = agent::keys::load_secret(&args.key)?;
    let farm_line = std::fs::read_to_string(&args.farm)
        .with_context(|| format!("cannot read {}", args.farm.display()))?;
    let farm = PublicKey::from_text(&farm_line).context("--farm")?;
    let shape = Shape {
        cpus: args.cpus,
        memory_mib: args.memory_mib,
        disk_mib: args.disk_mib,
    };
    let node = SimNode::start_with_key(&args.notary, &notary, secret, farm, shape, Behaviour::Run);
    println!(
        "sim-node {} registered; leasing and waiting for placements (Ctrl-C ends it)",
        node.key
    );
    loop {
        std::thread::park();
    }
}
