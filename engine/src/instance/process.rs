//! A machine's processes as the backend tracks them: a pid with its start time (a reused
//! pid is never mistaken for it), the container's init found under nspawn, and ending it.

use super::*;

/// A process, with its start time so that a reused pid is never mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Proc {
    pub(super) pid: u32,
    pub(super) start: u64,
}

impl Proc {
    /// The live process `pid` (a zombie has ended: it only waits to be reaped).
    pub(super) fn of(pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name: state is field 3, start time 22.
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
        if matches!(fields.next(), Some("Z" | "X")) {
            return None;
        }
        let start = fields.nth(18)?.parse().ok()?;
        Some(Proc { pid, start })
    }

    pub(super) fn alive(&self) -> bool {
        Proc::of(self.pid) == Some(*self)
    }

    /// The container's init: the child of `nspawn` in another pid namespace.
    pub(super) fn init_of(nspawn: u32) -> Option<Proc> {
        let ours = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let children =
            std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| std::fs::read_link(format!("/proc/{c}/ns/pid")).is_ok_and(|ns| ns != ours))
            .and_then(Proc::of)
    }

    /// SIGKILL, then waits (up to 5 s) until it is gone.
    pub(super) async fn kill(&self) {
        if !self.alive() {
            return;
        }
        // SAFETY: kill(2) on a pid whose start time says it is still the machine's init.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.alive() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `unshare --pid --fork` stands in for systemd-nspawn: a parent whose child is the init
    /// of a new pid namespace, and which, killed, leaves that child running (root needed).
    #[tokio::test]
    async fn an_init_that_outlives_its_nspawn_is_found_and_killed() {
        let mut parent = Command::new("unshare")
            .args(["--pid", "--fork", "sleep", "30"])
            .spawn()
            .unwrap();
        let pid = parent.id().unwrap();
        let mut init = None;
        for _ in 0..100 {
            init = Proc::init_of(pid);
            if init.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let init = init.expect("the child in the new pid namespace");
        assert_ne!(init.pid, pid);
        assert!(init.alive());
        parent.kill().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            init.alive(),
            "it outlives its parent, as a container outlives nspawn"
        );
        init.kill().await;
        assert!(!init.alive());
        assert!(
            !Proc { start: 0, ..init }.alive(),
            "a pid is only its process with the same start time"
        );
    }
}
