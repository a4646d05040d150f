//! The local shell as a host: `hostkit plan --host local`, and tests on this machine's real
//! files.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{MAX_OUTPUT, Output, Transport};
use crate::{Error, Result};

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
        let script = super::whole(script).into_bytes();
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

#[cfg(test)]
mod tests {
    use super::*;

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
