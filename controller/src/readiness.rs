//! Readiness for systemd (`Type=notify`): `hostkit serve` says `READY=1` once its store is
//! open and its API server listens, and `STOPPING=1` when it begins to shut down, so that
//! `systemctl start hostkit` returns only when `hkctl` can talk to it, and units ordered
//! after it start on a server that answers.
//!
//! The protocol is one datagram to the socket in `$NOTIFY_SOCKET` (a path, or an abstract
//! name when it starts with `@`); outside systemd the variable is absent and nothing is
//! sent. Hand-written: it is twenty lines, and no dependency is needed for it.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=…`, newline-separated) to systemd.
/// Returns whether a manager was there to tell.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => send(&path, state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to the notification socket `path`.
fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// [`notify`], logging instead of failing: a server that cannot tell systemd still serves
/// (systemd then reports the start as timed out, which is the visible symptom).
pub fn tell(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "told systemd"),
        Ok(false) => {}
        Err(e) => tracing::warn!(state, error = %e, "could not notify systemd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real datagram sockets stand in for systemd's, by path and by abstract name: the
    /// message arrives whole.
    #[test]
    fn readiness_reaches_a_socket_by_path_and_by_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let by_path = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let n = by_path.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        let name = format!("hostkit-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_socket = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = abstract_socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
