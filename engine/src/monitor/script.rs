//! The shell side of monitors: one POSIX sh snippet per kind, run under `timeout` with its
//! arguments as positional parameters (never spliced into the snippet's text, so no
//! manifest string is ever shell syntax), printing one line of what it saw and exiting 0
//! when the check passed. Each run becomes an `M` record: index, exit code, milliseconds,
//! the output in base64.

use super::Probe;
use crate::transport::sh_quote;

/// `$1` unit, `$2` expected ActiveState, `$3` expected SubState (or empty), `$4` most
/// restarts since the apply's start (or empty), `$5` the file where the apply's start
/// left the unit's `NRestarts`.
const SYSTEMD: &str = r#"u=$1; want=$2; wsub=$3; maxr=$4; base=$5; a=; s=; r=0
for kv in $(systemctl show -p ActiveState -p SubState -p NRestarts "$u" 2>/dev/null); do
  case $kv in ActiveState=*) a=${kv#*=};; SubState=*) s=${kv#*=};; NRestarts=*) r=${kv#*=};; esac
done
if [ "$a" != "$want" ]; then echo "$u is $a/$s, want $want"; exit 1; fi
if [ -n "$wsub" ] && [ "$s" != "$wsub" ]; then echo "$u is $a/$s, want $want/$wsub"; exit 1; fi
if [ -n "$maxr" ]; then
  b=0; [ -r "$base" ] && b=$(cat "$base"); n=$((${r:-0} - ${b:-0})); [ "$n" -lt 0 ] && n=${r:-0}
  if [ "$n" -gt "$maxr" ]; then echo "$u restarted $n time(s) since the apply started it (at most $maxr)"; exit 1; fi
fi
echo "$u is $a/$s""#;

/// `$1` URL, `$2` expected status, `$3` a substring of the body (or empty), `$4` a curl
/// `--resolve` entry (or empty), `$5` seconds.
const HTTP: &str = r#"command -v curl >/dev/null 2>&1 || { echo "curl is not installed on the host"; exit 1; }
url=$1; want=$2; body=$3; resolve=$4; secs=$5
f=$(mktemp) || exit 1; trap 'rm -f "$f" "$f.e"' EXIT
if [ -n "$resolve" ]; then set -- --resolve "$resolve"; else set --; fi
if ! code=$(curl -sS -o "$f" -w '%{http_code}' --max-time "$secs" "$@" "$url" 2>"$f.e"); then
  echo "GET $url: $(tail -n 1 "$f.e")"; exit 1
fi
if [ "$code" != "$want" ]; then echo "GET $url: $code, want $want"; exit 1; fi
if [ -n "$body" ] && ! grep -qF -- "$body" "$f"; then echo "GET $url: $code, but the body does not contain \"$body\""; exit 1; fi
echo "GET $url: $code""#;

/// `$1` host, `$2` port.
const TCP: &str = r#"command -v bash >/dev/null 2>&1 || { echo "bash is not installed on the host"; exit 1; }
if e=$(bash -c 'exec 3<>"/dev/tcp/$1/$2"' hk "$1" "$2" 2>&1); then echo "$1:$2 accepts connections"; exit 0; fi
echo "$1:$2: ${e##*: }"; exit 1"#;

/// `$1` path, `$2` the mode it must have as a decimal number (or empty), `$3` its greatest
/// age in seconds (or empty).
const FILE: &str = r#"p=$1
if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo "$p does not exist"; exit 1; fi
m=$(stat -c %a "$p"); t=$(stat -c %Y "$p")
if [ -n "$2" ] && [ "$((0$m))" -ne "$2" ]; then echo "$p has mode 0$m, want $(printf '%04o' "$2")"; exit 1; fi
if [ -n "$3" ]; then age=$(( $(date +%s) - t )); if [ "$age" -gt "$3" ]; then echo "$p was last changed ${age}s ago (at most $3s)"; exit 1; fi; fi
echo "$p exists (mode 0$m)""#;

/// `$1` expected exit code, `$2` seconds, `$3` user (or empty), then unit properties up to
/// `--`, then the command. A transient unit: the Service's user and sandbox, killed by
/// systemd itself at the timeout (a killed `systemd-run` would leave it running).
const COMMAND: &str = r#"want=$1; secs=$2; user=$3; shift 3
set -- -p "RuntimeMaxSec=$secs" "$@"
[ -n "$user" ] && set -- -p "User=$user" "$@"
o=$(systemd-run --quiet --wait --pipe --collect --service-type=exec "$@" </dev/null 2>&1); rc=$?
line=$(printf '%s\n' "$o" | tail -n 1)
if [ "$rc" -ne "$want" ]; then echo "exit $rc, want $want${line:+: $line}"; exit 1; fi
echo "exit $rc${line:+: $line}""#;

/// `$1` unit, `$2` pattern (grep -E), `$3` the file the apply's start touched. Says how
/// many lines matched, never what they hold: a service's log may carry what status must
/// not.
const JOURNAL: &str = r#"u=$1; pat=$2; since=
if [ -e "$3" ]; then since="--since=@$(stat -c %Y "$3")"; fi
n=$(journalctl -u "$u" $since -b -o cat --no-pager -q 2>/dev/null | grep -cE -- "$pat")
if [ "${n:-0}" -gt 0 ]; then echo "$n journal line(s) of $u match /$pat/ since the apply (hkctl logs shows them)"; exit 1; fi
echo "no journal line of $u matches /$pat/ since the apply""#;

/// The snippet of a kind the host runs.
fn snippet(kind: &str) -> &'static str {
    match kind {
        "systemd" => SYSTEMD,
        "http" => HTTP,
        "tcp" => TCP,
        "file" => FILE,
        "command" => COMMAND,
        _ => JOURNAL,
    }
}

/// The shell text that runs every probe and prints an `M` record for each.
pub fn script(probes: &[Probe]) -> String {
    let mut s = String::from(
        r#"hk_mb() { base64 | tr -d '\n'; }
hk_m() {
  i=$1; t=$2; k=$3; shift 3
  s0=$(date +%s%N)
  o=$(timeout -k 1 "$t" sh -c "$k" hk-monitor "$@" 2>&1 </dev/null); rc=$?
  s1=$(date +%s%N)
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then o="timed out after ${t}s"; fi
  printf 'M\t%s\t%s\t%s\t%s\n' "$i" "$rc" "$(( (s1 - s0) / 1000000 ))" "$(printf '%s' "$o" | tail -n 3 | hk_mb)"
}
"#,
    );
    let mut kinds: Vec<&str> = probes
        .iter()
        .filter(|p| p.on_host())
        .map(|p| p.kind)
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    for k in &kinds {
        s.push_str(&format!("hk_k_{k}={}\n", sh_quote(snippet(k))));
    }
    for (i, p) in probes.iter().enumerate().filter(|(_, p)| p.on_host()) {
        let secs = p.timeout.as_secs().max(1);
        s.push_str(&format!("hk_m {i} {secs} \"$hk_k_{}\"", p.kind));
        for a in &p.args {
            s.push(' ');
            s.push_str(&sh_quote(a));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::monitor::parse;
    use crate::transport::Local;
    use crate::transport::Transport;

    fn probe(kind: &'static str, args: &[&str]) -> Probe {
        Probe {
            name: kind.into(),
            kind,
            severity: Default::default(),
            timeout: Duration::from_secs(2),
            every: Duration::from_secs(10),
            failure_threshold: 1,
            success_threshold: 1,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    async fn run(probes: &[Probe]) -> Vec<(bool, String)> {
        let out = Local::new("local", false)
            .run(&script(probes))
            .await
            .unwrap();
        parse(probes, &out.stdout_text())
            .into_iter()
            .map(|r| (r.ok, r.message))
            .collect()
    }

    #[tokio::test]
    async fn a_manifest_string_is_an_argument_never_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let hostile = format!(
            "x'; touch {}; echo '$(touch {})",
            marker.display(),
            marker.display()
        );
        let r = run(&[
            probe("file", &[&hostile, "", ""]),
            probe("journal", &["nope.service", &hostile, "/nonexistent"]),
        ])
        .await;
        assert!(!marker.exists(), "a monitor argument ran as shell");
        assert!(!r[0].0 && r[0].1.ends_with("does not exist"), "{r:?}");
    }

    #[tokio::test]
    async fn file_checks_existence_mode_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let p = f.to_str().unwrap();
        let r = run(&[
            probe("file", &[p, "416", "60"]),
            probe("file", &[p, "420", ""]),
            probe("file", &["/nonexistent/x", "", ""]),
        ])
        .await;
        assert_eq!(r[0], (true, format!("{p} exists (mode 0640)")));
        assert_eq!(r[1], (false, format!("{p} has mode 0640, want 0644")));
        assert_eq!(r[2], (false, "/nonexistent/x does not exist".into()));
    }

    #[tokio::test]
    async fn tcp_and_http_against_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for s in listener.incoming().take(3) {
                let Ok(mut s) = s else { continue };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown",
                );
            }
        });
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/health");
        let r = run(&[
            probe("tcp", &["127.0.0.1", &port.to_string()]),
            probe("tcp", &["127.0.0.1", &closed.to_string()]),
            probe("http", &[&url, "503", "down", "", "2"]),
            probe("http", &[&url, "200", "", "", "2"]),
        ])
        .await;
        assert_eq!(
            r[0],
            (true, format!("127.0.0.1:{port} accepts connections"))
        );
        assert_eq!(
            r[1],
            (false, format!("127.0.0.1:{closed}: Connection refused"))
        );
        assert_eq!(r[2], (true, format!("GET {url}: 503")));
        assert_eq!(r[3], (false, format!("GET {url}: 503, want 200")));
    }

    #[tokio::test]
    async fn a_probe_that_outlives_its_timeout_fails_saying_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and never answers: curl waits until `timeout` ends it.
        let url = format!("http://127.0.0.1:{port}/");
        let mut p = probe("http", &[&url, "200", "", "", "30"]);
        p.timeout = Duration::from_secs(1);
        let started = std::time::Instant::now();
        let r = run(&[p]).await;
        drop(listener);
        assert_eq!(r[0], (false, "timed out after 1s".into()));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_record_is_a_failure_that_says_why() {
        let r = parse(&[probe("tcp", &["h", "1"])], "M\t7\t0\t1\t\n");
        assert!(!r[0].ok);
        assert!(r[0].message.contains("ended before this monitor ran"));
    }
}
