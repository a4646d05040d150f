//! The resource kinds of `hostkit.dev/v1alpha1` and the machinery shared by all of them.
//!
//! Every kind is an [`Object`] of its spec type: `Object<ServiceSpec>` is a Service. A spec
//! type knows its [`KindInfo`] (names, short names), its status type, how to validate itself
//! and how to fill in defaults. [`AnyObject`] is the closed set of kinds, used wherever a
//! manifest's kind is only known at run time (parsing, the API server, hkctl).

mod event;
mod gitsource;
mod host;
mod instance;
mod observability;
mod operations;
mod project;
mod service;

pub use event::*;
pub use gitsource::*;
pub use host::*;
pub use instance::*;
pub use observability::{MetricsIntent, Observability, OtelCollector};
pub use operations::*;
pub use project::*;
pub use service::*;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::meta::{ObjectMeta, ObjectRef, check_dns_label, check_dns_subdomain, check_label_key};
use crate::validate::Validator;

/// The one API group and version HostKit serves.
pub const API_VERSION: &str = "hostkit.dev/v1alpha1";
/// Group part of [`API_VERSION`], used in REST paths.
pub const API_GROUP: &str = "hostkit.dev";
/// Version part of [`API_VERSION`].
pub const API_GROUP_VERSION: &str = "v1alpha1";

/// Names under which a kind is known: in manifests, REST paths, store keys and hkctl.
#[derive(Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
}

impl KindInfo {
    /// True when `name` names this kind in any of its forms (case-insensitive).
    pub fn is_named(&self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        n == self.kind.to_ascii_lowercase()
            || n == self.plural
            || n == self.singular
            || self.short_names.contains(&n.as_str())
    }

    /// The store key prefix of this kind (objects are cluster-scoped).
    pub fn key_prefix(&self) -> String {
        format!("/hostkit/{}/", self.plural)
    }

    /// The store key of one object.
    pub fn key(&self, name: &str) -> String {
        format!("/hostkit/{}/{}", self.plural, name)
    }
}

/// What a spec type must provide to be stored as a kind.
pub trait KindSpec:
    Clone + Default + PartialEq + Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static
{
    /// The status written by controllers through the status subresource.
    type Status: Clone
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + JsonSchema
        + Send
        + Sync
        + 'static;
    /// The kind's names.
    const INFO: &'static KindInfo;

    /// Adds every problem of this spec to `v`; `name` is the object's name.
    fn validate(&self, name: &str, v: &mut Validator);

    /// The spec's fields that may hold any text, line breaks included (file contents): every
    /// other string is one line, see [`crate::validate::check_strings`].
    const FREE_TEXT: &'static [&'static str] = &[];

    /// Fills in the defaults the server applies, so stored objects show them explicitly.
    fn apply_defaults(&mut self) {}
}

/// A stored object of one kind: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(bound(serialize = "", deserialize = ""))]
pub struct Object<S: KindSpec> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<S::Status>,
}

impl<S: KindSpec> Object<S> {
    /// A new object with this name and spec, as a user would write it.
    pub fn new(name: impl Into<String>, spec: S) -> Self {
        Object {
            api_version: API_VERSION.to_string(),
            kind: S::INFO.kind.to_string(),
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// True when `other` differs from this object in nothing but `status` and the
    /// server's bookkeeping (`resourceVersion`): a controller's own status write, which
    /// must not wake it again.
    pub fn differs_only_in_status(&self, other: &Object<S>) -> bool {
        let meta = |m: &ObjectMeta| ObjectMeta {
            resource_version: None,
            ..m.clone()
        };
        self.spec == other.spec
            && self.api_version == other.api_version
            && self.kind == other.kind
            && meta(&self.metadata) == meta(&other.metadata)
    }

    /// The status, created empty when missing, for controllers to fill in.
    pub fn status_mut(&mut self) -> &mut S::Status {
        self.status.get_or_insert_with(Default::default)
    }
}

pub type Project = Object<ProjectSpec>;
pub type Host = Object<HostSpec>;
pub type Service = Object<ServiceSpec>;
pub type Instance = Object<InstanceSpec>;
pub type PolicyWindow = Object<PolicyWindowSpec>;
pub type Rollback = Object<RollbackSpec>;
pub type Revision = Object<RevisionSpec>;
pub type GitSource = Object<GitSourceSpec>;
pub type Event = Object<EventSpec>;

/// Calls `$m!(Variant, SpecType)` once per kind, so dispatch code is written once.
#[macro_export]
#[doc(hidden)]
macro_rules! for_each_kind {
    ($m:ident) => {
        $m! {
            Project => $crate::kinds::ProjectSpec,
            Host => $crate::kinds::HostSpec,
            Service => $crate::kinds::ServiceSpec,
            Instance => $crate::kinds::InstanceSpec,
            PolicyWindow => $crate::kinds::PolicyWindowSpec,
            Rollback => $crate::kinds::RollbackSpec,
            Revision => $crate::kinds::RevisionSpec,
            GitSource => $crate::kinds::GitSourceSpec,
            Event => $crate::kinds::EventSpec,
        }
    };
}

macro_rules! define_any_object {
    ($($variant:ident => $spec:ty,)*) => {
        /// Every kind HostKit knows, in manifest order of importance.
        pub const KINDS: &[&KindInfo] = &[$(<$spec as KindSpec>::INFO,)*];

        /// An object whose kind is known only at run time.
        #[derive(Clone, Debug, PartialEq)]
        pub enum AnyObject {
            $($variant(Box<Object<$spec>>),)*
        }

        impl AnyObject {
            pub fn info(&self) -> &'static KindInfo {
                match self { $(AnyObject::$variant(_) => <$spec as KindSpec>::INFO,)* }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self { $(AnyObject::$variant(o) => &o.metadata,)* }
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self { $(AnyObject::$variant(o) => &mut o.metadata,)* }
            }

            /// Decodes a JSON object whose `kind` selects the type; errors carry the field path.
            pub fn from_value(value: serde_json::Value) -> Result<AnyObject, crate::FieldError> {
                let kind = check_type_meta(&value)?;
                match kind {
                    $(k if k == <$spec as KindSpec>::INFO.kind => {
                        shape::<$spec>(&value)?;
                        crate::decode::decode_typed::<Object<$spec>>(value).map(|o| AnyObject::$variant(Box::new(o)))
                    })*
                    other => Err(crate::FieldError::new("kind", format!("unknown kind {other:?}"))),
                }
            }

            pub fn to_value(&self) -> serde_json::Value {
                match self {
                    $(AnyObject::$variant(o) => serde_json::to_value(o),)*
                }
                .expect("typed objects always serialise to JSON")
            }

            /// Checks names, values and references; every problem is returned, not just the first.
            pub fn validate(&self) -> Vec<crate::FieldError> {
                let mut v = Validator::default();
                check_meta(self.info(), self.meta(), &mut v);
                match self {
                    $(AnyObject::$variant(o) => {
                        v.scope("spec", |v| {
                            let json = serde_json::to_value(&o.spec).expect("specs serialise");
                            crate::validate::check_strings(&json, <$spec as KindSpec>::FREE_TEXT, v);
                            o.spec.validate(&o.metadata.name, v)
                        });
                    })*
                }
                v.into_errors()
            }

            pub fn apply_defaults(&mut self) {
                match self { $(AnyObject::$variant(o) => o.spec.apply_defaults(),)* }
            }

            /// True when both are the same kind with equal specs (metadata and status aside).
            pub fn spec_eq(&self, other: &AnyObject) -> bool {
                match (self, other) {
                    $((AnyObject::$variant(a), AnyObject::$variant(b)) => a.spec == b.spec,)*
                    _ => false,
                }
            }
        }
    };
}

for_each_kind!(define_any_object);

/// Lists and mappings where the kind `S` has them (serde alone would build a mapping from
/// a list).
fn shape<S: KindSpec>(value: &serde_json::Value) -> Result<(), FieldError> {
    use crate::decode::check_shape;
    check_shape::<ObjectMeta>(&value["metadata"], "metadata")?;
    check_shape::<S>(&value["spec"], "spec")?;
    check_shape::<S::Status>(&value["status"], "status")
}

/// Finds a kind by any of its names: `Service`, `services`, `service`, `svc`.
pub fn find_kind(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().copied().find(|k| k.is_named(name))
}

/// Finds a kind by its exact `kind:` spelling, as written in manifests.
pub fn kind_by_name(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().copied().find(|k| k.kind == kind)
}

/// Finds a kind by the plural used in REST paths and store keys.
pub fn kind_by_plural(plural: &str) -> Option<&'static KindInfo> {
    KINDS.iter().copied().find(|k| k.plural == plural)
}

/// Kinds whose names become user, unit and directory names on hosts use the stricter label rule.
fn uses_label_names(kind: &KindInfo) -> bool {
    matches!(kind.kind, "Service" | "Host" | "Project" | "Instance")
}

fn check_meta(kind: &KindInfo, meta: &ObjectMeta, v: &mut Validator) {
    v.scope("metadata", |v| {
        if meta.name.is_empty() {
            v.err("name", "is required");
        } else if uses_label_names(kind) {
            v.check("name", check_dns_label(&meta.name));
        } else {
            v.check("name", check_dns_subdomain(&meta.name));
        }
        for (key, value) in &meta.labels {
            v.check(format!("labels.{key}"), check_label_key(key));
            if value.len() > 63
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                v.err(
                    format!("labels.{key}"),
                    format!(
                        "{value:?} is not a valid label value: at most 63 letters, digits, '-', '_' or '.'"
                    ),
                );
            }
        }
        for key in meta.annotations.keys() {
            v.check(format!("annotations.{key}"), check_label_key(key));
        }
        use crate::validate::limits;
        if meta.labels.len() > limits::LABELS {
            v.err(
                "labels",
                format!("has {} labels; at most {} are allowed", meta.labels.len(), limits::LABELS),
            );
        }
        let bytes: usize = meta.annotations.iter().map(|(k, a)| k.len() + a.len()).sum();
        if bytes > limits::ANNOTATION_BYTES {
            v.err(
                "annotations",
                format!(
                    "hold {bytes} bytes; at most {} are allowed",
                    limits::ANNOTATION_BYTES
                ),
            );
        }
        for (i, f) in meta.finalizers.iter().enumerate() {
            if f.chars().any(|c| !crate::validate::is_line_safe(c)) || f.len() > 253 {
                v.err(format!("finalizers[{i}]"), "is not a finalizer name");
            }
        }
    });
}

pub(crate) fn check_object_ref(field: &str, r: &ObjectRef, v: &mut Validator) {
    v.scope(field, |v| {
        if find_kind(&r.kind).is_none() {
            v.err(
                "kind",
                format!("unknown kind {:?}; valid: {}", r.kind, kind_list()),
            );
        }
        v.check("name", check_dns_subdomain(&r.name));
    });
}

fn kind_list() -> String {
    KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
}

/// Checks `apiVersion` and `kind` before typed decoding, so those errors say what is valid.
pub(crate) fn check_type_meta(value: &serde_json::Value) -> Result<&str, FieldError> {
    let map = value.as_object().ok_or_else(|| {
        FieldError::new(
            "",
            "a manifest is a mapping with apiVersion, kind, metadata and spec",
        )
    })?;
    match map.get("apiVersion").and_then(|v| v.as_str()) {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(FieldError::new(
                "apiVersion",
                format!("{other:?} is not served here; use {API_VERSION}"),
            ));
        }
        None => {
            return Err(FieldError::new(
                "apiVersion",
                format!("is required: {API_VERSION}"),
            ));
        }
    }
    let kinds = || KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ");
    match map.get("kind").and_then(|v| v.as_str()) {
        Some(k) if kind_by_name(k).is_some() => Ok(k),
        Some(k) => Err(FieldError::new(
            "kind",
            format!("unknown kind {k:?}; valid kinds: {}", kinds()),
        )),
        None => Err(FieldError::new(
            "kind",
            format!("is required, one of {}", kinds()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_findable_by_each_name() {
        for k in KINDS {
            assert_eq!(find_kind(k.kind).unwrap(), *k);
            assert_eq!(find_kind(k.plural).unwrap(), *k);
            assert_eq!(find_kind(k.singular).unwrap(), *k);
            for s in k.short_names {
                assert_eq!(find_kind(s).unwrap(), *k);
            }
        }
        assert_eq!(find_kind("svc").unwrap().kind, "Service");
        assert_eq!(find_kind("gs").unwrap().kind, "GitSource");
        assert!(find_kind("pods").is_none());
    }

    #[test]
    fn short_names_are_unique() {
        let mut all: Vec<&str> = KINDS
            .iter()
            .flat_map(|k| k.short_names.iter().copied().chain([k.plural, k.singular]))
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn keys_are_cluster_scoped() {
        let k = find_kind("svc").unwrap();
        assert_eq!(k.key("exograph"), "/hostkit/services/exograph");
        assert_eq!(k.key_prefix(), "/hostkit/services/");
    }

    #[test]
    fn status_writes_alone_do_not_count_as_changes() {
        let a: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Service",
            "metadata": {"name": "a", "resourceVersion": "1", "generation": 1},
            "spec": {"hosts": ["h"]}, "status": {"observedGeneration": 1}
        }))
        .unwrap();
        let mut b = a.clone();
        b.status_mut().observed_generation = Some(2);
        b.metadata.resource_version = Some("2".into());
        assert!(a.differs_only_in_status(&b));
        b.metadata.labels.insert("tier".into(), "x".into());
        assert!(!a.differs_only_in_status(&b));
    }
}
