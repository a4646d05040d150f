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
