//! The control endpoint check: can the node open a TCP connection to its control service?
//!
//! A few tries with backoff, all within [`BUDGET`]; name resolution (glibc, DNS allowed) runs in
//! a helper thread so a slow resolver cannot overrun the budget. The connection is closed at
//! once: this only proves reachability.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ready::ControlStatus;

/// Bound on the whole check.
pub const BUDGET: Duration = Duration::from_secs(10);
/// Tries before giving up (if the budget lasts).
const ATTEMPTS: u32 = 3;
/// Longest single connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after the first failed try; doubles after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Why the endpoint was not reached.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The endpoint is not `host:port`.
    #[error("'{0}' is not host:port")]
    BadEndpoint(String),
    /// The host name did not resolve.
    #[error("resolve {host}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver error.
        #[source]
        source: io::Error,
    },
    /// Resolution took longer than the time left.
    #[error("resolve {0}: timed out")]
    ResolveTimeout(String),
    /// The name resolved to no address.
    #[error("resolve {0}: no address")]
    NoAddress(String),
    /// The TCP connection failed.
    #[error("connect {addr}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// The time budget ran out before a try could start.
    #[error("no time left for another try")]
    OutOfTime,
}

/// Splits `host:port` (or `[v6]:port`); the host may be a name or an address.
pub fn split_endpoint(endpoint: &str) -> Result<(String, u16), ControlError> {
    let bad = || ControlError::BadEndpoint(endpoint.to_owned());
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
        (host, port)
    } else {
        let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(bad());
        }
        (host, port)
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// The pause after failed try number `attempt` (0-based).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(attempt))
}

/// Checks the endpoint and logs the outcome in the contract's words.
pub fn check(endpoint: &str) -> ControlStatus {
    match reach(endpoint, BUDGET) {
        Ok(latency) => {
            crate::info!("control {endpoint} reachable in {} ms", latency.as_millis());
            ControlStatus::Reachable
        }
        Err(e) => {
            crate::warn!("control {endpoint} unreachable: {}", crate::error_chain(&e));
            ControlStatus::Unreachable
        }
    }
}

/// Tries to connect within `budget`; returns the connect latency of the successful try.
pub fn reach(endpoint: &str, budget: Duration) -> Result<Duration, ControlError> {
    let (host, port) = split_endpoint(endpoint)?;
    let start = Instant::now();
    let remaining = || budget.saturating_sub(start.elapsed());
    let mut last = ControlError::OutOfTime;
    for attempt in 0..ATTEMPTS {
        if remaining().is_zero() {
            break;
        }
        match try_once(&host, port, remaining()) {
            Ok(latency) => return Ok(latency),
            Err(e) => {
                crate::debug!(
                    "control {endpoint}: try {} failed: {}",
                    attempt + 1,
                    crate::error_chain(&e)
                );
                last = e;
            }
        }
        if attempt + 1 < ATTEMPTS {
            std::thread::sleep(backoff(attempt).min(remaining()));
        }
    }
    Err(last)
}

fn try_once(host: &str, port: u16, time_left: Duration) -> Result<Duration, ControlError> {
    let addrs = resolve(host, port, time_left)?;
    let mut last = ControlError::NoAddress(host.to_owned());
    let deadline = Instant::now() + time_left;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ControlError::OutOfTime);
        }
        let started = Instant::now();
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT.min(left)) {
            Ok(stream) => {
                let latency = started.elapsed();
                // Close at once; a peer that already closed makes shutdown fail harmlessly.
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(latency);
            }
            Err(source) => last = ControlError::Connect { addr, source },
        }
    }
    Err(last)
}

fn resolve(host: &str, port: u16, time_left: Duration) -> Result<Vec<SocketAddr>, ControlError> {
    // Literal addresses need no resolver (and no thread).
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_owned();
    // A resolver stuck past the deadline is left behind; it ends with glibc's own timeouts.
    std::thread::spawn(move || {
        let _ = tx.send(
            (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>),
        );
    });
    match rx.recv_timeout(time_left) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(ControlError::NoAddress(host.to_owned())),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(source)) => Err(ControlError::Resolve {
            host: host.to_owned(),
            source,
        }),
        Err(_) => Err(ControlError::ResolveTimeout(host.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn endpoints_split() {
        assert_eq!(
            split_endpoint("10.0.2.2:7878").unwrap(),
            ("10.0.2.2".into(), 7878)
        );
        assert_eq!(
            split_endpoint("control.example:443").unwrap(),
            ("control.example".into(), 443)
        );
        assert_eq!(
            split_endpoint("[fd00::1]:80").unwrap(),
            ("fd00::1".into(), 80)
        );
        for bad in [
            "",
            "host",
            "host:",
            ":80",
            "host:0",
            "host:99999",
            "fd00::1:80",
            "a b:1",
            "[::1]80",
        ] {
            assert!(split_endpoint(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_millis(1000));
        assert_eq!(backoff(2), Duration::from_millis(2000));
    }

    #[test]
    fn reaches_a_local_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let latency = reach(&endpoint, Duration::from_secs(5)).unwrap();
        assert!(latency < Duration::from_secs(2));
    }

    #[test]
    fn refused_is_unreachable_within_budget() {
        // Bind then drop to get a port that is (almost certainly) closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let start = Instant::now();
        let err = reach(&format!("127.0.0.1:{port}"), Duration::from_secs(3)).unwrap_err();
        assert!(matches!(err, ControlError::Connect { .. }), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the budget bounds the check"
        );
    }
}
