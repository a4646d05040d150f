//! The marker protocol that lets many steps share one round trip: each step runs in its
//! own subshell between `HK_BEGIN i` and `HK_END i rc` lines, and the script ends after the
//! first step that fails, so a host is never changed past a failure. Apply and down plans
//! both use it.
//!
//! An apply also writes each step's begin and end to its journal on the host (see
//! [`crate::journal`]) before it says so on stdout: stdout dies with the controller, the
//! journal does not.

/// Changes sent to the host in one script (each still runs on its own, in order, and the
/// first failure ends the script): one round trip per batch instead of per change.
pub(crate) const BATCH: usize = 64;
pub(crate) const BATCH_BYTES: usize = 4 << 20;

/// One script that runs `steps` in order, each in its own subshell between begin/end
/// markers, and ends after the first that fails.
pub(crate) fn batch_script<'a>(steps: impl IntoIterator<Item = &'a str>) -> String {
    journaled_batch_script(steps.into_iter().map(|s| ("", s)), None)
}

/// [`batch_script`] whose steps, each `(label, script)`, are also written to `journal`
/// (a path on the host) as `B <label>` before the step and `E <label> <rc>` after it.
/// Labels are [`crate::journal::label`]s: one word each.
pub(crate) fn journaled_batch_script<'a>(
    steps: impl IntoIterator<Item = (&'a str, &'a str)>,
    journal: Option<&str>,
) -> String {
    let mut script = String::new();
    if let Some(j) = journal {
        // Which shell runs this batch, and since when: a controller that settles the run
        // later must not while it still runs (its shell outlives a killed controller until
        // its next write to the closed connection).
        script.push_str(&format!(
            "J={}\nprintf 'P %s %s\\n' \"$$\" \"$(cut -d' ' -f22 /proc/$$/stat 2>/dev/null)\" >> \"$J\"\n",
            crate::transport::sh_quote(j)
        ));
    }
    for (i, (label, step)) in steps.into_iter().enumerate() {
        let (begin, end) = match journal {
            // A step whose begin cannot be written does not run: the journal would not
            // know of it.
            Some(_) => (
                format!(
                    "printf 'B %s\\n' {label} >> \"$J\" || {{ printf 'HK_BEGIN {i}\\nthe journal %s cannot be written\\nHK_END {i} 1\\n' \"$J\"; exit 0; }}\n"
                ),
                format!("printf 'E %s %s\\n' {label} \"$rc\" >> \"$J\"\n"),
            ),
            None => (String::new(), String::new()),
        };
        script.push_str(&format!(
            "{begin}printf 'HK_BEGIN {i}\\n'\n(\n{step}\n) 2>&1 </dev/null\nrc=$?\n{end}printf 'HK_END {i} %s\\n' \"$rc\"\n[ \"$rc\" -eq 0 ] || exit 0\n"
        ));
    }
    script
}

/// Each step's exit code and output from a [`batch_script`]'s stdout; `None` for steps that
/// did not report (not reached, or the connection ended).
pub(crate) fn parse_batch(stdout: &str, n: usize) -> Vec<Option<(i32, String)>> {
    let mut outputs = vec![None; n];
    let mut current: Option<(usize, String)> = None;
    for line in stdout.lines() {
        if let Some(i) = line.strip_prefix("HK_BEGIN ") {
            current = i.parse().ok().map(|i| (i, String::new()));
        } else if let Some(rest) = line.strip_prefix("HK_END ") {
            let mut f = rest.split(' ');
            let i: usize = f.next().and_then(|x| x.parse().ok()).unwrap_or(usize::MAX);
            let rc: i32 = f.next().and_then(|x| x.parse().ok()).unwrap_or(1);
            if let Some((ci, text)) = current.take()
                && ci == i
                && i < n
            {
                outputs[i] = Some((rc, text));
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_reports_its_own_code_and_output_and_unreached_steps_report_nothing() {
        let script = batch_script(["echo a", "echo b; exit 3", "echo c"]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let steps = parse_batch(&String::from_utf8_lossy(&out.stdout), 3);
        assert_eq!(
            steps,
            [
                Some((0, "a\n".to_string())),
                Some((3, "b\n".to_string())),
                None
            ]
        );
        // A connection cut in the middle of a step: that step did not report.
        assert_eq!(parse_batch("HK_BEGIN 0\nhalf", 1), [None]);
    }
}
