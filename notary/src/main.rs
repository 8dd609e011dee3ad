//! `nullos-notary serve --data DIR --listen ADDR [--database URL] [--rules grid|open|unchecked]`,
//! and
//! `nullos-notary check --url URL --key KEY` (fetch and verify a checkpoint, as a node would).
//!
//! Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when it cannot start or serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use notary::{
    Config, DocumentRules, GridRules, Notary, OpenRules, PostgresStore, RedbStore, Store,
};

#[derive(Parser)]
#[command(name = "nullos-notary", about = "The grid's signed, append-only log")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the log over HTTP.
    Serve {
        /// Data directory: the signing key, and the embedded store unless --database is given.
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:7878 (port 0 picks a free one).
        #[arg(long)]
        listen: SocketAddr,
        /// PostgreSQL connection (postgres://… or key=value settings) instead of the embedded
        /// store.
        #[arg(long)]
        database: Option<String>,
        /// Admission rules: `grid` (the control plane's documents and rules), `open` (any
        /// verified signed document; for tests and benchmarks of the log alone) or `unchecked`
        /// (grid documents filed as `grid` files them, but not judged: a misbehaving notary,
        /// for tests of what the nodes refuse; needs --allow-unchecked).
        #[arg(long, default_value = "grid", value_parser = ["grid", "open", "unchecked"])]
        rules: String,
        /// Allows `--rules unchecked` (never for a real grid).
        #[arg(long)]
        allow_unchecked: bool,
    },
    /// Fetch a notary's checkpoint and verify it against its key, as a node would.
    Check {
        /// The notary, e.g. http://127.0.0.1:7878.
        #[arg(long)]
        url: String,
        /// Its key, as `serve` printed it: 'nullos-ed25519 <64 hex>'.
        #[arg(long)]
        key: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nullos-notary: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            data,
            listen,
            database,
            rules,
            allow_unchecked,
        } => {
            if rules == "unchecked" {
                anyhow::ensure!(
                    allow_unchecked,
                    "--rules unchecked admits grid documents without judging them; \
                     give --allow-unchecked to run it (tests and threat-model demonstrations only)"
                );
                eprintln!(
                    "nullos-notary: warning: rules unchecked: grid documents are admitted \
                     without the grid's rules (a misbehaving notary); never for a real grid"
                );
            }
            serve(data, listen, database, &rules)
        }
        Command::Check { url, key } => check(&url, &key),
    }
}

fn check(url: &str, key: &str) -> anyhow::Result<()> {
    let key = trust::PublicKey::from_text(key).context("invalid --key")?;
    let client = notary_client::Client::new(url, &key).context("invalid notary key")?;
    let (checkpoint, _) = client.checkpoint().context("checkpoint did not verify")?;
    println!(
        "checkpoint verified: {} size {} root {}",
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root.to_base64()
    );
    Ok(())
}

fn serve(
    data: PathBuf,
    listen: SocketAddr,
    database: Option<String>,
    rules: &str,
) -> anyhow::Result<()> {
    raise_nofile();
    let rules: Box<dyn DocumentRules> = match rules {
        "open" => Box::new(OpenRules),
        "unchecked" => Box::new(GridRules::unchecked()),
        _ => Box::new(GridRules::new()),
    };
    let key = notary::keyfile::load_or_create(&data).context("cannot load the signing key")?;
    let store: Arc<dyn Store> = match &database {
        Some(url) => Arc::new(PostgresStore::connect(url).context("cannot open the database")?),
        None => Arc::new(RedbStore::open(&data).context("cannot open the store")?),
    };
    let public = key.public;
    let notary = Arc::new(
        Notary::open(store, key.signing, rules, Config::default())
            .context("cannot open the log")?,
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        println!("nullos-notary listening on http://{addr} key {public}");
        let app = notary::http::router(notary, notary::http::Limits::default());
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("serving failed")
    })
}

/// Every held long-poll is an open socket: lift the soft open-file limit to the hard one.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the valid `lim`. Failure leaves the old limit.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
