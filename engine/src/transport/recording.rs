//! A fake host that records every script, for unit tests of exact command sequences.

use std::sync::{Arc, Mutex};

use super::{Output, Transport};
use crate::Result;

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
