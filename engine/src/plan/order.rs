//! The execution order of a resource set: a topological sort that checks the graph.

use std::collections::{BTreeMap, BTreeSet};

use crate::resource::{Resource, Spec};
use crate::{Error, Result};

/// Orders resources so that every dependency comes first; rejects duplicate ids,
/// dependencies on undeclared ids, and cycles.
pub fn order(resources: &[Resource]) -> Result<Vec<usize>> {
    let mut index = BTreeMap::new();
    for (i, r) in resources.iter().enumerate() {
        if index.insert(r.id.as_str(), i).is_some() {
            return Err(Error::Graph(format!(
                "{} is declared twice (by {} and {})",
                r.id,
                resources[index[r.id.as_str()]].owner,
                r.owner
            )));
        }
    }
    for r in resources {
        for d in &r.depends_on {
            if !index.contains_key(d.id.as_str()) {
                return Err(Error::Graph(format!(
                    "{} depends on {} ({:?}), which is not declared",
                    r.id, d.id, d.edge
                )));
            }
        }
    }
    // Kahn's algorithm, taking ready resources in declaration order for stable plans.
    let mut indegree: Vec<usize> = resources.iter().map(|r| r.depends_on.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); resources.len()];
    for (i, r) in resources.iter().enumerate() {
        for d in &r.depends_on {
            dependents[index[d.id.as_str()]].push(i);
        }
    }
    // Among ready resources, units go last: all unit files are then written before the
    // first unit starts, so one daemon-reload serves them all.
    let rank = |i: usize| (matches!(resources[i].spec, Spec::Unit { .. }) as u8, i);
    let mut ready: BTreeSet<(u8, usize)> = (0..resources.len())
        .filter(|&i| indegree[i] == 0)
        .map(rank)
        .collect();
    let mut out = Vec::with_capacity(resources.len());
    while let Some((_, i)) = ready.pop_first() {
        out.push(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(rank(j));
            }
        }
    }
    if out.len() != resources.len() {
        let stuck: Vec<&str> = (0..resources.len())
            .filter(|i| indegree[*i] > 0)
            .map(|i| resources[i].id.as_str())
            .collect();
        return Err(Error::Graph(format!(
            "dependency cycle among: {}",
            stuck.join(", ")
        )));
    }
    Ok(out)
}
