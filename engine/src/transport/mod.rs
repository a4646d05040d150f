//! How scripts reach a host. Every remote action is a POSIX sh script sent on stdin to
//! `sh -s` (through `sudo -n` for a non-root SSH user), so file contents and secrets never
//! appear in a process list and nothing but `sh` is needed on the target.

mod local;
mod recording;
pub mod ssh;

pub use local::Local;
pub use recording::Recording;

use crate::Result;

/// What a script printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// True when stdout or stderr hit the transport's size cap.
    pub truncated: bool,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Default cap on what one script may print (the state read of a big host is the largest).
pub const MAX_OUTPUT: usize = 64 << 20;

#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// The host's name, for messages.
    fn host(&self) -> &str;
    /// Runs `script` with `sh -s`. A transport error means the script may not have run;
    /// it is never re-sent.
    async fn run(&self, script: &str) -> Result<Output>;
}

/// What a transport sends for `script`: the script as one brace group. `sh -s` reads its
/// script as it arrives and runs each complete line at once, and at end of input it runs
/// a partial last line too: a controller killed while sending would leave the host running
/// a prefix of the script, its last command perhaps cut in the middle of a path
/// (`rm -f /etc/app/x.conf` arriving as `rm -f /etc/app/x`). The shell parses a compound
/// command whole before running any of it, so a cut-off script is a syntax error and
/// nothing runs.
pub fn whole(script: &str) -> String {
    let mut s = String::with_capacity(script.len() + 8);
    s.push_str("{\n");
    s.push_str(script);
    if !script.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("}\n");
    s
}

/// Quotes a word for POSIX sh.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh_stdin(script: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(script).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Every prefix of a script, as a connection cut at any byte would deliver it: the
    /// bare script runs its first lines (and a cut-off command), the wrapped one runs
    /// nothing unless it arrived whole.
    #[test]
    fn a_script_cut_off_in_transit_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "echo first > {d}/first\ncat > {d}/heredoc <<'EOF'\n}}\nEOF\necho last > {d}/last\n",
            d = dir.path().display()
        );
        let bare = sh_stdin(&script.as_bytes()[..script.find("cat").unwrap() + 2]);
        assert!(
            dir.path().join("first").exists(),
            "the bare prefix ran: {bare:?}"
        );
        std::fs::remove_file(dir.path().join("first")).unwrap();
        let wrapped = whole(&script);
        // Up to the closing brace: with it, all of the script is there.
        for cut in 1..wrapped.len() - 2 {
            sh_stdin(&wrapped.as_bytes()[..cut]);
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(left.is_empty(), "cut at {cut} ran something");
        }
        let out = sh_stdin(wrapped.as_bytes());
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("heredoc")).unwrap(),
            "}\n"
        );
        assert!(dir.path().join("last").exists());
    }

    #[test]
    fn sh_quote_survives_the_shell() {
        for word in ["plain", "a b", "it's", "$(rm -rf /)", "", "\\n\"x\""] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word);
        }
    }
}
