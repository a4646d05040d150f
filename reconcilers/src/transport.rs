//! How scripts reach a host. Every remote action is a POSIX sh script sent on stdin to
//! `sh -s` (through `sudo -n` for a non-root SSH user), so file contents and secrets never
//! appear in a process list and nothing but `sh` is needed on the target.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

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

/// Runs scripts on this machine (`hostkit plan --host local`, and tests).
pub struct Local {
    name: String,
    sudo: bool,
}

impl Local {
    pub fn new(name: impl Into<String>, sudo: bool) -> Local {
        Local {
            name: name.into(),
            sudo,
        }
    }
}

#[async_trait::async_trait]
impl Transport for Local {
    fn host(&self) -> &str {
        &self.name
    }

    async fn run(&self, script: &str) -> Result<Output> {
        let mut cmd = if self.sudo {
            let mut c = tokio::process::Command::new("sudo");
            c.args(["-n", "sh", "-s"]);
            c
        } else {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-s");
            c
        };
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::Transport {
            host: self.name.clone(),
            message: format!("cannot start sh: {e}"),
        })?;
        let mut stdin = child.stdin.take().expect("piped");
        let script = script.as_bytes().to_vec();
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&script).await;
        });
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout_cap = (&mut stdout).take(MAX_OUTPUT as u64 + 1);
        let mut stderr_cap = (&mut stderr).take(MAX_OUTPUT as u64 + 1);
        let (a, b) = tokio::join!(
            stdout_cap.read_to_end(&mut out),
            stderr_cap.read_to_end(&mut err)
        );
        a?;
        b?;
        let _ = writer.await;
        let status = child.wait().await?;
        let truncated = out.len() > MAX_OUTPUT || err.len() > MAX_OUTPUT;
        out.truncate(MAX_OUTPUT);
        err.truncate(MAX_OUTPUT);
        Ok(Output {
            status: status.code().unwrap_or(128),
            stdout: out,
            stderr: err,
            truncated,
        })
    }
}

/// A fake host for unit tests of exact command sequences: records every script and
/// answers with the first matching canned reply (or success with no output).
#[derive(Clone, Default)]
pub struct Recording {
    pub scripts: Arc<Mutex<Vec<String>>>,
    replies: Arc<Mutex<Vec<(String, Output)>>>,
}

impl Recording {
    /// Answers scripts containing `needle` with `output`.
    pub fn reply(&self, needle: &str, output: Output) {
        self.replies
            .lock()
            .expect("not poisoned")
            .push((needle.to_string(), output));
    }

    pub fn recorded(&self) -> Vec<String> {
        self.scripts.lock().expect("not poisoned").clone()
    }
}

#[async_trait::async_trait]
impl Transport for Recording {
    fn host(&self) -> &str {
        "recording"
    }

    async fn run(&self, script: &str) -> Result<Output> {
        self.scripts
            .lock()
            .expect("not poisoned")
            .push(script.to_string());
        let replies = self.replies.lock().expect("not poisoned");
        if let Some((_, o)) = replies.iter().find(|(n, _)| script.contains(n.as_str())) {
            return Ok(o.clone());
        }
        // A batch of changes: report each as succeeded, as a healthy host would.
        let mut out = Output::default();
        for line in script.lines() {
            if let Some(rest) = line.strip_prefix("printf 'HK_BEGIN ") {
                let i = rest.split('\\').next().unwrap_or("0");
                out.stdout
                    .extend_from_slice(format!("HK_BEGIN {i}\nHK_END {i} 0\n").as_bytes());
            }
        }
        Ok(out)
    }
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

    #[tokio::test]
    async fn local_runs_scripts_from_stdin() {
        let out = Local::new("local", false)
            .run("echo out; echo err >&2; exit 3")
            .await
            .unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_text(), "err\n");
    }
}
