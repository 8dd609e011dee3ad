//! The release over HTTP: where stage 0 looks for it on the network, and a [`Source`] that
//! fetches it with bounded reads.
//!
//! Release URLs come from the kernel command line (`nullos.release=<url>`, the PXE case: the
//! iPXE script says where the release is) or, without one, from the boot image
//! ([`RELEASE_URLS_PATH`], one URL a line, written by image-builder from `[stage0]
//! release_urls`). A URL names a folder holding the release's four files: `<url>/release.manifest`,
//! `<url>/kernel`, `<url>/initrd`, `<url>/cmdline`.
//!
//! Nothing fetched is trusted: [`crate::verify::verify`] reads the manifest first (capped at the
//! format's limit), then each artifact capped at its signed size. [`HttpSource`] enforces the
//! cap on the wire: a `Content-Length` above it is refused before the body is read, and a body
//! is never read past the cap plus one byte. Each request has an overall [`Deadline`] scaled to
//! that cap (a server that sends a byte every 29 s, just inside the per-read timeout, is
//! abandoned at it). Host names are resolved by the C library (stage 0's DHCP writes
//! `/etc/resolv.conf` and `/etc/hosts`) in a helper thread, within [`RESOLVE_TIMEOUT`]. Failed
//! requests (no connection, server errors) are retried with exponential backoff, a bounded
//! number of times.
//!
//! The HTTP client is `ureq` (blocking, small, no async runtime in PID 1); https needs the
//! crate's `https` feature (rustls).

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

use crate::verify::{Refusal, Source};

// The boot image's baked release URLs, one a line (`#` comments allowed), and the kernel
// command-line parameter naming a release URL (may be repeated; wins over the baked list).
pub use interfaces::paths::{RELEASE_URLS as RELEASE_URLS_PATH, RELEASE_URL_PARAM as CMDLINE_KEY};
/// How many times one file is requested before its source is given up.
pub const ATTEMPTS: u32 = 4;
/// The wait after the first failed request; doubled after each further one.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between two requests.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Longest wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any one read or write on the connection.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a host name to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The overall time one request may take, headers and body: `base` plus the time the most
/// bytes it may carry take at `min_bytes_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// For the connection, the request and the response headers.
    pub base: Duration,
    /// The slowest average transfer rate accepted.
    pub min_bytes_per_sec: u64,
}

impl Deadline {
    /// Stage 0's: 30 s, then at least 64 KiB/s (a 100 MiB initramfs may take 27 minutes).
    pub const DEFAULT: Deadline = Deadline {
        base: Duration::from_secs(30),
        min_bytes_per_sec: 64 << 10,
    };

    /// The deadline of a request that may carry up to `max_bytes`.
    pub fn for_size(&self, max_bytes: u64) -> Duration {
        let transfer_ms = max_bytes.saturating_mul(1000) / self.min_bytes_per_sec.max(1);
        self.base.saturating_add(Duration::from_millis(transfer_ms))
    }
}

/// Why a file could not be fetched. The URL is not repeated: the refusal line names it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request failed before a response (connection, DNS, protocol).
    #[error("request failed after {attempts} attempts: {detail}")]
    Request {
        /// How many requests were made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// The server answered with an error status.
    #[error("HTTP {code} {text}")]
    Status {
        /// The status code.
        code: u16,
        /// The status text.
        text: String,
    },
    /// The server did not say how long the file is.
    #[error("the server sent no Content-Length")]
    NoLength,
    /// The file is larger than what may be read.
    #[error("{found} bytes is more than the {max} allowed (not read)")]
    TooLarge {
        /// What the server announced (or, without an honest length, at least this much).
        found: u64,
        /// The cap.
        max: u64,
    },
    /// The body was announced with one length and ended at another.
    #[error("body ended after {read} of {announced} bytes")]
    Short {
        /// Bytes read.
        read: u64,
        /// `Content-Length`.
        announced: u64,
    },
    /// The whole request took longer than its deadline.
    #[error("not received within its deadline of {} (scaled to the {max} bytes allowed)", seconds(*.deadline))]
    Deadline {
        /// The deadline.
        deadline: Duration,
        /// The bytes it was scaled to.
        max: u64,
    },
    /// Reading the body failed.
    #[error("reading the body")]
    Body(#[source] std::io::Error),
}

/// `31 s` or `0.3 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Host names resolved by the C library in a helper thread, so a resolver that does not answer
/// costs at most [`RESOLVE_TIMEOUT`] (the thread is left to finish on its own).
#[derive(Debug, Clone, Copy)]
struct BoundedResolver;

impl ureq::Resolver for BoundedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let (tx, rx) = mpsc::channel();
        let owned = netloc.to_owned();
        std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let _ = tx.send(owned.to_socket_addrs().map(Iterator::collect));
            })?;
        let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h);
        match rx.recv_timeout(RESOLVE_TIMEOUT) {
            Ok(Ok(addrs)) => Ok(addrs),
            Ok(Err(e)) => Err(std::io::Error::new(
                e.kind(),
                format!("cannot resolve host {host}: {e}"),
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "cannot resolve host {host}: no answer in {} s",
                    RESOLVE_TIMEOUT.as_secs()
                ),
            )),
        }
    }
}

/// The release URLs: every `nullos.release=` of `cmdline` (the kernel's parameters, split as
/// the kernel splits them), in order; without any, the lines of `baked` (the boot image's
/// [`RELEASE_URLS_PATH`]). Values that are not printable ASCII are skipped.
pub fn release_urls(cmdline: &[u8], baked: Option<&str>) -> Vec<String> {
    let from_cmdline: Vec<String> = pid1::cmdline::split::split(cmdline)
        .params
        .into_iter()
        .filter(|p| p.name == CMDLINE_KEY.as_bytes())
        .filter_map(|p| p.value)
        .filter(|url| !url.is_empty() && url.iter().all(u8::is_ascii_graphic))
        .filter_map(|url| String::from_utf8(url.to_vec()).ok())
        .collect();
    if !from_cmdline.is_empty() {
        return from_cmdline;
    }
    baked
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The URL of `name` in the release folder `base`.
pub fn artifact_url(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// The refusal line of a release fetched from `base`: the failing file's URL before the
/// reason (`nullos: refused kernel: http://h/r/kernel: ...`).
pub fn refusal_at(base: &str, refusal: Refusal) -> Refusal {
    let reason = format!(
        "{}: {}",
        artifact_url(base, &refusal.artifact),
        refusal.reason
    );
    Refusal::new(&refusal.artifact, reason)
}

/// The wait before request number `attempt + 1`, after `attempt` failures (1 or more).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Reads all of `reader`, refusing more than `max` bytes (it reads at most `max + 1`).
/// `announced` is the `Content-Length`, if any: a body shorter than it is an error. A read that
/// times out is the request's `deadline` passing (ureq's body reader enforces it).
pub fn read_bounded(
    reader: impl Read,
    max: u64,
    announced: Option<u64>,
    deadline: Duration,
) -> Result<Vec<u8>, HttpError> {
    let capacity = usize::try_from(announced.unwrap_or(0).min(max)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => HttpError::Deadline { deadline, max },
            _ => HttpError::Body(e),
        })?;
    let read = bytes.len() as u64;
    if read > max {
        return Err(HttpError::TooLarge { found: read, max });
    }
    match announced {
        Some(announced) if announced != read => Err(HttpError::Short { read, announced }),
        _ => Ok(bytes),
    }
}

type Body = Box<dyn Read + Send + Sync>;

/// One release folder on an HTTP server, read as a [`Source`].
pub struct HttpSource {
    base: String,
    agent: ureq::Agent,
    deadline: Deadline,
    /// The response opened by the last `len`, read by the following `read` of the same file.
    pending: Option<Pending>,
}

/// A response whose body is still to be read.
struct Pending {
    name: String,
    length: Option<u64>,
    body: Body,
    /// The request's deadline (for the refusal line).
    deadline: Duration,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// The release folder at `base` (`http://host:port/path` or `http://name:port/path`).
    pub fn new(base: &str) -> HttpSource {
        HttpSource::with_deadline(base, Deadline::DEFAULT)
    }

    /// The same, with another request deadline (tests make it short).
    pub fn with_deadline(base: &str, deadline: Deadline) -> HttpSource {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(IO_TIMEOUT)
            .timeout_write(IO_TIMEOUT)
            .resolver(BoundedResolver)
            .build();
        HttpSource {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            deadline,
            pending: None,
        }
    }

    /// The folder's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `name`, of which at most `max` bytes will be read, retrying failed connections
    /// and server errors with backoff. Each request, body included, must end within the
    /// deadline for `max`. Returns the response.
    fn get(&self, name: &str, max: u64) -> Result<Pending, HttpError> {
        let url = artifact_url(&self.base, name);
        let deadline = self.deadline.for_size(max);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.agent.get(&url).timeout(deadline).call() {
                Ok(response) => {
                    let length = response
                        .header("Content-Length")
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    return Ok(Pending {
                        name: name.to_owned(),
                        length,
                        body: response.into_reader(),
                        deadline,
                    });
                }
                // Client errors will not change on a retry.
                Err(ureq::Error::Status(code, response)) if code < 500 => {
                    return Err(HttpError::Status {
                        code,
                        text: response.status_text().to_owned(),
                    })
                }
                Err(ureq::Error::Status(code, response)) => {
                    format!("HTTP {code} {}", response.status_text())
                }
                Err(ureq::Error::Transport(t)) => transport_detail(&t),
            };
            if attempt >= ATTEMPTS {
                return Err(HttpError::Request {
                    attempts: attempt,
                    detail: failure,
                });
            }
            let wait = backoff(attempt);
            pid1::warn!(
                "http: {url}: {failure}; retrying in {} ms",
                wait.as_millis()
            );
            std::thread::sleep(wait);
        }
    }
}

/// `Connection Failed: connection refused (os error 111)`: the kind, message and cause of a
/// transport error, without the URL ureq's `Display` repeats.
fn transport_detail(t: &ureq::Transport) -> String {
    let mut detail = t.kind().to_string();
    if let Some(message) = t.message() {
        detail.push_str(": ");
        detail.push_str(message);
    }
    if let Some(source) = std::error::Error::source(t) {
        detail.push_str(": ");
        detail.push_str(&pid1::error_chain(source));
    }
    detail
}

impl Source for HttpSource {
    fn len(&mut self, name: &str, max: u64) -> Result<u64, String> {
        self.pending = None;
        let pending = self.get(name, max).map_err(|e| e.to_string())?;
        let length = pending
            .length
            .ok_or_else(|| HttpError::NoLength.to_string())?;
        self.pending = Some(pending);
        Ok(length)
    }

    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        let pending = match self.pending.take() {
            Some(pending) if pending.name == name => pending,
            _ => self.get(name, max).map_err(|e| e.to_string())?,
        };
        if let Some(found) = pending.length.filter(|l| *l > max) {
            return Err(HttpError::TooLarge { found, max }.to_string());
        }
        read_bounded(pending.body, max, pending.length, pending.deadline)
            .map_err(|e| pid1::error_chain(&e))
    }
}

#[cfg(test)]
mod tests;
