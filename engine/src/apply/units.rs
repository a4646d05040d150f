//! Starting units together: every unit (re)start that is ready at one point of the plan is
//! enabled, restarted in one `systemctl restart`, polled in one `systemctl show` until all
//! are active, and then judged after ONE settle window (did each stay active, without a
//! restart?), instead of a restart, a poll loop and a settle sleep per unit. A unit that
//! fails is still named, with its journal, and only it is marked failed.

use std::time::Duration;

use super::{Applying, Step};
use crate::plan::Action;
use crate::resource::Spec;
use crate::transport::sh_quote;

impl Applying<'_> {
    /// One start for the unit starts from `i` on that are ready together (consecutive in
    /// the graph order: anything between them may depend on the ones before it), after
    /// `prefix` (a daemon-reload), judged after one settle window.
    pub(super) fn units_step(&self, i: usize, prefix: String) -> Step {
        let prepared = self.prepared;
        let group: Vec<(&str, &str, &[String])> = self.changes[i..]
            .iter()
            .map_while(|c| match (&prepared.resources[&c.id].spec, c.action) {
                (
                    Spec::Unit {
                        name,
                        start: true,
                        wanted_by,
                    },
                    Action::Create | Action::Update,
                ) if !self.done.contains(&c.id) => {
                    Some((c.id.as_str(), name.as_str(), wanted_by.as_slice()))
                }
                _ => None,
            })
            .collect();
        let units: Vec<(&str, &[String])> = group.iter().map(|(_, n, w)| (*n, *w)).collect();
        let mut script = prefix;
        script.push_str(&start_script(&units, self.opts.settle));
        Step::Run {
            ids: group.iter().map(|(id, _, _)| id.to_string()).collect(),
            script,
        }
    }
}

/// The line a failed unit is named by in the step's output (first line of the failure).
pub(super) const FAILED_MARK: &str = "HK_UNIT_FAILED ";

/// Restarts `units` (name, `WantedBy=` targets) together and checks them after one
/// settle window.
pub(super) fn start_script(units: &[(&str, &[String])], settle: Duration) -> String {
    let mut s = String::from("set -u\n");
    for (name, wanted_by) in units {
        s.push_str(&crate::scripts::enable_script(name, wanted_by));
    }
    let all: Vec<String> = units.iter().map(|(n, _)| sh_quote(n)).collect();
    let all = all.join(" ");
    let settle_ms = settle.as_millis();
    let settle_text = format!("{}.{:03}", settle_ms / 1000, settle_ms % 1000);
    s.push_str(&format!(
        r#"hk_fail() {{ printf '{FAILED_MARK}%s\n%s\n' "$1" "$2"; echo "HOSTKIT_JOURNAL"; journalctl -u "$1" -n 20 --no-pager 2>&1; exit 1; }}
# One line per unit, whatever order systemctl prints properties in: NAME STATE RESTARTS
# (a timer has no restart count: 0).
hk_states() {{ systemctl show -p Id -p ActiveState -p NRestarts {all} | awk -F= '/^Id=/{{id=$2}} /^ActiveState=/{{st=$2}} /^NRestarts=/{{nr=$2}} /^$/{{if (id != "") print id, st, (nr == "" ? 0 : nr); id = ""; st = ""; nr = ""}} END{{if (id != "") print id, st, (nr == "" ? 0 : nr)}}'; }}
systemctl reset-failed {all} 2>/dev/null
t0=$(date +%s); m0=$(date +%s%3N)
if ! out=$(systemctl restart {all} 2>&1); then
  while read -r u st nr; do case "$st" in active|activating|reloading) ;; *) hk_fail "$u" "$u is $st: $out" ;; esac; done <<HK_STATES
$(hk_states)
HK_STATES
  hk_fail {first} "$out"
fi
r0=$(hk_states)
mkdir -p {dir}
# For monitors: each unit's restarts since this start (the count) and its journal since
# then (the file's mtime).
while read -r u st nr; do
  f={dir}/"$u"; printf '%s\n' "$nr" > "$f.tmp" && touch -d "@$t0" "$f.tmp" && mv -f "$f.tmp" "$f"
done <<HK_STATES
$r0
HK_STATES
n=0
while :; do
  up=0
  while read -r u st nr; do
    [ -n "$u" ] || continue
    case "$st" in
      active) up=$((up+1)) ;;
      failed|inactive) hk_fail "$u" "$u is $st" ;;
      *) [ $n -gt 100 ] && hk_fail "$u" "$u did not become active within 10s (state $st)" ;;
    esac
  done <<HK_STATES
$(hk_states)
HK_STATES
  [ "$up" -ge {count} ] && break
  [ $n -gt 101 ] && hk_fail {first} "the units did not all become active within 10s: $(hk_states 2>&1 | head -c 300)"
  n=$((n+1)); sleep 0.1
done
m1=$(date +%s%3N)
if [ {settle_ms} -gt 0 ]; then
  sleep {settle_text}
  # Every unit must be reported: a `systemctl show` that printed nothing is not "stayed up".
  seen=0
  while read -r u st nr; do
    [ -n "$u" ] || continue
    seen=$((seen+1))
    before=$(printf '%s\n' "$r0" | awk -v u="$u" '$1 == u {{print $3}}')
    r=$(( nr - ${{before:-0}} ))
    if [ "$st" != active ] || [ "$r" != 0 ]; then hk_fail "$u" "$u did not stay active (state $st, restarts since the apply's start $r)"; fi
  done <<HK_STATES
$(hk_states 2>&1)
HK_STATES
  [ "$seen" -eq {count} ] || hk_fail {first} "systemctl reported $seen of {count} unit(s) after the settle window: $(hk_states 2>&1 | head -c 300)"
fi
printf '{TIMING_MARK}%s %s\n' "$((m1 - m0))" "$(($(date +%s%3N) - m1))"
"#,
        first = sh_quote(units[0].0),
        dir = sh_quote(&format!("{}/restarts", crate::naming::STATE_DIR)),
        count = units.len(),
    ));
    s
}

/// The line a started group reports its start and settle times on (milliseconds).
const TIMING_MARK: &str = "HK_UNITS_TIMING ";

/// A started group's (start, settle) milliseconds, from its step's output.
pub(super) fn timing(text: &str) -> Option<(u64, u64)> {
    let rest = text.lines().find_map(|l| l.strip_prefix(TIMING_MARK))?;
    let (a, b) = rest.split_once(' ')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The unit a failed step's output names.
pub(super) fn failed_unit(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix(FAILED_MARK))
}

/// The failure's message without the marker line.
pub(super) fn without_mark(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(FAILED_MARK))
        .map(|l| format!("{l}\n"))
        .collect()
}
