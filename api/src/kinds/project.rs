//! `Project`: the roots and prefixes that name its Services' paths, users and units, and
//! the firewall rules they share.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::host::{Firewall, firewall};
use super::{KindInfo, KindSpec};
use crate::meta::Condition;
use crate::validate::{Validator, check_path};

/// Roots and prefixes that name a project's paths, users and units.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    #[serde(default)]
    pub roots: Roots,
    #[serde(default)]
    pub prefixes: Prefixes,
    /// A firewall applied to every host that runs one of the project's services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Firewall>,
    /// Telemetry its Services send to their hosts' collectors, unless they say otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<super::Observability>,
}

/// Root folders; a service's `storage: [{name: data}]` lives at `<data>/<service>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Roots {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
}

impl Roots {
    /// The root names `${roots.X}` and `storage[].name` may use.
    pub const NAMES: &'static [&'static str] = &[
        "source", "data", "state", "config", "cache", "logs", "run", "bin",
    ];

    /// Each root and its value, in [`Roots::NAMES`] order.
    pub fn entries(&self) -> [(&'static str, Option<&str>); 8] {
        [
            ("source", self.source.as_deref()),
            ("data", self.data.as_deref()),
            ("state", self.state.as_deref()),
            ("config", self.config.as_deref()),
            ("cache", self.cache.as_deref()),
            ("logs", self.logs.as_deref()),
            ("run", self.run.as_deref()),
            ("bin", self.bin.as_deref()),
        ]
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prefixes {
    /// Prepended to service names to make account names, e.g. `toys-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Prepended to service names to make unit names, e.g. `toys-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

pub const PROJECT_INFO: KindInfo = KindInfo {
    kind: "Project",
    plural: "projects",
    singular: "project",
    short_names: &["proj"],
};

impl KindSpec for ProjectSpec {
    type Status = ProjectStatus;
    const INFO: &'static KindInfo = &PROJECT_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        project(self, v);
    }
}

fn project(spec: &ProjectSpec, v: &mut Validator) {
    if let Some(o) = &spec.observability {
        super::observability::check_observability(o, None, v);
    }
    v.scope("roots", |v| {
        for (name, value) in spec.roots.entries() {
            if let Some(p) = value {
                if p.starts_with("${") {
                    v.err(name, format!("{p:?}: a root is a plain absolute path"));
                } else {
                    check_path(name, p, v);
                }
            }
        }
    });
    v.scope("prefixes", |v| {
        for (name, value) in [("user", &spec.prefixes.user), ("unit", &spec.prefixes.unit)] {
            if let Some(p) = value
                && !p
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                v.err(
                    name,
                    format!("{p:?} may only hold lowercase letters, digits, '-' and '_'"),
                );
            }
        }
    });
    if let Some(fw) = &spec.firewall {
        v.scope("firewall", |v| firewall(fw, v));
    }
}
