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
//! is never read past the cap plus one byte. Failed requests (no connection, server errors) are
//! retried with exponential backoff, a bounded number of times.
//!
//! The HTTP client is `ureq` (blocking, small, no async runtime in PID 1); https needs the
//! crate's `https` feature (rustls).

use std::io::Read;
use std::time::Duration;

use crate::verify::Source;

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
    /// Reading the body failed.
    #[error("reading the body")]
    Body(#[source] std::io::Error),
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

/// The wait before request number `attempt + 1`, after `attempt` failures (1 or more).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Reads all of `reader`, refusing more than `max` bytes (it reads at most `max + 1`).
/// `announced` is the `Content-Length`, if any: a body shorter than it is an error.
pub fn read_bounded(
    reader: impl Read,
    max: u64,
    announced: Option<u64>,
) -> Result<Vec<u8>, HttpError> {
    let capacity = usize::try_from(announced.unwrap_or(0).min(max)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(HttpError::Body)?;
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
    /// The response opened by the last `len`, read by the following `read` of the same file.
    pending: Option<(String, Option<u64>, Body)>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// The release folder at `base` (`http://host:port/path`).
    pub fn new(base: &str) -> HttpSource {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(IO_TIMEOUT)
            .timeout_write(IO_TIMEOUT)
            .build();
        HttpSource {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            pending: None,
        }
    }

    /// The folder's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `name`, retrying failed connections and server errors with backoff. Returns the
    /// announced length and the body.
    fn get(&self, name: &str) -> Result<(Option<u64>, Body), HttpError> {
        let url = artifact_url(&self.base, name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.agent.get(&url).call() {
                Ok(response) => {
                    let length = response
                        .header("Content-Length")
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    return Ok((length, response.into_reader()));
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
    fn len(&mut self, name: &str) -> Result<u64, String> {
        self.pending = None;
        let (length, body) = self.get(name).map_err(|e| e.to_string())?;
        let length = length.ok_or_else(|| HttpError::NoLength.to_string())?;
        self.pending = Some((name.to_owned(), Some(length), body));
        Ok(length)
    }

    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        let (length, body) = match self.pending.take() {
            Some((pending, length, body)) if pending == name => (length, body),
            _ => self.get(name).map_err(|e| e.to_string())?,
        };
        if let Some(found) = length.filter(|l| *l > max) {
            return Err(HttpError::TooLarge { found, max }.to_string());
        }
        read_bounded(body, max, length).map_err(|e| pid1::error_chain(&e))
    }
}

#[cfg(test)]
mod tests;
