//! Reading a host: ONE remote exec of a POSIX sh script that prints one record per
//! resource (path metadata and small contents, accounts, unit states from a single
//! `systemctl show`, packages from a single package-manager query, command stamps, the
//! loaded nftables table) plus the host's facts.
//!
//! Records are tab-separated lines; free text is base64 so that no path or content can
//! break the framing. A resource that cannot be read gets an `E` record and becomes a
//! `read_error` change; the rest of the plan goes ahead.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::naming::STATE_DIR;
use crate::resource::{Resource, Spec};
use crate::transport::{Transport, sh_quote};
use crate::{Error, Result};

/// Files up to this size are read back whole, for diffs.
pub const MAX_CONTENT: u64 = 256 * 1024;

/// The current state of a path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PathState {
    Absent,
    Link {
        target: String,
    },
    Directory {
        owner: String,
        group: String,
        mode: u32,
    },
    File {
        owner: String,
        group: String,
        mode: u32,
        sha256: String,
        size: u64,
        #[serde(skip)]
        content: Option<Vec<u8>>,
    },
    Other {
        what: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountState {
    pub home: String,
    pub shell: String,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitState {
    pub load: String,
    pub active: String,
    pub sub: String,
    pub enabled: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandState {
    /// `creates` path exists.
    pub created: Option<bool>,
    /// `unless` test succeeded.
    pub unless_ok: Option<bool>,
    /// The stamp written after the last run (`<spec hash> <inputs hash>`).
    pub stamp: Option<String>,
    /// The hash of the input files now.
    pub inputs: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewallState {
    /// sha256 of `nft list table`, or None when the table is not loaded.
    pub loaded: Option<String>,
    /// What HostKit recorded after its last load: `<listing sha> <file sha>`.
    pub stamp: Option<String>,
}

/// A release: whether the wanted commit's folder is complete, and how many releases the
/// host holds (none: the first release is a create).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseState {
    pub present: bool,
    pub releases: u32,
}

/// Everything one read returned.
#[derive(Clone, Debug, Default)]
pub struct HostState {
    pub paths: BTreeMap<String, PathState>,
    pub accounts: BTreeMap<String, Option<AccountState>>,
    pub units: BTreeMap<String, UnitState>,
    pub packages: BTreeMap<String, Option<String>>,
    pub commands: BTreeMap<String, CommandState>,
    pub firewalls: BTreeMap<String, FirewallState>,
    pub releases: BTreeMap<String, ReleaseState>,
    /// Per resource id: why it could not be read.
    pub errors: BTreeMap<String, String>,
    pub facts: BTreeMap<String, String>,
    /// What the monitors run in the same read found, in the order they were given.
    pub monitors: Vec<crate::monitor::ProbeResult>,
}

/// Hashes a command's input files; shared by the read script and the apply step that
/// writes the run stamp, so both compute the same value.
pub const INPUTS_FN: &str = r#"hk_ih() { for i in "$@"; do if [ -e "$i" ]; then sha256sum "$i" 2>&1; else echo "missing $i"; fi; done | sha256sum | cut -c1-64; }
"#;

const PRELUDE: &str = r#"set +e
hk_b64() { base64 | tr -d '\n'; }
hk_e() { printf 'E\t%s\t%s\n' "$1" "$(printf '%s' "$2" | hk_b64)"; }
hk_a() {
  l=$(getent passwd "$2")
  if [ -z "$l" ]; then printf 'A\t%s\tabsent\n' "$1"; return; fi
  printf 'A\t%s\t%s\t%s\n' "$1" "$(printf '%s' "$l" | hk_b64)" "$(id -Gn "$2" 2>/dev/null | hk_b64)"
}
hk_c() {
  id=$1; cr=-; un=-; st=-; ih=-
  [ -n "$2" ] && { if [ -e "$2" ]; then cr=1; else cr=0; fi; }
  [ -n "$3" ] && { if (sh -c "$3") >/dev/null 2>&1 </dev/null; then un=1; else un=0; fi; }
  [ -r "$4" ] && st=$(hk_b64 < "$4")
  shift 4
  [ $# -gt 0 ] && ih=$(hk_ih "$@")
  printf 'C\t%s\t%s\t%s\t%s\t%s\n' "$id" "$cr" "$un" "$st" "$ih"
}
hk_n() {
  l=$(nft list table inet "$2" 2>/dev/null)
  if [ $? -eq 0 ]; then h=$(printf '%s\n' "$l" | sha256sum | cut -c1-64); else h=-; fi
  st=-; [ -r "$3" ] && st=$(hk_b64 < "$3")
  printf 'N\t%s\t%s\t%s\n' "$1" "$h" "$st"
}
if [ -r /etc/os-release ]; then . /etc/os-release; fi
printf 'X\tosId\t%s\nX\tosVersion\t%s\n' "${ID:-unknown}" "${VERSION_ID:-}"
printf 'X\tarch\t%s\nX\thostname\t%s\n' "$(uname -m)" "$(hostname 2>/dev/null || cat /etc/hostname)"
for pm in apt-get dnf apk pacman; do if command -v $pm >/dev/null 2>&1; then printf 'X\tpackageManager\t%s\n' "$pm"; break; fi; done
printf 'X\tsystemdVersion\t%s\n' "$(systemctl --version 2>/dev/null | head -n1 | cut -d' ' -f2)"
"#;

/// The firewall stamp path for a table.
pub fn firewall_stamp(table: &str) -> String {
    format!("{STATE_DIR}/stamps/firewall-inet-{table}")
}

/// Builds the read script for `resources`. `want` holds the desired sha256 per file
/// resource id: only files whose hash differs (and are small) are sent back whole, for the
/// diff, so a no-op read moves hashes, not contents.
pub fn script(resources: &[Resource], want: &BTreeMap<String, String>) -> String {
    let mut s = String::from(INPUTS_FN);
    s.push_str(PRELUDE);
    s.push_str("export LC_ALL=C\n");
    let mut units = BTreeSet::new();
    let mut packages = BTreeSet::new();
    let mut paths = Vec::new();
    let mut files = Vec::new();
    let mut links = Vec::new();
    for r in resources {
        let id = sh_quote(&r.id);
        match &r.spec {
            Spec::File { path, .. } => {
                paths.push(sh_quote(path));
                files.push((r.id.clone(), path.clone()));
            }
            Spec::Directory { path, .. } => paths.push(sh_quote(path)),
            Spec::Symlink { path, .. } => {
                paths.push(sh_quote(path));
                links.push(sh_quote(path));
            }
            Spec::Account { name, .. } => s.push_str(&format!("hk_a {id} {}\n", sh_quote(name))),
            Spec::Unit { name, .. } => {
                units.insert(name.clone());
            }
            Spec::Package { name, system, .. } => {
                packages.insert((name.clone(), system.clone()));
            }
            Spec::Command(c) => {
                let mut line = format!(
                    "hk_c {id} {} {} {}",
                    sh_quote(c.creates.as_deref().unwrap_or("")),
                    sh_quote(c.unless.as_deref().unwrap_or("")),
                    sh_quote(&c.stamp_path)
                );
                for i in c.inputs.iter() {
                    line.push(' ');
                    line.push_str(&sh_quote(i));
                }
                line.push('\n');
                s.push_str(&line);
            }
            Spec::Firewall { table, .. } => s.push_str(&format!(
                "hk_n {id} {} {}\n",
                sh_quote(table),
                sh_quote(&firewall_stamp(table))
            )),
            Spec::Release(rel) => {
                if !s.contains("hk_r()") {
                    s.push_str(crate::release::script::READ_FN);
                }
                s.push_str(&crate::release::script::read_line(&r.id, rel));
            }
        }
    }
    if !paths.is_empty() {
        // One stat for every path, one sha256sum for every file: no process per resource.
        s.push_str(&format!(
            "stat -c 'T|%F|%U|%G|%a|%s|%n' -- {} 2>&1\n",
            paths.join(" ")
        ));
    }
    if !files.is_empty() {
        let list: Vec<String> = files.iter().map(|(_, p)| sh_quote(p)).collect();
        s.push_str(&format!(
            "sha256sum -- {} 2>/dev/null | sed 's/^/H /'\n",
            list.join(" ")
        ));
        s.push_str(&format!(
            "sha256sum -c --quiet 2>/dev/null <<'HK_WANT' | while IFS= read -r l; do p=${{l%: FAILED*}}; [ -f \"$p\" ] || continue; z=$(stat -c %s \"$p\"); [ \"$z\" -le {MAX_CONTENT} ] || continue; printf 'B\\t%s\\t%s\\n' \"$(printf %s \"$p\" | hk_b64)\" \"$(hk_b64 < \"$p\")\"; done\n"
        ));
        for (id, path) in &files {
            let sha = want.get(id).cloned().unwrap_or_else(|| "0".repeat(64));
            s.push_str(&format!("{sha}  {path}\n"));
        }
        s.push_str("HK_WANT\n");
    }
    for l in &links {
        s.push_str(&format!(
            "if [ -L {l} ]; then printf 'L\\t%s\\t%s\\n' \"$(printf %s {l} | hk_b64)\" \"$(readlink {l} | hk_b64)\"; fi\n"
        ));
    }
    if !units.is_empty() {
        let list: Vec<String> = units.iter().map(|u| sh_quote(u)).collect();
        s.push_str(&format!(
            "o=$(systemctl show -p Id -p LoadState -p ActiveState -p SubState -p UnitFileState {} 2>&1)\nif [ $? -eq 0 ]; then printf '%s\\n' \"$o\" | sed 's/^/S\\t/'; else for u in {}; do hk_e \"unit:$u\" \"systemctl: $o\"; done; fi\n",
            list.join(" "),
            list.join(" ")
        ));
    }
    if !packages.is_empty() {
        let list = |manager: &str| {
            let mut names: Vec<String> = packages
                .iter()
                .flat_map(|(p, system)| crate::packages::resolve(p, system.as_deref(), manager))
                .collect();
            names.sort();
            names.dedup();
            names
                .iter()
                .map(|n| sh_quote(n))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (apt, dnf, apk, pacman) = (list("apt-get"), list("dnf"), list("apk"), list("pacman"));
        s.push_str(&format!(
            r#"if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='K\t${{Package}}\t${{db:Status-Abbrev}}\t${{Version}}\n' {apt} 2>/dev/null
elif command -v rpm >/dev/null 2>&1; then rpm -q --qf 'K\t%{{NAME}}\tii \t%{{VERSION}}\n' {dnf} 2>/dev/null | grep '^K'
elif command -v apk >/dev/null 2>&1; then for p in {apk}; do v=$(apk info -e "$p" 2>/dev/null) && printf 'K\t%s\tii \t-\n' "$p"; done
elif command -v pacman >/dev/null 2>&1; then pacman -Q {pacman} 2>/dev/null | while read -r n v; do printf 'K\t%s\tii \t%s\n' "$n" "$v"; done
else for p in {apt}; do hk_e "package:$p" "no supported package manager (apt, dnf, apk, pacman)"; done; fi
"#
        ));
    }
    s.push_str("echo END\n");
    s
}

/// The read script with the monitors' runs appended, all in the same round trip (`END`
/// still closes the output: a read cut short is caught whatever the monitors printed).
pub fn script_with_probes(
    resources: &[Resource],
    want: &BTreeMap<String, String>,
    probes: &[crate::monitor::Probe],
) -> String {
    let mut s = script(resources, want);
    if probes.iter().any(crate::monitor::Probe::on_host) {
        let end = s.len() - "echo END\n".len();
        s.insert_str(end, &crate::monitor::script(probes));
    }
    s
}

fn b64(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

fn b64s(s: &str) -> String {
    String::from_utf8_lossy(&b64(s)).into_owned()
}

/// A `stat` line of a managed path.
struct Stat {
    kind: String,
    owner: String,
    group: String,
    mode: u32,
    size: u64,
}

/// The state script's output, read line by line.
#[derive(Default)]
struct Reader {
    st: HostState,
    /// The unit block being read (`S` lines until an empty one) and its id.
    unit_block: Option<UnitState>,
    unit_id: Option<String>,
    /// Per path: its `stat`, sha256, content and link target, matched to resources at the end.
    stats: BTreeMap<String, std::result::Result<Stat, String>>,
    hashes: BTreeMap<String, String>,
    contents: BTreeMap<String, Vec<u8>>,
    targets: BTreeMap<String, String>,
}

/// Parses the read script's output.
pub fn parse(host: &str, resources: &[Resource], out: &str) -> Result<HostState> {
    if !out.lines().any(|l| l == "END") {
        return Err(Error::Read {
            host: host.into(),
            message: "the state script did not finish (output truncated or interrupted)".into(),
        });
    }
    let mut r = Reader::default();
    for line in out.lines() {
        if !r.path_line(line) {
            let f: Vec<&str> = line.split('\t').collect();
            r.record(&f);
        }
    }
    r.end_unit();
    r.resolve_paths(resources);
    r.fill_absent(resources);
    Ok(r.st)
}

impl Reader {
    /// The per-path lines (`T|…` stat, `stat:` errors, `H` hashes, `B` contents, `L` link
    /// targets); false for any other line.
    fn path_line(&mut self, line: &str) -> bool {
        if let Some(rest) = line.strip_prefix("T|") {
            let f: Vec<&str> = rest.splitn(6, '|').collect();
            if let [kind, owner, group, mode, size, path] = f.as_slice() {
                self.stats.insert(
                    path.to_string(),
                    Ok(Stat {
                        kind: kind.to_string(),
                        owner: owner.to_string(),
                        group: group.to_string(),
                        mode: u32::from_str_radix(mode, 8).unwrap_or(0),
                        size: size.parse().unwrap_or(0),
                    }),
                );
            }
            return true;
        }
        if let Some(rest) = line.strip_prefix("stat: ") {
            // stat: cannot statx '/p': No such file or directory
            if let (Some(a), Some(b)) = (rest.find('\''), rest.rfind("': "))
                && a < b
            {
                self.stats
                    .insert(rest[a + 1..b].to_string(), Err(rest[b + 3..].to_string()));
            }
            return true;
        }
        if let Some(rest) = line.strip_prefix("H ") {
            if let Some((sha, path)) = rest.split_once("  ") {
                self.hashes.insert(path.to_string(), sha.to_string());
            }
            return true;
        }
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["B", path, content] => {
                self.contents.insert(b64s(path), b64(content));
                true
            }
            ["L", path, target] => {
                let t = b64s(target);
                self.targets
                    .insert(b64s(path), t.strip_suffix('\n').unwrap_or(&t).to_string());
                true
            }
            _ => false,
        }
    }

    /// One tab-separated record: paths, errors, accounts, units, packages, commands,
    /// firewalls and facts.
    fn record(&mut self, f: &[&str]) {
        match f {
            ["F", id, "absent"] => {
                self.st.paths.insert(id.to_string(), PathState::Absent);
            }
            ["F", id, "link", target] => {
                self.st.paths.insert(
                    id.to_string(),
                    PathState::Link {
                        target: b64s(target),
                    },
                );
            }
            ["F", id, "dir", u, g, m] => {
                self.st.paths.insert(
                    id.to_string(),
                    PathState::Directory {
                        owner: u.to_string(),
                        group: g.to_string(),
                        mode: u32::from_str_radix(m, 8).unwrap_or(0),
                    },
                );
            }
            ["F", id, "file", u, g, m, sha, size, content] => {
                self.st.paths.insert(
                    id.to_string(),
                    PathState::File {
                        owner: u.to_string(),
                        group: g.to_string(),
                        mode: u32::from_str_radix(m, 8).unwrap_or(0),
                        sha256: sha.to_string(),
                        size: size.parse().unwrap_or(0),
                        content: (*content != "-" || *size == "0").then(|| b64(content)),
                    },
                );
            }
            ["F", id, "other", what] => {
                self.st
                    .paths
                    .insert(id.to_string(), PathState::Other { what: b64s(what) });
            }
            ["E", id, msg] => {
                self.st.errors.insert(id.to_string(), b64s(msg));
            }
            ["A", id, "absent"] => {
                self.st.accounts.insert(id.to_string(), None);
            }
            ["A", id, passwd, groups] => {
                let p = b64s(passwd);
                let parts: Vec<&str> = p.split(':').collect();
                self.st.accounts.insert(
                    id.to_string(),
                    Some(AccountState {
                        home: parts.get(5).unwrap_or(&"").to_string(),
                        shell: parts.get(6).unwrap_or(&"").to_string(),
                        groups: b64s(groups).split_whitespace().map(String::from).collect(),
                    }),
                );
            }
            ["S", kv] => {
                if kv.is_empty() {
                    self.end_unit();
                    return;
                }
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let block = self.unit_block.get_or_insert_with(UnitState::default);
                match k {
                    "Id" => self.unit_id = Some(v.to_string()),
                    "LoadState" => block.load = v.to_string(),
                    "ActiveState" => block.active = v.to_string(),
                    "SubState" => block.sub = v.to_string(),
                    "UnitFileState" => block.enabled = v.to_string(),
                    _ => {}
                }
            }
            ["S"] => self.end_unit(),
            ["K", name, status, version] => {
                let installed = status.starts_with("ii");
                self.st
                    .packages
                    .insert(name.to_string(), installed.then(|| version.to_string()));
            }
            ["C", id, cr, un, stamp, inputs] => {
                self.st.commands.insert(
                    id.to_string(),
                    CommandState {
                        created: (*cr != "-").then_some(*cr == "1"),
                        unless_ok: (*un != "-").then_some(*un == "1"),
                        stamp: (*stamp != "-").then(|| b64s(stamp).trim().to_string()),
                        inputs: inputs.to_string(),
                    },
                );
            }
            ["N", id, loaded, stamp] => {
                self.st.firewalls.insert(
                    id.to_string(),
                    FirewallState {
                        loaded: (*loaded != "-").then(|| loaded.to_string()),
                        stamp: (*stamp != "-").then(|| b64s(stamp).trim().to_string()),
                    },
                );
            }
            ["R", id, present, n] => {
                self.st.releases.insert(
                    id.to_string(),
                    ReleaseState {
                        present: *present == "1",
                        releases: n.trim().parse().unwrap_or(0),
                    },
                );
            }
            ["X", k, v] => {
                self.st.facts.insert(k.to_string(), v.to_string());
            }
            _ => {}
        }
    }

    /// Ends the unit block being read.
    fn end_unit(&mut self) {
        if let (Some(i), Some(b)) = (self.unit_id.take(), self.unit_block.take()) {
            self.st.units.insert(i, b);
        }
    }

    /// Each managed path's state, from its stat, hash, content and link target.
    fn resolve_paths(&mut self, resources: &[Resource]) {
        for r in resources {
            let Some(path) = r.path() else { continue };
            let state = match self.stats.remove(path) {
                None => {
                    self.st
                        .errors
                        .insert(r.id.clone(), "stat printed nothing for this path".into());
                    continue;
                }
                Some(Err(e)) if e.contains("No such file") || e.contains("Not a directory") => {
                    PathState::Absent
                }
                Some(Err(e)) => {
                    self.st.errors.insert(r.id.clone(), e);
                    continue;
                }
                Some(Ok(stat)) => match stat.kind.as_str() {
                    "directory" => PathState::Directory {
                        owner: stat.owner,
                        group: stat.group,
                        mode: stat.mode,
                    },
                    "regular file" | "regular empty file" => match self.hashes.get(path) {
                        Some(sha) => PathState::File {
                            owner: stat.owner,
                            group: stat.group,
                            mode: stat.mode,
                            sha256: sha.clone(),
                            size: stat.size,
                            content: self.contents.remove(path),
                        },
                        None => {
                            self.st
                                .errors
                                .insert(r.id.clone(), format!("cannot read {path}"));
                            continue;
                        }
                    },
                    "symbolic link" => match self.targets.get(path) {
                        Some(t) => PathState::Link { target: t.clone() },
                        None => PathState::Other {
                            what: "symbolic link".into(),
                        },
                    },
                    other => PathState::Other { what: other.into() },
                },
            };
            self.st.paths.insert(r.id.clone(), state);
        }
    }

    /// Units systemd did not list, and packages the package manager does not know, are
    /// absent rather than unread.
    fn fill_absent(&mut self, resources: &[Resource]) {
        for r in resources {
            match &r.spec {
                Spec::Package { name, system, .. } => {
                    let manager = self
                        .st
                        .facts
                        .get("packageManager")
                        .cloned()
                        .unwrap_or_default();
                    for n in crate::packages::resolve(name, system.as_deref(), &manager) {
                        self.st.packages.entry(n).or_insert(None);
                    }
                }
                Spec::Unit { name, .. } if !self.st.errors.contains_key(&r.id) => {
                    self.st.units.entry(name.clone()).or_default();
                }
                _ => {}
            }
        }
    }
}

/// Reads every resource of one host, and runs the probes, in one round trip.
pub async fn read(
    transport: &dyn Transport,
    resources: &[Resource],
    want: &BTreeMap<String, String>,
    probes: &[crate::monitor::Probe],
) -> Result<HostState> {
    let out = transport
        .run(&script_with_probes(resources, want, probes))
        .await?;
    if out.truncated {
        return Err(Error::Read {
            host: transport.host().into(),
            message: "the state output exceeded the transport's size cap".into(),
        });
    }
    let text = out.stdout_text();
    let mut state = parse(transport.host(), resources, &text).map_err(|e| match e {
        Error::Read { host, message } => Error::Read {
            host,
            message: format!("{message}; stderr: {}", out.stderr_text().trim()),
        },
        e => e,
    })?;
    state.monitors = crate::monitor::parse(probes, &text);
    Ok(state)
}
