//! Storage backups on the host: the snapshot script a Service's backup timer runs (in its
//! sandbox, as its user), and what the controller does with the snapshots over SSH —
//! list them, take one now, restore one (itself reversible: the data it replaces is
//! snapshotted first).
//!
//! A snapshot is `<root>/<id>.tar.gz` with `<id>.tar.gz.sha256` beside it; `id` is the UTC
//! time it was taken (`20261201T231500Z-123456789`), so names sort by age. Both files are
//! written under a temporary name and renamed: a snapshot is whole or absent.

use serde::{Deserialize, Serialize};

use crate::transport::{Transport, sh_quote};
use crate::{Error, Result};

/// Where a storage's snapshots live on the host.
pub fn root(service: &str, storage: &str) -> String {
    format!("/var/backups/hostkit/{service}/{storage}")
}

/// The backup job of `storage` (`<prefix><service>-backup-<storage>.service`).
pub fn job_name(storage: &str) -> String {
    format!("{}{storage}", hostkit_api::kinds::BACKUP_JOB_PREFIX)
}

/// `sh -c SCRIPT hk-backup SOURCE ROOT KEEP [ENTRY…]`: snapshots SOURCE (or only its
/// ENTRYs) into ROOT, then keeps the newest KEEP (0: prune nothing).
pub const SCRIPT: &str = r#"set -eu
src=$1; dest=$2; keep=$3; shift 3
id=$(date -u +%Y%m%dT%H%M%SZ-%N)
tmp="$dest/.$id.tmp"
if [ "$#" -gt 0 ]; then tar -C "$src" -czf "$tmp" -- "$@"; else tar -C "$src" -czf "$tmp" .; fi
sum=$(sha256sum < "$tmp" | cut -c1-64)
mv "$tmp" "$dest/$id.tar.gz"
printf '%s  %s\n' "$sum" "$id.tar.gz" > "$dest/.$id.sha256.tmp"
mv "$dest/.$id.sha256.tmp" "$dest/$id.tar.gz.sha256"
if [ "$keep" -gt 0 ]; then
  ls -1 "$dest" | grep -E '^[0-9]{8}T[0-9]{6}Z-[0-9]{9}\.tar\.gz$' | sort -r | tail -n +"$((keep + 1))" | while read -r old; do rm -f "$dest/$old" "$dest/$old.sha256"; done
fi
echo "SNAPSHOT $id"
"#;

/// One snapshot on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub id: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Whether `id` is a snapshot id this module writes (it lands in paths and commands).
pub fn is_snapshot_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 26
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
        && b[17..].iter().all(u8::is_ascii_digit)
}

/// The snapshots under `root`, newest first.
pub async fn list(transport: &dyn Transport, root: &str) -> Result<Vec<Snapshot>> {
    let script = format!(
        "cd {} 2>/dev/null || exit 0\nfor f in *.tar.gz; do [ -f \"$f\" ] || continue; printf 'S\\t%s\\t%s\\t%s\\n' \"$f\" \"$(stat -c %s \"$f\")\" \"$(cut -c1-64 \"$f.sha256\" 2>/dev/null)\"; done\n",
        sh_quote(root)
    );
    let out = transport.run(&script).await?;
    let mut snaps: Vec<Snapshot> = out
        .stdout_text()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let ["S", file, bytes, sha] = f.as_slice() else {
                return None;
            };
            let id = file.strip_suffix(".tar.gz")?;
            is_snapshot_id(id).then(|| Snapshot {
                id: id.to_string(),
                bytes: bytes.parse().unwrap_or(0),
                sha256: sha.to_string(),
            })
        })
        .collect();
    snaps.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(snaps)
}

/// Runs the backup job now and waits for it; its journal tail when it fails.
pub async fn run_now(transport: &dyn Transport, unit: &str) -> Result<()> {
    let script = format!(
        "systemctl start {u} 2>&1 && exit 0\njournalctl -u {u} -n 10 --no-pager 2>&1\nexit 1\n",
        u = sh_quote(unit)
    );
    let out = transport.run(&script).await?;
    if out.status == 0 {
        return Ok(());
    }
    Err(Error::Apply {
        id: format!("unit:{unit}"),
        message: format!("the backup failed: {}", out.stdout_text().trim()),
    })
}

/// What a restore replaces, and with what.
#[derive(Clone, Debug)]
pub struct Restore {
    /// The storage folder.
    pub source: String,
    /// Its snapshots' folder.
    pub root: String,
    pub id: String,
    /// The entries the snapshots hold (`paths`); empty: the whole storage.
    pub entries: Vec<String>,
    /// Units stopped for the restore and started again after (the daemon).
    pub units: Vec<String>,
}

impl Restore {
    /// The plan as an operator reads it before confirming.
    pub fn describe(&self) -> Vec<String> {
        let what = if self.entries.is_empty() {
            format!("everything in {}", self.source)
        } else {
            format!("{} in {}", self.entries.join(", "), self.source)
        };
        let mut steps = vec![format!(
            "verify the checksum of {}/{}.tar.gz",
            self.root, self.id
        )];
        for u in &self.units {
            steps.push(format!("stop {u} (if running)"));
        }
        steps.push(format!(
            "snapshot what is there now into {} (the restore's undo)",
            self.root
        ));
        steps.push(format!("replace {what} with snapshot {}", self.id));
        for u in &self.units {
            steps.push(format!("start {u} again (if it was running)"));
        }
        steps
    }
}

/// Restores a snapshot: checks its sum, stops the units, snapshots what is there (the
/// returned id undoes the restore), extracts beside the storage and moves the entries in,
/// starts the units that ran. Nothing is replaced when the snapshot does not check out.
pub async fn restore(transport: &dyn Transport, r: &Restore) -> Result<String> {
    if !is_snapshot_id(&r.id) {
        return Err(Error::Invalid {
            object: r.source.clone(),
            field: "id".into(),
            message: format!("{:?} is not a snapshot id", r.id),
        });
    }
    let units: Vec<String> = r.units.iter().map(|u| sh_quote(u)).collect();
    let entries: Vec<String> = r.entries.iter().map(|e| sh_quote(e)).collect();
    let script = format!(
        r#"set -eu
src={src}; dest={dest}; id={id}
cd "$dest" && sha256sum -c --quiet "$id.tar.gz.sha256" >&2
running=
for u in {units}; do if systemctl is-active -q "$u"; then running="$running $u"; systemctl stop "$u"; fi; done
pre=$(sh -c {script} hk-backup "$src" "$dest" 0 {entries} | sed -n 's/^SNAPSHOT //p')
tmp=$(mktemp -d "$src.restore.XXXXXX")
tar -C "$tmp" -xzf "$dest/$id.tar.gz"
if [ -z {entries_given} ]; then find "$src" -mindepth 1 -maxdepth 1 -exec rm -rf -- {{}} +; chown --reference="$tmp" "$src"; chmod --reference="$tmp" "$src"; fi
find "$tmp" -mindepth 1 -maxdepth 1 -exec sh -c 'for p; do n=${{p##*/}}; rm -rf -- "$0/$n"; mv -- "$p" "$0/$n"; done' "$src" {{}} +
rmdir "$tmp"
for u in $running; do systemctl start "$u"; done
echo "PRE $pre"
"#,
        src = sh_quote(&r.source),
        dest = sh_quote(&r.root),
        id = sh_quote(&r.id),
        units = if units.is_empty() {
            "''".to_string()
        } else {
            units.join(" ")
        },
        script = sh_quote(SCRIPT),
        entries = entries.join(" "),
        entries_given = sh_quote(&entries.join(" ")),
    );
    let out = transport.run(&script).await?;
    let pre = out
        .stdout_text()
        .lines()
        .find_map(|l| l.strip_prefix("PRE ").map(str::to_string))
        .filter(|p| is_snapshot_id(p));
    match (out.status, pre) {
        (0, Some(pre)) => Ok(pre),
        _ => Err(Error::Apply {
            id: format!("backup:{}", r.source),
            message: format!("restoring {} failed: {}", r.id, out.stderr_text().trim()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_are_the_time_and_nothing_else() {
        assert!(is_snapshot_id("20261201T231500Z-123456789"));
        assert!(!is_snapshot_id("20261201T231500Z-12345678"));
        assert!(!is_snapshot_id("../../etc/passwd"));
        assert!(!is_snapshot_id("20261201T231500Z-12345678;"));
    }
}
