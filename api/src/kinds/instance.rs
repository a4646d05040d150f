//! `Instance`: a lifecycle-managed machine (an nspawn container today) and the Host
//! object that reaches it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::host::Ssh;
use super::host::ssh;
use super::{KindInfo, KindSpec};
use crate::meta::Condition;
use crate::meta::check_label_key;
use crate::validate::Validator;
use crate::validate::unique;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub backend: Backend,
    /// A registered image name, e.g. `debian-bookworm`.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Ports forwarded from the controller's machine into the instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<Expose>,
    /// The Host object the instance creates and owns.
    #[serde(default)]
    pub host: InstanceHost,
}

/// Which backend runs the machine, and its own options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// `nspawn` (systemd-nspawn) or `incus`.
    pub name: String,
    /// Backend-specific settings, passed through unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Lifecycle {
    /// Destroyed when the object is deleted.
    Ephemeral,
    /// Kept when the object is deleted.
    Persistent,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expose {
    pub name: String,
    /// Port on the controller's machine.
    pub host: u16,
    /// Port inside the instance.
    pub guest: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceHost {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `Pending`, `Running`, `Stopped`, `Destroying`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
}

pub const INSTANCE_INFO: KindInfo = KindInfo {
    kind: "Instance",
    plural: "instances",
    singular: "instance",
    short_names: &["inst"],
};

impl KindSpec for InstanceSpec {
    type Status = InstanceStatus;
    const INFO: &'static KindInfo = &INSTANCE_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        instance(self, v);
    }

    fn apply_defaults(&mut self) {
        self.lifecycle.get_or_insert(Lifecycle::Ephemeral);
    }
}

fn instance(spec: &InstanceSpec, v: &mut Validator) {
    if !matches!(spec.backend.name.as_str(), "nspawn" | "incus") {
        v.err(
            "backend.name",
            format!(
                "{:?} is not a backend; valid: nspawn, incus",
                spec.backend.name
            ),
        );
    }
    if spec.image.is_empty() {
        v.err(
            "image",
            "is required: a registered image name such as debian-bookworm",
        );
    }
    unique("expose", spec.expose.iter().map(|e| e.name.as_str()), v);
    for (i, e) in spec.expose.iter().enumerate() {
        v.index("expose", i, |v| {
            if e.host == 0 {
                v.err("host", "must be 1-65535");
            }
            if e.guest == 0 {
                v.err("guest", "must be 1-65535");
            }
        });
    }
    v.scope("host", |v| {
        for key in spec.host.labels.keys() {
            v.check(format!("labels.{key}"), check_label_key(key));
        }
        v.scope("ssh", |v| ssh(&spec.host.ssh, v));
    });
}
