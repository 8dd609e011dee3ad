//! A minimal QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! QMP is line-delimited JSON: QEMU greets, the client enables commands with `qmp_capabilities`,
//! then each `{"execute": ...}` is answered by one `{"return": ...}` or `{"error": ...}`, with
//! asynchronous `{"event": ...}` lines possibly in between (skipped here). Written by hand
//! because the protocol subset we need is three messages; the QMP crates on crates.io are async.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

/// Longest a single QMP reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed QMP exchange.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Writing the command failed (QEMU gone?).
    #[error("cannot send QMP command")]
    Send(#[source] io::Error),
    /// Reading the reply failed or timed out.
    #[error("cannot read QMP reply")]
    Receive(#[source] io::Error),
    /// QEMU closed the connection (it exits on guest poweroff).
    #[error("QEMU closed the QMP connection")]
    Closed,
    /// A reply line was not JSON.
    #[error("QMP reply is not JSON: {line:?}")]
    Decode {
        /// The line.
        line: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// QEMU answered the command with an error.
    #[error("QEMU refused the command: {class}: {desc}")]
    Refused {
        /// QMP error class, e.g. `CommandNotFound`.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The first message was not a QMP greeting.
    #[error("expected a QMP greeting, got {0}")]
    Greeting(String),
}

/// An open QMP session in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Takes over a connected stream: reads the greeting and negotiates capabilities.
    pub fn handshake(stream: UnixStream) -> Result<Qmp, QmpError> {
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(QmpError::Receive)?;
        let writer = stream.try_clone().map_err(QmpError::Send)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Greeting(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with optional `arguments` and returns the `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut message = json!({ "execute": command });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(QmpError::Send)?;
        loop {
            let reply = self.read_message()?;
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                let text = |key: &str| {
                    error
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                };
                return Err(QmpError::Refused {
                    class: text("class"),
                    desc: text("desc"),
                });
            }
            // Anything else is an event (POWERDOWN, SHUTDOWN, ...): not our reply.
        }
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(QmpError::Receive)?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        serde_json::from_str(line.trim()).map_err(|source| QmpError::Decode {
            line: line.trim().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted QMP server on the other end of a socket pair: for each expected command it
    /// checks what the client sent and writes back the canned reply lines.
    fn fake_qemu(
        script: Vec<(&'static str, &'static str)>,
    ) -> (UnixStream, std::thread::JoinHandle<()>) {
        let (client, server) = UnixStream::pair().unwrap();
        let handle = std::thread::spawn(move || {
            let mut reader = BufReader::new(server.try_clone().unwrap());
            let mut server = server;
            server
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            for (expect, reply) in script {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let got: Value = serde_json::from_str(&line).unwrap();
                let want: Value = serde_json::from_str(expect).unwrap();
                assert_eq!(got, want);
                server.write_all(reply.as_bytes()).unwrap();
            }
        });
        (client, handle)
    }

    #[test]
    fn negotiates_then_returns_values_and_skips_events() {
        let (client, server) = fake_qemu(vec![
            (r#"{"execute":"qmp_capabilities"}"#, "{\"return\": {}}\r\n"),
            (
                r#"{"execute":"system_powerdown"}"#,
                "{\"event\": \"POWERDOWN\", \"timestamp\": {}}\r\n{\"return\": {}}\r\n",
            ),
            (
                r#"{"execute":"query-status"}"#,
                "{\"return\": {\"status\": \"running\", \"running\": true}}\r\n",
            ),
        ]);
        let mut qmp = Qmp::handshake(client).unwrap();
        assert_eq!(qmp.execute("system_powerdown", None).unwrap(), json!({}));
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status["status"], "running");
        server.join().unwrap();
    }

    #[test]
    fn qemu_errors_and_closed_sockets_are_reported() {
        let (client, server) = fake_qemu(vec![
            (r#"{"execute":"qmp_capabilities"}"#, "{\"return\": {}}\n"),
            (
                r#"{"execute":"nope","arguments":{"a":1}}"#,
                "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\n",
            ),
        ]);
        let mut qmp = Qmp::handshake(client).unwrap();
        let err = qmp.execute("nope", Some(json!({"a": 1}))).unwrap_err();
        assert!(
            matches!(&err, QmpError::Refused { class, .. } if class == "CommandNotFound"),
            "{err:?}"
        );
        server.join().unwrap();
        assert!(matches!(
            qmp.execute("query-status", None),
            Err(QmpError::Closed | QmpError::Send(_))
        ));
    }

    #[test]
    fn a_non_qmp_peer_is_rejected() {
        let (client, mut server) = UnixStream::pair().unwrap();
        server.write_all(b"{\"hello\": 1}\n").unwrap();
        assert!(matches!(Qmp::handshake(client), Err(QmpError::Greeting(_))));
    }
}
