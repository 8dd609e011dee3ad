//! Counting the sockets that could accept traffic from outside, from `/proc/net/{tcp,udp}{,6}`.
//!
//! The node promises to accept no inbound connection, so before `ready` init reports how many
//! sockets could: TCP sockets in LISTEN state, and UDP sockets that are bound and not connected
//! (state 07, `TCP_CLOSE` in the kernel's reuse of TCP states for UDP). A connected UDP socket
//! (state 01) only takes datagrams from its one peer, as a DNS lookup's does, and is not counted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP LISTEN in `/proc/net/tcp`'s `st` column.
const TCP_LISTEN: u8 = 0x0A;
/// UDP socket that is not connected.
const UDP_UNCONNECTED: u8 = 0x07;

/// Why a `/proc/net` table could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SocketsError {
    /// A line did not have the expected fields.
    #[error("{table} line {line}: {problem}")]
    BadLine {
        /// Which table.
        table: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The table could not be read.
    #[error("read /proc/net/{table}: {message}")]
    Read {
        /// Which table.
        table: &'static str,
        /// The I/O error's text.
        message: String,
    },
}

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A socket that could accept traffic from anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSocket {
    /// Protocol.
    pub proto: Proto,
    /// Local address and port.
    pub local: SocketAddr,
}

impl fmt::Display for OpenSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{proto} {}", self.local)
    }
}

/// The open sockets listed in one table's text (`/proc/net/tcp` format; `tcp6`, `udp`, `udp6`
/// have the same columns). `table` names it in errors.
pub fn parse_table(table: &'static str, text: &str) -> Result<Vec<OpenSocket>, SocketsError> {
    let proto = if table.starts_with("udp") {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let wanted_state = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => UDP_UNCONNECTED,
    };
    let mut open = Vec::new();
    // The first line is the column header.
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem| SocketsError::BadLine {
            table,
            line: i + 1,
            problem,
        };
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("too few fields"));
        };
        let state = u8::from_str_radix(state, 16).map_err(|_| bad("bad state"))?;
        let local = parse_address(local).ok_or_else(|| bad("bad local address"))?;
        if state == wanted_state && local.port() != 0 {
            open.push(OpenSocket { proto, local });
        }
    }
    Ok(open)
}

/// Parses `0100007F:1F90` (IPv4) or the 32-hex-digit IPv6 form. The kernel prints the address
/// as 32-bit words in host (little-endian) order, the port in big-endian hex.
fn parse_address(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words = addr
        .as_bytes()
        .chunks(8)
        .map(|w| {
            let w = std::str::from_utf8(w).ok()?;
            u32::from_str_radix(w, 16).ok().map(|v| v.swap_bytes())
        })
        .collect::<Option<Vec<u32>>>()?;
    let ip = match (addr.len(), words.as_slice()) {
        (8, [w]) => IpAddr::V4(Ipv4Addr::from(*w)),
        (32, [a, b, c, d]) => {
            let mut bytes = [0u8; 16];
            for (chunk, w) in bytes.chunks_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&w.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Reads the four tables of this machine. A table that does not exist (IPv6 compiled out) is
/// empty, not an error.
pub fn open_sockets() -> Result<Vec<OpenSocket>, SocketsError> {
    let mut all = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = match std::fs::read_to_string(format!("/proc/net/{table}")) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(SocketsError::Read {
                    table,
                    message: e.to_string(),
                });
            }
        };
        all.extend(parse_table(table, &text)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0\n\
   1: 0F02000A:C350 0202000A:1EC6 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000\n\
   2: 0F02000A:D431 0202000A:1EC6 01 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 20 4 30 10 -1\n";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  100: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0\n\
  101: 0F02000A:9C40 0302000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 778 2 0000000000000000 0\n";

    #[test]
    fn tcp_counts_only_listen() {
        let open = parse_table("tcp", TCP).unwrap();
        assert_eq!(
            open,
            [OpenSocket {
                proto: Proto::Tcp,
                local: "127.0.0.1:8080".parse().unwrap()
            }]
        );
        assert_eq!(open[0].to_string(), "tcp 127.0.0.1:8080");
    }

    #[test]
    fn tcp6_decodes_word_order() {
        let open = parse_table("tcp6", TCP6).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].local, "[::1]:22".parse().unwrap());
    }

    #[test]
    fn udp_counts_bound_unconnected_only() {
        let open = parse_table("udp", UDP).unwrap();
        assert_eq!(
            open.len(),
            1,
            "the connected DNS socket is not open to the world"
        );
        assert_eq!(open[0].local, "0.0.0.0:68".parse().unwrap());
        assert_eq!(open[0].proto, Proto::Udp);
    }

    #[test]
    fn header_only_and_empty_tables_are_empty() {
        assert!(parse_table("tcp", TCP.lines().next().unwrap())
            .unwrap()
            .is_empty());
        assert!(parse_table("udp6", "").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_are_errors() {
        let header = "sl local rem st\n";
        assert!(matches!(
            parse_table("tcp", &format!("{header}0: 0100007F:1F90\n")),
            Err(SocketsError::BadLine { line: 2, .. })
        ));
        assert!(parse_table("tcp", &format!("{header}0: 01007F:1F90 0:0 0A\n")).is_err());
        assert!(parse_table("tcp", &format!("{header}0: 0100007F:XYZ 0:0 0A\n")).is_err());
        assert!(parse_table("tcp", &format!("{header}0: 0100007F:1F90 0:0 QQ\n")).is_err());
    }
}
