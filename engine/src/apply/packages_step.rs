//! Package changes as one step: every package change from one point of the plan goes to
//! the package manager in one install.

use super::{Applying, Step};
use crate::packages;
use crate::plan::Action;
use crate::resource::Spec;

impl Applying<'_> {
    /// One install for every package change from `i` on: the package manager resolves them
    /// together, and one call is one round trip.
    pub(super) fn packages_step(&self, i: usize) -> Step {
        let prepared = self.prepared;
        let manager = prepared
            .facts
            .get("packageManager")
            .map(String::as_str)
            .unwrap_or("apt-get");
        let mut ids = vec![self.changes[i].id.clone()];
        let mut installs: Vec<packages::Install> = Vec::new();
        let mut update = false;
        for c in self.changes[i..]
            .iter()
            .filter(|c| matches!(c.action, Action::Create | Action::Update))
        {
            let Spec::Package {
                name,
                system,
                version,
                update: refresh,
            } = &prepared.resources[&c.id].spec
            else {
                continue;
            };
            ids.push(c.id.clone());
            update |= *refresh;
            let names = packages::resolve(name, system.as_deref(), manager);
            let pins = packages::pins(&names, version.as_deref(), &prepared.lock);
            for n in names {
                if installs.iter().any(|p| p.name == n) {
                    continue;
                }
                installs.push(packages::Install {
                    pin: pins.get(&n).cloned(),
                    version: version.clone(),
                    name: n,
                });
            }
        }
        ids.dedup();
        Step::Run {
            ids,
            script: packages::install_script(manager, &installs, update),
        }
    }
}
