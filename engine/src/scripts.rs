//! The shell snippets every change and every undo step is made of. Each is POSIX `sh`,
//! quotes every value that came from a spec with [`sh_quote`], and replaces files by a
//! rename from the same folder, so a host never sees half a file.

use base64::Engine;

use crate::outcome::Backup;
use crate::resource::CommandSpec;
use crate::state::{INPUTS_FN, firewall_stamp};
use crate::transport::{Output, sh_quote};

pub(crate) fn b64(bytes: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(bytes);
    // 76-column lines keep every shell and base64 implementation happy.
    s.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The script that backs up `path` (when it is a regular file) into the run folder `root`
/// ([`crate::naming::file_backup`]), printing `BACKUP\t<backup>\t<sha256>\tsalted`.
///
/// The recorded sha256 is of a random salt (kept in the run's `salts/`, 0600) followed by
/// the content: history shows it, and a plain hash of an env file would let its reader
/// confirm a guessed secret offline.
pub(crate) fn backup_script(path: &str, root: &str) -> String {
    let backup = crate::naming::file_backup(root, path);
    let salt = crate::naming::salt_of(&backup);
    format!(
        r#"if [ -f {p} ] && [ ! -L {p} ]; then
  b={b}; s={s}
  (umask 077; mkdir -p "$(dirname "$b")" "$(dirname "$s")"; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$s")
  cp {p} "$b"; chmod 600 "$b"
  printf 'BACKUP\t%s\t%s\tsalted\n' "$b" "$( {{ cat "$s"; cat "$b"; }} | sha256sum | cut -c1-64)"
fi
"#,
        p = sh_quote(path),
        b = sh_quote(&backup),
        s = sh_quote(&salt),
    )
}

/// A shell word matching every staging folder of `run` in `dir` (quoted, but for the glob):
/// each is `<dir>/.hostkit.<run>.<n>`.
pub(crate) fn temp_glob(dir: &str, run: &str) -> String {
    format!(
        "{}/.hostkit.{}.*",
        sh_quote(dir.trim_end_matches('/')),
        sh_quote(run)
    )
}

/// Always single-quotes (also the empty string and plain words).
pub(crate) fn sh_single(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Enables a unit the way `systemctl enable` does for `WantedBy=` (a link in each target's
/// `.wants/`), without the manager round trip that costs ~90 ms per unit.
pub(crate) fn enable_script(name: &str, wanted_by: &[String]) -> String {
    if wanted_by.is_empty() {
        return format!("systemctl enable --quiet {} 2>&1 || true\n", sh_quote(name));
    }
    let mut s = String::new();
    for t in wanted_by {
        let w = sh_quote(&format!("{}/{t}.wants", crate::naming::UNIT_DIR));
        s.push_str(&format!(
            "[ -d {w} ] || mkdir -p {w}\nln -sfn {} {w}/{}\n",
            sh_quote(&format!("{}/{name}", crate::naming::UNIT_DIR)),
            sh_quote(name)
        ));
    }
    s
}

pub(crate) fn command_script(c: &CommandSpec, argv: &[String], write_stamp: bool) -> String {
    let mut s = String::from(INPUTS_FN);
    s.push_str("set -u\n");
    let mut inner = String::new();
    if let Some(cwd) = &c.cwd {
        inner.push_str(&format!("cd {} && ", sh_quote(cwd)));
    }
    for f in &c.env_files {
        inner.push_str(&format!("set -a && . {} && set +a && ", sh_quote(f)));
    }
    for (k, v) in &c.environment {
        inner.push_str(&format!("export {k}={} && ", sh_quote(v)));
    }
    inner.push_str("exec ");
    if let Some(u) = &c.user {
        inner.push_str(&format!("runuser -u {} -- ", sh_quote(u)));
    }
    if let Some(t) = c.timeout_secs {
        inner.push_str(&format!("timeout {t} "));
    }
    inner.push_str(
        &argv
            .iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let codes = if c.success_codes.is_empty() {
        "0".to_string()
    } else {
        c.success_codes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    s.push_str(&format!(
        r#"out=$( ( {inner} ) 2>&1 </dev/null ); code=$?
ok=0; for c in {codes}; do [ "$code" = "$c" ] && ok=1; done
if [ $ok = 0 ]; then printf '%s\n' "$out" | tail -n 20; echo "exit status $code"; exit 1; fi
"#
    ));
    if write_stamp {
        let inputs = c
            .inputs
            .iter()
            .map(|i| sh_quote(i))
            .collect::<Vec<_>>()
            .join(" ");
        s.push_str(&format!(
            "ih=-; {}\nmkdir -p \"$(dirname {sp})\"\nprintf '%s %s\\n' {stamp} \"$ih\" > {sp}\n",
            if c.inputs.is_empty() {
                String::new()
            } else {
                format!("ih=$(hk_ih {inputs})")
            },
            sp = sh_quote(&c.stamp_path),
            stamp = sh_quote(&c.stamp),
        ));
    } else {
        s.push_str(&format!("rm -f {}\n", sh_quote(&c.stamp_path)));
    }
    s
}

pub(crate) fn firewall_load_script(table: &str, file: &str, backup_root: Option<&str>) -> String {
    let t = sh_quote(table);
    let backup = match backup_root {
        Some(root) => format!(
            r#"if nft list table inet {t} >/dev/null 2>&1; then
  b={b}
  (umask 077; mkdir -p "$(dirname "$b")")
  {{ echo "table inet {table}"; echo "delete table inet {table}"; nft list table inet {t}; }} > "$b"; chmod 600 "$b"
  printf 'BACKUP\t%s\t%s\n' "$b" "$(sha256sum < "$b" | cut -c1-64)"
fi
"#,
            b = sh_quote(&crate::naming::firewall_backup(root, table)),
        ),
        None => String::new(),
    };
    format!(
        r#"set -eu
f={f}
{backup}nft -c -f "$f"
nft -f "$f"
l=$(nft list table inet {t})
mkdir -p "$(dirname {stamp})"
printf '%s %s\n' "$(printf '%s\n' "$l" | sha256sum | cut -c1-64)" "$(sha256sum < "$f" | cut -c1-64)" > {stamp}
"#,
        f = sh_quote(file),
        stamp = sh_quote(&firewall_stamp(table)),
    )
}

/// Every `BACKUP` line of a step's output (a files step backs up several).
pub(crate) fn parse_backups(text: &str) -> impl Iterator<Item = Backup> + '_ {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        match f.as_slice() {
            ["BACKUP", path, sha] => Some(Backup {
                path: path.to_string(),
                sha256: sha.to_string(),
                salted: false,
            }),
            ["BACKUP", path, sha, "salted"] => Some(Backup {
                path: path.to_string(),
                sha256: sha.to_string(),
                salted: true,
            }),
            _ => None,
        }
    })
}

pub(crate) fn output_message(out: &Output) -> String {
    let mut text = out.stdout_text();
    text.push_str(&out.stderr_text());
    failure_message(out.status, &text)
}

/// What separates a failure's message from the unit's journal tail after it.
pub const JOURNAL_MARK: &str = "\njournal:\n";

/// A failure message without the journal tail that follows it (if any), and the tail:
/// conditions say the first, the failure's event says both, so 20 journal lines are
/// shown once.
pub fn split_journal(message: &str) -> (&str, Option<&str>) {
    match message.split_once(JOURNAL_MARK) {
        Some((head, tail)) => (head, Some(tail)),
        None => (message, None),
    }
}

pub(crate) fn failure_message(status: i32, text: &str) -> String {
    let text = text.replace("HOSTKIT_JOURNAL\n", &JOURNAL_MARK[1..]);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("BACKUP\t"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(25)..];
    format!("exit status {status}: {}", tail.join("\n"))
}

/// Removes a file (after backing it up into `root`, when given).
pub(crate) fn remove_file_script(path: &str, root: Option<&str>) -> String {
    let mut s = String::from("set -eu\n");
    if let Some(root) = root {
        s.push_str(&backup_script(path, root));
    }
    s.push_str(&format!("rm -f {}\n", sh_quote(path)));
    s
}

pub(crate) fn directory_script(path: &str, owner: &str, group: &str, mode: u32) -> String {
    format!(
        "set -eu\nmkdir -p {p}\nchown {o}:{g} {p}\nchmod {mode:04o} {p}\n",
        p = sh_quote(path),
        o = sh_quote(owner),
        g = sh_quote(group)
    )
}

/// Points `path` at `to` atomically (a new link renamed over the old one).
pub(crate) fn symlink_script(path: &str, to: &str) -> String {
    format!(
        "set -eu\nd=$(dirname {p}); mkdir -p \"$d\"; t=\"$d/.hostkit.$$\"\nln -s {to} \"$t\"\nmv -Tf \"$t\" {p}\n",
        p = sh_quote(path),
        to = sh_quote(to)
    )
}

pub(crate) fn useradd_script(
    name: &str,
    system: bool,
    home: &str,
    shell: &str,
    groups: &[String],
) -> String {
    format!(
        "set -eu\nuseradd {}--no-create-home --home-dir {} --shell {} --user-group {}{}\n",
        if system { "--system " } else { "" },
        sh_quote(home),
        sh_quote(shell),
        if groups.is_empty() {
            String::new()
        } else {
            format!("--groups {} ", sh_quote(&groups.join(",")))
        },
        sh_quote(name)
    )
}

pub(crate) fn usermod_script(name: &str, home: &str, shell: &str, groups: &[String]) -> String {
    format!(
        "set -eu\nusermod --home {} --shell {} {}{}\n",
        sh_quote(home),
        sh_quote(shell),
        if groups.is_empty() {
            String::new()
        } else {
            format!("--append --groups {} ", sh_quote(&groups.join(",")))
        },
        sh_quote(name)
    )
}

pub(crate) fn unit_disable_script(name: &str) -> String {
    format!("systemctl disable --now {} 2>&1 || true\n", sh_quote(name))
}

/// Removes HostKit's nftables table and its stamp (a firewall that left the spec, or the
/// undo of one HostKit created).
pub(crate) fn firewall_delete_script(table: &str) -> String {
    format!(
        "nft delete table inet {} 2>&1 || true\nrm -f {}\n",
        sh_quote(table),
        sh_quote(&firewall_stamp(table))
    )
}

/// Reloads Caddy after a site file changed, when Caddy runs.
pub(crate) const CADDY_RELOAD: &str =
    "if systemctl is-active -q caddy 2>/dev/null; then systemctl reload caddy; fi\n";
