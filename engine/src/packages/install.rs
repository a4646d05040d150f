//! The one script that installs a batch of packages: each at its locked version, or the
//! newest the index offers matching its `version:` glob, or whatever the index has; then a
//! `LOCK` line per package with the version now installed.
//!
//! Package names and versions are plain words (checked by the API and again by the plan),
//! so they appear bare; the glob is only ever a `case` pattern, never re-parsed as shell.

use crate::plan::PackageLock;
use crate::transport::sh_quote;

/// One distribution package to install.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Install {
    pub name: String,
    /// A `version:` glob to pick the newest matching version of.
    pub version: Option<String>,
    /// The exact version a lock holds (it wins over `version`, which it matches).
    pub pin: Option<String>,
}

/// Installs `packages` under `manager` in one call, refreshing the index first when
/// `update`. Without `update` a package or version the index does not have makes one
/// refresh and a retry (a host's index is often older than its repository).
pub(crate) fn install_script(manager: &str, packages: &[Install], update: bool) -> String {
    let plain = packages
        .iter()
        .map(|p| sh_quote(&p.name))
        .collect::<Vec<_>>()
        .join(" ");
    match manager {
        "dnf" => {
            let list = words(packages, |p| match (&p.pin, &p.version) {
                (Some(v), _) | (None, Some(v)) => format!("{}-{v}", p.name),
                _ => p.name.clone(),
            });
            let refresh = if update { " --refresh" } else { "" };
            format!(
                "set -e\ndnf install -y{refresh} {list}\nrpm -q --qf 'LOCK\\t%{{NAME}}\\t%{{VERSION}}-%{{RELEASE}}\\n' {plain}\n"
            )
        }
        "apk" => {
            let list = words(packages, |p| match (&p.pin, &p.version) {
                (Some(v), _) => format!("{}={v}", p.name),
                (None, Some(v)) if v.ends_with('*') => {
                    format!(
                        "{}~{}",
                        p.name,
                        v.trim_end_matches('*').trim_end_matches('.')
                    )
                }
                (None, Some(v)) => format!("{}={v}", p.name),
                _ => p.name.clone(),
            });
            let refresh = if update { " --update-cache" } else { "" };
            format!("set -e\napk add{refresh} {list}\n")
        }
        "pacman" => {
            let list = words(packages, |p| p.name.clone());
            let refresh = if update {
                "pacman -Sy --noconfirm\n"
            } else {
                ""
            };
            format!(
                "set -e\n{refresh}pacman -S --noconfirm --needed {list}\npacman -Q {plain} | while read -r n v; do printf 'LOCK\\t%s\\t%s\\n' \"$n\" \"$v\"; done\n"
            )
        }
        _ => apt_script(packages, update, &plain),
    }
}

/// The shell functions that pick, per package, the newest version apt's index offers that
/// matches a glob (`hk_pick NAME GLOB`, appending `NAME=VERSION` to `$L`).
const APT_PICK: &str = r#"hk_match() {
  u=${1#*:}; r=${u%-*}
  for x in "$1" "$u" "$r"; do case "$x" in $2) return 0;; esac; done
  return 1
}
hk_pick() {
  b=; all=
  for v in $(apt-cache madison "$1" 2>/dev/null | awk -F'|' -v n="$1" '{gsub(/ /, "", $1); gsub(/ /, "", $2)} $1 == n && $3 ~ /Packages/ {print $2}'); do
    all="$all $v"
    if hk_match "$v" "$2" && { [ -z "$b" ] || dpkg --compare-versions "$v" gt "$b"; }; then b=$v; fi
  done
  if [ -z "$b" ]; then
    echo "package $1: no version matching $2 in the package index (it offers:${all:- nothing})" >&2
    return 1
  fi
  L="$L $1=$b"
}
"#;

/// Refreshes the index and prints `PICK<TAB>name=version` for the newest version of
/// each package its glob allows (`*` without one): what `hkctl lock update` moves a lock
/// to. Only apt is supported; other managers are refused by the caller.
pub(crate) fn newest_script(packages: &[(String, Option<String>)]) -> String {
    let mut s = format!(
        "set -f\nexport DEBIAN_FRONTEND=noninteractive\napt-get update -q >/dev/null || exit 1\n{APT_PICK}"
    );
    for (name, version) in packages {
        s.push_str(&format!(
            "L=; hk_pick {name} {} && printf 'PICK\\t%s\\n' \"${{L# }}\"\n",
            sh_quote(version.as_deref().unwrap_or("*"))
        ));
    }
    s
}

/// The `PICK` lines of [`newest_script`]: name → version.
pub(crate) fn parse_newest(text: &str) -> PackageLock {
    text.lines()
        .filter_map(|l| l.strip_prefix("PICK\t"))
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// apt cannot pick "the newest 2.6.*" itself: `hk_pick` asks `apt-cache madison` for what
/// the index offers, keeps the newest match by `dpkg --compare-versions`, and says what was
/// offered when nothing matches.
fn apt_script(packages: &[Install], update: bool, plain: &str) -> String {
    let mut resolve = String::from("hk_resolve() {\n  L=\n");
    for p in packages {
        match (&p.pin, &p.version) {
            (Some(v), _) => resolve.push_str(&format!("  L=\"$L {}={v}\"\n", p.name)),
            (None, Some(want)) => resolve.push_str(&format!(
                "  hk_pick {} {} || return 1\n",
                p.name,
                sh_quote(want)
            )),
            (None, None) => resolve.push_str(&format!("  L=\"$L {}\"\n", p.name)),
        }
    }
    resolve.push_str("}\n");
    let first = if update {
        "apt-get update -q 2>&1\nhk_resolve\n"
    } else {
        "hk_resolve 2>/dev/null || { apt-get update -q 2>&1; hk_resolve; }\n"
    };
    let install = if update {
        "apt-get install $o $L 2>&1\n"
    } else {
        "apt-get install $o $L 2>&1 || { apt-get update -q 2>&1 && apt-get install $o $L 2>&1; }\n"
    };
    format!(
        r#"set -e
set -f
export DEBIAN_FRONTEND=noninteractive
o="-y -q --no-install-recommends --allow-downgrades"
{APT_PICK}{resolve}{first}{install}dpkg-query -W -f='LOCK\t${{Package}}\t${{Version}}\n' {plain}
"#
    )
}

fn words(packages: &[Install], f: impl Fn(&Install) -> String) -> String {
    packages
        .iter()
        .map(|p| sh_quote(&f(p)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `LOCK` lines a package install printed.
pub(crate) fn parse_lock(text: &str) -> PackageLock {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                ["LOCK", name, version] => Some((name.to_string(), version.to_string())),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// Runs `script` with recording stand-ins for apt's commands (the real `dpkg
    /// --compare-versions` decides order): `apt-cache madison` offers `offered`; every
    /// `apt-get` call is written to `calls`. Returns (succeeded, calls, stderr).
    fn run_apt(script: &str, offered: &[&str]) -> (bool, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path();
        let madison: String = offered
            .iter()
            .map(|v| format!("  hk-demo | {v} | file:/srv/repo ./ Packages\\n"))
            .collect();
        let calls = bin.join("calls");
        let fakes = [
            (
                "apt-cache",
                format!(
                    "#!/bin/sh\n[ \"$1\" = madison ] && [ \"$2\" = hk-demo ] && printf '{madison}'\n"
                ),
            ),
            (
                "apt-get",
                format!("#!/bin/sh\necho \"apt-get $*\" >> {}\n", calls.display()),
            ),
            (
                "dpkg-query",
                "#!/bin/sh\nprintf 'LOCK\\thk-demo\\t2.6.3-1\\n'\n".to_string(),
            ),
        ];
        for (name, text) in fakes {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", path)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&calls).unwrap_or_default();
        (
            out.status.success(),
            calls,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn demo(version: Option<&str>, pin: Option<&str>) -> Vec<Install> {
        vec![
            Install {
                name: "hk-demo".into(),
                version: version.map(str::to_string),
                pin: pin.map(str::to_string),
            },
            Install {
                name: "tree".into(),
                version: None,
                pin: None,
            },
        ]
    }

    const OFFERED: &[&str] = &["2.6.1-1", "2.60.0-1", "2.6.3-1", "1.0.0-1"];

    #[test]
    fn apt_picks_the_newest_version_matching_the_glob() {
        let (ok, calls, err) = run_apt(
            &install_script("apt-get", &demo(Some("2.6.*"), None), false),
            OFFERED,
        );
        assert!(ok, "{err}");
        assert!(
            calls.contains("install") && calls.contains(" hk-demo=2.6.3-1 tree"),
            "{calls}"
        );
        assert!(!calls.contains("update"), "no refresh was needed: {calls}");
        let (ok, calls, err) = run_apt(
            &install_script("apt-get", &demo(Some("1.0.0"), None), false),
            OFFERED,
        );
        assert!(ok, "{err}");
        assert!(calls.contains(" hk-demo=1.0.0-1 tree"), "{calls}");
    }

    #[test]
    fn apt_names_the_offered_versions_when_none_matches_after_one_refresh() {
        let (ok, calls, err) = run_apt(
            &install_script("apt-get", &demo(Some("9.*"), None), false),
            OFFERED,
        );
        assert!(!ok);
        assert_eq!(calls.matches("update").count(), 1, "{calls}");
        assert!(!calls.contains("install"), "{calls}");
        assert!(
            err.contains("package hk-demo: no version matching 9.* in the package index (it offers: 2.6.1-1 2.60.0-1 2.6.3-1 1.0.0-1)"),
            "{err}"
        );
    }

    #[test]
    fn apt_refreshes_first_when_asked_and_a_lock_wins_over_the_glob() {
        let (ok, calls, err) = run_apt(
            &install_script("apt-get", &demo(Some("2.6.*"), Some("2.6.1-1")), true),
            OFFERED,
        );
        assert!(ok, "{err}");
        let lines: Vec<&str> = calls.lines().collect();
        assert!(lines[0].starts_with("apt-get update"), "{calls}");
        assert!(lines[1].contains(" hk-demo=2.6.1-1 tree"), "{calls}");
    }

    #[test]
    fn a_glob_is_a_case_pattern_never_shell() {
        let (ok, calls, err) = run_apt(
            &install_script("apt-get", &demo(Some("$(touch /tmp/x)*"), None), false),
            OFFERED,
        );
        assert!(!ok && !calls.contains("install"), "{calls}");
        assert!(
            err.contains("no version matching $(touch /tmp/x)*"),
            "{err}"
        );
    }

    #[test]
    fn other_managers_pin_their_own_way() {
        let dnf = install_script("dnf", &demo(Some("2.6.*"), None), true);
        assert!(
            dnf.contains("dnf install -y --refresh 'hk-demo-2.6.*' tree"),
            "{dnf}"
        );
        let apk = install_script("apk", &demo(Some("2.6.*"), None), true);
        assert!(
            apk.contains("apk add --update-cache 'hk-demo~2.6' tree"),
            "{apk}"
        );
        let apk = install_script("apk", &demo(None, Some("2.6.3-r0")), false);
        assert!(apk.contains("apk add hk-demo=2.6.3-r0 tree"), "{apk}");
        let pacman = install_script("pacman", &demo(None, None), true);
        assert!(
            pacman.starts_with("set -e\npacman -Sy --noconfirm\npacman -S"),
            "{pacman}"
        );
        let parsed = parse_lock("noise\nLOCK\ttree\t2.1.0-1\nLOCK\tjq\t1.6\n");
        assert_eq!(parsed.get("jq").map(String::as_str), Some("1.6"));
        assert_eq!(parsed.len(), 2);
    }
}
