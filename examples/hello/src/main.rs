//! `hello`, the example NullOS workload (built static, it runs in an image without libc or shell).
//!
//! 1. prints `hello from a micro-VM`;
//! 2. increments the counter in `$HELLO_COUNTER_FILE` (default `/data/counter`, on its volume)
//!    and prints `hello: counter=<n>`, so persistence across runs is visible; without the volume
//!    it says so and goes on;
//! 3. with `HELLO_CONNECT=host:port`, sends `hello\n` over TCP, reads one line and prints
//!    `hello: reply <line>` (on failure `hello: connect <addr> failed: <err>`, exit status 4);
//! 4. with `HELLO_PANIC=1`, has the guest kernel panic (`c` into `/proc/sysrq-trigger`), so the
//!    node's report of a guest panic (`vm=panic`) can be exercised;
//! 5. exits with `$HELLO_EXIT` (default 0), so the node's restart policy can be exercised.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_COUNTER_FILE: &str = "/data/counter";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    println!("hello from a micro-VM");

    let counter_file =
        std::env::var("HELLO_COUNTER_FILE").unwrap_or_else(|_| DEFAULT_COUNTER_FILE.into());
    match bump_counter(Path::new(&counter_file)) {
        Ok(n) => println!("hello: counter={n}"),
        Err(e) => println!("hello: no counter ({counter_file}: {e}); is the volume mounted?"),
    }

    if let Ok(addr) = std::env::var("HELLO_CONNECT") {
        match exchange(&addr) {
            Ok(line) => println!("hello: reply {line}"),
            Err(e) => {
                println!("hello: connect {addr} failed: {e}");
                return ExitCode::from(4);
            }
        }
    }

    if std::env::var("HELLO_PANIC").is_ok_and(|v| v == "1") {
        println!("hello: asking the kernel to panic");
        // Does not return when it works: the kernel panics and the VM ends.
        if let Err(e) = std::fs::write("/proc/sysrq-trigger", b"c") {
            println!("hello: /proc/sysrq-trigger: {e}");
            return ExitCode::from(5);
        }
    }

    let code = match std::env::var("HELLO_EXIT") {
        Err(_) => 0,
        Ok(v) => v.trim().parse::<u8>().unwrap_or_else(|_| {
            println!("hello: HELLO_EXIT={v:?} is not 0..=255, exiting 1");
            1
        }),
    };
    ExitCode::from(code)
}

/// Reads the counter (0 when the file is missing or empty), adds one, writes it back durably.
fn bump_counter(path: &Path) -> std::io::Result<u64> {
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !path.parent().is_some_and(Path::is_dir) {
                return Err(e);
            }
            0
        }
        Err(e) => return Err(e),
    };
    let next = previous.saturating_add(1);
    let mut file = std::fs::File::create(path)?;
    writeln!(file, "{next}")?;
    // The VM powers off right after we exit: the count must be on the disk by then.
    file.sync_all()?;
    Ok(next)
}

/// Connects to `addr`, sends `hello\n`, returns the first line of the reply.
fn exchange(addr: &str) -> std::io::Result<String> {
    let target = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(b"hello\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed without a reply",
        ));
    }
    Ok(line.trim_end().to_owned())
}
