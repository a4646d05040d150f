//! `Event`: something a controller saw or did to an object, shown by `hkctl describe`
//! and `hkctl events`. Events expire (they are stored with a lease), so they never grow
//! the store without bound.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindInfo, KindSpec};
use crate::meta::{ObjectRef, Time};
use crate::validate::{self, Validator};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    #[default]
    Normal,
    Warning,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSpec {
    /// The object the event is about.
    pub involved_object: ObjectRef,
    #[serde(rename = "type")]
    pub type_: EventType,
    /// CamelCase, e.g. `Applied`, `DriftDetected`.
    pub reason: String,
    pub message: String,
    /// The component that reported it, e.g. `service-controller`.
    #[serde(default)]
    pub source: String,
    /// How many times the same event was seen.
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<Time>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventStatus {}

pub const EVENT_INFO: KindInfo = KindInfo {
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
};

impl KindSpec for EventSpec {
    const FREE_TEXT: &'static [&'static str] = &["message"];

    type Status = EventStatus;
    const INFO: &'static KindInfo = &EVENT_INFO;

    fn validate(&self, _name: &str, v: &mut Validator) {
        super::check_object_ref("involvedObject", &self.involved_object, v);
        validate::camel_case("reason", &self.reason, v);
    }
}
