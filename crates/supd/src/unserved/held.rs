//! Whether a process tree holds a connection it accepted on a port.
//!
//! A queue that holds connections and does not shrink between samples is
//! not proof that nobody accepts: a slow server under clients that
//! reconnect as soon as they are answered keeps its queue at the same
//! length while it works through it. Such a server holds the connection it
//! is answering; a program that never accepts (a wrapper whose child failed,
//! a script that sleeps) holds none. So before a slot is reported, its
//! processes' descriptors (`/proc/PID/fd`, `socket:[INODE]`) are matched
//! against the connections of the port (`/proc/PID/net/tcp` and `tcp6`, in
//! the instance's own network namespace).

use std::collections::HashSet;

use supd_supervisor::procfs;

/// Whether a process of the trees rooted at `roots` holds a TCP connection
/// (not a listener) whose local port is `port`.
///
/// The descriptors are read before and after the tables, so a connection
/// closed and the next one accepted meanwhile are both seen.
pub fn holds_connection(roots: &[u32], port: u16) -> bool {
    let sockets = || -> HashSet<u64> {
        roots
            .iter()
            .flat_map(|&root| procfs::descendants(root))
            .flat_map(|(pid, _)| socket_inodes(pid))
            .collect()
    };
    let before = sockets();
    let Some(root) = roots.first().filter(|_| !before.is_empty()) else {
        return false;
    };
    let connections: Vec<u64> = ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{root}/net/{table}")).ok())
        .flat_map(|text| connections_on(&text, port).collect::<Vec<_>>())
        .collect();
    if connections.is_empty() {
        return false;
    }
    let after = sockets();
    connections
        .iter()
        .any(|i| before.contains(i) || after.contains(i))
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| socket_inode(target.to_str()?))
        .collect()
}

/// `socket:[123]` → 123.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of the connections whose local port is `port` in a
/// `/proc/net/tcp` (or `tcp6`) table: every state but LISTEN (`0A`).
/// Connections still in an accept queue have inode 0 (no file yet).
fn connections_on(table: &str, port: u16) -> impl Iterator<Item = u64> + '_ {
    table.lines().skip(1).filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?.rsplit(':').next()?;
        let listening = *fields.get(3)? == "0A";
        let inode: u64 = fields.get(9)?.parse().ok()?;
        let ours = u16::from_str_radix(local, 16).ok()? == port;
        (ours && !listening && inode != 0).then_some(inode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_of_a_port_are_found_in_the_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0
   1: 0100007F:0BB8 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 201 1 0 20 4 30 10 -1
   2: 0100007F:0BB8 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1
   3: 0100007F:0BB9 0100007F:C352 01 00000000:00000000 00:00000000 00000000     0        0 301 1 0 20 4 30 10 -1
   4: 0100007F:C353 0100007F:0BB8 01 00000000:00000000 00:00000000 00000000     0        0 401 1 0 20 4 30 10 -1
   5: 0100007F:0BB8 0100007F:C354 08 00000000:00000000 00:00000000 00000000     0        0 202 1 0 20 4 30 10 -1
";
        // Port 3000 (0BB8): the listener, a connection still queued (inode
        // 0), another port's and a client's connection are left out.
        assert_eq!(connections_on(v4, 3000).collect::<Vec<_>>(), [201, 202]);
        assert_eq!(connections_on(v4, 3001).collect::<Vec<_>>(), [301]);
        assert_eq!(connections_on(v4, 80).count(), 0);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:0BB8 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 601 1 0 20 4 30 10 -1
";
        assert_eq!(connections_on(v6, 3000).collect::<Vec<_>>(), [601]);
        assert_eq!(
            connections_on("garbage\nnot a table at all\n", 3000).count(),
            0
        );
    }

    #[test]
    fn socket_links_are_read() {
        assert_eq!(socket_inode("socket:[4898834]"), Some(4_898_834));
        assert_eq!(socket_inode("pipe:[12]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    /// A process that accepted a connection on a port holds it; the same
    /// process before it accepted, and another port, do not count.
    ///
    /// The other port is one this test keeps bound, so no connection of this
    /// process (the client's own ephemeral port, or another test's) can have
    /// it as its local port.
    #[test]
    fn a_process_holding_an_accepted_connection_is_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other_port = other.local_addr().unwrap().port();
        let me = std::process::id();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(!holds_connection(&[me], port), "queued, not accepted yet");
        let (_accepted, _) = listener.accept().unwrap();
        assert!(holds_connection(&[me], port));
        assert!(!holds_connection(&[me], other_port));
    }
}
