//! The host's side of a release, as POSIX sh run as root: read whether it is there, make
//! it (fetch, build, rename, prune), and remove every release when the source goes.
//!
//! Nothing from the spec is ever part of a command line that systemd or a shell would
//! parse again: values are single-quoted into small step scripts that root writes to a
//! folder beside the release, and `systemd-run` is handed only `/bin/sh <step file>`, a
//! user name and plain paths (the expansion refused any other).

use super::{MARKER, ReleaseSpec};
use crate::transport::sh_quote;

/// Defines `hk_r ID DIR COMMIT` for the read script: prints `R <id> <present 0|1>
/// <releases on the host>`.
pub const READ_FN: &str = r#"hk_r() {
  p=0; [ -f "$2/releases/$3/.hostkit-release" ] && p=1
  n=$(ls -1d "$2"/releases/*/ 2>/dev/null | wc -l)
  printf 'R\t%s\t%s\t%s\n' "$1" "$p" "$n"
}
"#;

/// The read script's line for one release.
pub fn read_line(id: &str, r: &ReleaseSpec) -> String {
    format!(
        "hk_r {} {} {}\n",
        sh_quote(id),
        sh_quote(&r.dir),
        sh_quote(&r.commit)
    )
}

/// The git protocol the URL uses: the only one git may speak for this fetch.
fn protocol(url: &str) -> &'static str {
    match url.split_once("://").map(|(s, _)| s) {
        Some("https") => "https",
        Some("http") => "http",
        Some("ssh") => "ssh",
        _ => "git",
    }
}

/// The fetch step, run as the Service's user in the incoming folder: exactly `commit`,
/// one commit deep, no tags, no other protocol, then the checkout without `.git`.
fn fetch_step(r: &ReleaseSpec) -> String {
    let git = format!(
        "git -c protocol.allow=never -c protocol.{}.allow=always",
        protocol(&r.git)
    );
    let mut s = String::from("set -eu\nexport GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1\n");
    if let Some(ssh) = &r.ssh {
        let cmd = format!(
            "ssh -F none -o BatchMode=yes -o ConnectTimeout=20 -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i {} -o UserKnownHostsFile={}",
            ssh.key, ssh.known_hosts
        );
        s.push_str(&format!("export GIT_SSH_COMMAND={}\n", sh_quote(&cmd)));
    }
    let (url, commit) = (sh_quote(&r.git), sh_quote(&r.commit));
    s.push_str("git init -q\n");
    s.push_str(&format!(
        "if ! {git} fetch -q --depth 1 --no-tags -- {url} {commit} 2>/dev/null; then\n"
    ));
    if r.fallback_ref.is_empty() {
        s.push_str(&format!(
            "  {git} fetch -q --no-tags -- {url} '+refs/heads/*:refs/remotes/origin/*'\n"
        ));
    } else {
        s.push_str(&format!(
            "  {git} fetch -q --depth 1 --no-tags -- {url} {}\n",
            sh_quote(&r.fallback_ref)
        ));
    }
    s.push_str("fi\n");
    s.push_str(&format!(
        "if ! git cat-file -e {commit}^{{commit}} 2>/dev/null; then echo \"the repository no longer has commit {} where the controller found it (the ref moved); the next pass resolves it again\"; exit 1; fi\n",
        r.commit
    ));
    s.push_str(&format!(
        "git -c advice.detachedHead=false checkout -q --detach {commit}\nrm -rf .git\n"
    ));
    s
}

/// A build step: the argv, quoted, `exec`ed by sh (which parses nothing else).
fn build_step(argv: &[String]) -> String {
    let words: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
    format!("exec {}\n", words.join(" "))
}

/// Makes the release (when it is not already complete), then prunes. Exit 1 with a
/// message naming the step that failed; the incoming folder never survives a failure.
pub fn apply(r: &ReleaseSpec) -> String {
    let mut s = String::from("set -u\n");
    s.push_str(&format!(
        "dir={}\nc={}\nrels=\"$dir/releases\"\nrel=\"$rels/$c\"\ninc=\"$rels/.incoming-$c\"\nsteps=\"$rels/.steps-$c\"\n",
        sh_quote(&r.dir),
        sh_quote(&r.commit),
    ));
    let owner = format!("{}:{}", sh_quote(&r.user), sh_quote(&r.group));
    let mut props = vec![
        format!("User={}", r.user),
        format!("Group={}", r.group),
        "UMask=0022".to_string(),
        "NoNewPrivileges=yes".to_string(),
        "PrivateTmp=yes".to_string(),
    ];
    let sandboxed_props: Vec<String> = r
        .sandbox
        .iter()
        .filter(|p| !p.starts_with("ReadWritePaths=") && !p.starts_with("User="))
        .cloned()
        .collect();
    props.push("ProtectSystem=strict".to_string());
    let prop_args = |extra: &[String]| -> String {
        props
            .iter()
            .chain(extra)
            .map(|p| format!("-p {}", sh_quote(p)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let workdir = match &r.subdir {
        Some(sub) => format!("$inc/{sub}"),
        None => "$inc".to_string(),
    };
    s.push_str(&format!(
        r#"hk_fail() {{ rm -rf "$inc" "$steps"; exit 1; }}
hk_in() {{ systemd-run --quiet --wait --pipe --collect --service-type=exec -p "ReadWritePaths=$inc" -E "HOME=$inc/.hostkit-home" "$@" </dev/null 2>&1; }}
mkdir -p "$rels" || exit 1
if [ ! -f "$rel/{MARKER}" ]; then
  command -v git >/dev/null 2>&1 || {{ echo "git is not installed on the host: add git to the Service's packages"; exit 1; }}
  rm -rf "$inc" "$steps" "$rel"
  mkdir -m 0755 "$steps" && mkdir -m 0750 "$inc" "$inc/.hostkit-home" && chown -R {owner} "$inc" || hk_fail
"#
    ));
    let mut step_files = vec![("fetch".to_string(), fetch_step(r))];
    for (i, argv) in r.build.iter().enumerate() {
        step_files.push((format!("build-{}", i + 1), build_step(argv)));
    }
    for (name, text) in &step_files {
        s.push_str(&format!(
            "  printf '%s' {} > \"$steps/{name}.sh\" || hk_fail\n",
            sh_quote(text)
        ));
    }
    s.push_str(&format!(
        "  out=$(hk_in {} -p \"WorkingDirectory=$inc\" /bin/sh \"$steps/fetch.sh\") || {{ rc=$?; echo \"fetch of {} from {} failed (exit status $rc):\"; printf '%s\\n' \"$out\" | tail -n 20; hk_fail; }}\n",
        prop_args(&[]),
        r.short(),
        r.git.replace(['"', '$', '`', '\\'], "")
    ));
    let n = r.build.len();
    for (i, argv) in r.build.iter().enumerate() {
        let shown = argv.join(" ").replace(['"', '$', '`', '\\'], "");
        s.push_str(&format!(
            "  [ -d \"{workdir}\" ] || {{ echo \"build step {k} of {n} ({shown}): the source has no folder {sub}\"; hk_fail; }}\n  out=$(hk_in {} -p \"WorkingDirectory={workdir}\" /bin/sh \"$steps/build-{k}.sh\") || {{ rc=$?; echo \"build step {k} of {n} ({shown}) failed with exit status $rc:\"; printf '%s\\n' \"$out\" | tail -n 20; hk_fail; }}\n",
            prop_args(&sandboxed_props),
            k = i + 1,
            sub = r.subdir.as_deref().unwrap_or(".").replace(['"', '$', '`', '\\'], ""),
        ));
    }
    s.push_str(&format!(
        r#"  rm -rf "$inc/.hostkit-home"
  printf '%s\n' "$c" > "$inc/{MARKER}" && chown -R root:root "$inc" && chmod -R go-w "$inc" && chmod 0755 "$inc" || hk_fail
  sync -f "$inc/{MARKER}" 2>/dev/null
  mv -T "$inc" "$rel" || hk_fail
  rm -rf "$steps"
  echo "release {short} fetched{built}"
fi
"#,
        short = r.short(),
        built = if n == 0 {
            String::new()
        } else {
            format!(" and built ({n} step(s))")
        },
    ));
    s.push_str(&prune(r));
    s
}

/// Removes releases beyond `keep` (newest first, by when each was completed), sparing the
/// new one, the one `current` names and the protected ones.
fn prune(r: &ReleaseSpec) -> String {
    let mut spared = vec!["\"$c\"".to_string(), "\"$cur\"".to_string()];
    spared.extend(
        r.protect
            .iter()
            .filter(|c| hostkit_api::kinds::is_commit_id(c))
            .cloned(),
    );
    format!(
        r#"cur=$(readlink "$dir/current" 2>/dev/null); cur=${{cur##*/}}
n=0
ls -1t "$rels"/*/{MARKER} 2>/dev/null | while IFS= read -r m; do
  r=${{m%/{MARKER}}}; k=${{r##*/}}; n=$((n+1))
  [ "$n" -le {keep} ] && continue
  case "$k" in {spared}) continue;; esac
  rm -rf "$r" && echo "pruned release $k"
done
exit 0
"#,
        keep = r.keep,
        spared = spared.join("|"),
    )
}

/// Removes every release (the source left the spec, or its first release is undone).
pub fn remove_all(dir: &str) -> String {
    format!(
        "set -eu\ndir={}\nrm -rf \"$dir/releases\"\nrmdir \"$dir\" 2>/dev/null || true\n",
        sh_quote(dir)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> ReleaseSpec {
        ReleaseSpec {
            dir: "/opt/shop".into(),
            git: "https://git.example.com/acme/shop.git".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            fallback_ref: "refs/tags/v1".into(),
            subdir: Some("app".into()),
            build: vec![vec![
                "/usr/bin/make".into(),
                "release; touch /tmp/pwned".into(),
            ]],
            user: "shop".into(),
            group: "shop".into(),
            sandbox: vec!["ProtectHome=yes".into(), "ReadWritePaths=/srv/x".into()],
            keep: 3,
            ssh: None,
            protect: vec![
                "89abcdef0123456789abcdef0123456789abcdef".into(),
                "x|y".into(),
            ],
        }
    }

    #[test]
    fn the_script_parses_and_quotes_what_the_spec_says() {
        let s = apply(&release());
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The build's argument reaches its step file as one quoted word.
        let step = build_step(&release().build[0]);
        assert_eq!(step, "exec /usr/bin/make 'release; touch /tmp/pwned'\n");
        assert!(s.contains(&sh_quote(&step)), "{s}");
        // The daemon's writable paths are not the build's; the sandbox otherwise is.
        assert!(s.contains("-p ProtectHome=yes") && !s.contains("ReadWritePaths=/srv/x"));
        // Only valid commit ids are spared by the prune's case pattern.
        assert!(s.contains("89abcdef0123456789abcdef0123456789abcdef") && !s.contains("x|y"));
        assert!(s.contains("protocol.https.allow=always"));
    }
}
