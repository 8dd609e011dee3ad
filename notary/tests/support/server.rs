//! A real `nullos-notary serve` process on 127.0.0.1 with a free port, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use trust::PublicKey;

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The key it printed.
    pub key: PublicKey,
    /// The line it printed.
    pub line: String,
}

impl Server {
    /// Starts a server on `data` (and `database`, when given) with the open rules (these
    /// tests exercise the log with arbitrary signed documents) and reads its one line.
    #[allow(dead_code)]
    pub fn start(data: &Path, database: Option<&str>) -> Server {
        Server::start_with(data, database, "open")
    }

    /// Starts a server with the grid's rules (the binary's default).
    #[allow(dead_code)]
    pub fn start_grid(data: &Path, database: Option<&str>) -> Server {
        Server::start_with(data, database, "grid")
    }

    fn start_with(data: &Path, database: Option<&str>, rules: &str) -> Server {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .args(["--rules", rules])
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        Server::spawn(command)
    }

    /// Runs `command` (which must end up exec-ing `nullos-notary serve`, e.g. through a
    /// wrapper) and reads the server's one line; panics if it does not print it.
    pub fn spawn(mut command: Command) -> Server {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start nullos-notary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the notary's line");
        let line = line.trim().to_string();
        let (url, key) = parse_line(&line).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("unexpected first line from nullos-notary: {line:?}")
        });
        Server {
            child,
            url,
            key,
            line,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `nullos-notary` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_nullos-notary")
}

/// `nullos-notary listening on http://ADDR key nullos-ed25519 HEX`.
fn parse_line(line: &str) -> Option<(String, PublicKey)> {
    let rest = line.strip_prefix("nullos-notary listening on ")?;
    let (url, key) = rest.split_once(" key ")?;
    Some((url.to_string(), PublicKey::from_text(key).ok()?))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
