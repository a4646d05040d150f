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
            // know of it. Only then is the shell's reason fetched (one more try, its
            // message kept after the last ": ", such as "Permission denied").
            Some(_) => (
                format!(
                    "printf 'B %s\\n' {label} >> \"$J\" 2>/dev/null || {{ why=$( {{ : >> \"$J\"; }} 2>&1 ); printf 'HK_BEGIN {i}\\nthe journal %s cannot be written: %s\\nHK_END {i} 1\\n' \"$J\" \"${{why##*: }}\"; exit 0; }}\n"
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

    fn run_journaled(journal: &str, marker: &std::path::Path) -> Vec<Option<(i32, String)>> {
        let step = format!("touch {}", marker.display());
        let script = journaled_batch_script([("00", step.as_str())], Some(journal));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        parse_batch(&String::from_utf8_lossy(&out.stdout), 1)
    }

    #[test]
    fn a_journaled_step_is_written_before_and_after_and_does_not_run_unjournaled() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let journal = dir.path().join("journal");
        let steps = run_journaled(journal.to_str().unwrap(), &marker);
        assert_eq!(steps, [Some((0, String::new()))]);
        assert!(marker.exists());
        let text = std::fs::read_to_string(&journal).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("P "), "{text}");
        assert_eq!(&lines[1..], ["B 00", "E 00 0"], "{text}");

        // A journal that cannot be written: the step does not run, and says why.
        std::fs::remove_file(&marker).unwrap();
        let missing = dir.path().join("no/such/dir/journal");
        let steps = run_journaled(missing.to_str().unwrap(), &marker);
        let (rc, out) = steps[0].clone().expect("the step reports");
        assert_eq!(rc, 1);
        assert!(
            out.contains("cannot be written: ") && out.contains("nonexistent"),
            "{out}"
        );
        assert!(
            !marker.exists(),
            "a step ran that the journal does not know of"
        );
    }
}
