//! Which installed versions satisfy a `version:` glob, and which locked versions still
//! apply: the plan and the install script must agree on both.

use crate::plan::PackageLock;
use std::collections::BTreeMap;

/// Whether the installed `version` satisfies `pattern` (a glob: `*` any run, `?` one
/// character): the whole version, or it without its epoch (`1:`), or without its epoch and
/// distribution revision (`-1`). The install script applies the same rule with the shell's
/// `case`, so what the plan wants and what apply picks agree.
pub fn version_matches(pattern: &str, version: &str) -> bool {
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    let bare = upstream.rsplit_once('-').map_or(upstream, |(v, _)| v);
    [version, upstream, bare].iter().any(|v| glob(pattern, v))
}

/// `*` and `?` globbing without backtracking blow-up: the last `*` seen is the only place
/// to resume from.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c == t[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// A package or version string safe as a bare shell word (the API checks both; the engine
/// checks again because a Revision's resources are read back from the store).
pub fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '~' | ':'))
}

/// The locked version of each of `names` that the install must keep, dropping a lock
/// entry the spec's `version` no longer accepts (the spec wins over a stale lock).
pub fn pins(
    names: &[String],
    version: Option<&str>,
    lock: &PackageLock,
) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|n| {
            let pin = lock.get(n)?;
            version
                .is_none_or(|want| version_matches(want, pin))
                .then(|| (n.clone(), pin.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_whole_without_epoch_or_without_revision() {
        assert!(version_matches("2.6.*", "2.6.3-1"));
        assert!(version_matches("2.6.3", "2.6.3-1"));
        assert!(version_matches("2.6.3-1", "2.6.3-1"));
        assert!(version_matches("2.6.3", "1:2.6.3-1+deb12u1"));
        assert!(version_matches("1:2.*", "1:2.6.3-1"));
        assert!(version_matches("2.?.3", "2.6.3"));
        assert!(!version_matches("2.6.*", "2.60.1-1"));
        assert!(!version_matches("2.6", "2.6.3-1"));
        assert!(!version_matches("2.7.*", "2.6.3-1"));
        assert!(!version_matches("1.0.0", "1.0.0.1"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob(&"*a".repeat(20), &"a".repeat(40)));
    }
}
