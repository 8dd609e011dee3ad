//! The workload of `tests/guest_qemu.rs`: a static program put into the test's squashfs root.
//!
//! Compiled by the test with plain `rustc` (std only, `+crt-static`), so it needs no crate of
//! its own. It reports what the guest init gave it (environment, working directory, host
//! name, resolver), counts its runs in `count` in its working directory (a volume), optionally
//! connects to `argv[2]` (`host:port`) and prints the first line it gets, and exits with
//! `argv[1]`. Every line starts with `probe: ` so the test can find it on the console.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code: i32 = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    println!("probe: hello from the guest");
    println!("probe: env {}", env.join(" "));
    let cwd = std::env::current_dir().map(|p| p.display().to_string());
    println!(
        "probe: cwd {}",
        cwd.unwrap_or_else(|e| format!("error {e}"))
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    println!("probe: hostname {}", hostname.trim());
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let nameserver = resolv.lines().find(|l| l.starts_with("nameserver"));
    println!("probe: resolv {}", nameserver.unwrap_or("none"));
    let stdin_is_null = std::fs::read_link("/proc/self/fd/0")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("probe: stdin {stdin_is_null}");
    match std::fs::write("/etc/probe-written", b"x") {
        Ok(()) => println!("probe: root writable"),
        Err(e) => println!("probe: root not writable: {e}"),
    }
    match count() {
        Ok(n) => println!("probe: count={n}"),
        Err(e) => println!("probe: count error {e}"),
    }
    if let Some(address) = args.get(2) {
        match tcp(address) {
            Ok(line) => println!("probe: tcp reply {line}"),
            Err(e) => println!("probe: tcp error {e}"),
        }
    }
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Increments `count` in the working directory and returns the new value.
fn count() -> std::io::Result<u64> {
    let old: u64 = std::fs::read_to_string("count")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let new = old + 1;
    let mut file = std::fs::File::create("count")?;
    file.write_all(format!("{new}\n").as_bytes())?;
    file.sync_all()?;
    Ok(new)
}

fn tcp(address: &str) -> std::io::Result<String> {
    let addr = address
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"hello from the guest\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim().to_owned())
}
