//! A host's package lock as the controller keeps it: the version of every distribution
//! package its resources install, recorded the first time it is seen installed, pinned by
//! every plan after, and moved only when an operator asks (`hkctl lock update`).

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::PackageLock;
use crate::resource::{Resource, Spec};
use crate::transport::Transport;
use crate::{Error, Result};

/// The distribution packages `resources` install under `manager`, each with the
/// `version:` glob its resource asks for.
pub fn wanted<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
    manager: &str,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for r in resources {
        if let Spec::Package {
            name,
            system,
            version,
            ..
        } = &r.spec
        {
            for n in super::resolve(name, system.as_deref(), manager) {
                out.entry(n).or_insert_with(|| version.clone());
            }
        }
    }
    out
}

/// The lock after a pass: entries for packages nothing installs any more go, packages
/// seen installed for the first time are recorded at the version seen, and the rest keep
/// their pin — unless the spec's glob no longer accepts it (the spec wins; the plan then
/// installs a matching version and the next pass records that).
pub fn merge(
    lock: &PackageLock,
    wanted: &BTreeMap<String, Option<String>>,
    installed: &PackageLock,
) -> PackageLock {
    let mut out = PackageLock::new();
    for (name, version) in wanted {
        let accepted = |v: &&String| {
            version
                .as_deref()
                .is_none_or(|want| super::version_matches(want, v))
        };
        let kept = lock.get(name).filter(accepted);
        if let Some(v) = kept.or_else(|| installed.get(name).filter(accepted)) {
            out.insert(name.clone(), v.clone());
        }
    }
    out
}

/// The newest version of each wanted package that its glob allows, after refreshing the
/// host's package index: the lock `hkctl lock update` asks for. apt only for now; other
/// managers are refused with the reason rather than pretending.
pub async fn newest(
    transport: &dyn Transport,
    manager: &str,
    wanted: &BTreeMap<String, Option<String>>,
) -> Result<PackageLock> {
    if manager != "apt-get" {
        return Err(Error::Transport {
            host: transport.host().into(),
            message: format!(
                "refreshing a package lock is implemented for apt hosts; this host uses {}",
                if manager.is_empty() {
                    "no known package manager"
                } else {
                    manager
                }
            ),
        });
    }
    let plain: BTreeSet<&String> = wanted.keys().filter(|n| super::is_plain_word(n)).collect();
    let list: Vec<(String, Option<String>)> = wanted
        .iter()
        .filter(|(n, _)| plain.contains(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let out = transport.run(&super::install::newest_script(&list)).await?;
    let picked = super::install::parse_newest(&out.stdout_text());
    let missing: Vec<&String> = list
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !picked.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Transport {
            host: transport.host().into(),
            message: format!(
                "no version to lock for {}: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                out.stderr_text().trim()
            ),
        });
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(entries: &[(&str, &str)]) -> PackageLock {
        entries
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_lock_records_first_sightings_keeps_pins_and_drops_what_nothing_installs() {
        let wanted: BTreeMap<String, Option<String>> = [
            ("tree".to_string(), None),
            ("hk-demo".to_string(), Some("2.6.*".to_string())),
            ("jq".to_string(), None),
        ]
        .into();
        let before = lock(&[("tree", "2.1.0-1"), ("hk-demo", "2.6.1-1"), ("gone", "1")]);
        let installed = lock(&[("tree", "2.1.1-1"), ("hk-demo", "2.6.3-1"), ("jq", "1.6-2")]);
        assert_eq!(
            merge(&before, &wanted, &installed),
            lock(&[("tree", "2.1.0-1"), ("hk-demo", "2.6.1-1"), ("jq", "1.6-2")]),
            "pins stay, jq is recorded as seen, gone goes"
        );
        // The spec moved past the pin: the pin goes; what is installed now is recorded
        // only once it matches (the plan installs a match first).
        let wanted: BTreeMap<String, Option<String>> =
            [("hk-demo".to_string(), Some("1.*".to_string()))].into();
        assert_eq!(
            merge(&before, &wanted, &lock(&[("hk-demo", "1.0.0-1")])),
            lock(&[("hk-demo", "1.0.0-1")])
        );
        assert_eq!(
            merge(&before, &wanted, &PackageLock::new()),
            PackageLock::new()
        );
        assert_eq!(
            merge(&before, &wanted, &lock(&[("hk-demo", "2.6.3-1")])),
            PackageLock::new(),
            "a version the spec does not accept is not locked"
        );
    }
}
