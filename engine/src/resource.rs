//! The resources a service expands into. Each has an id `kind:name` (for example
//! `file:/etc/toys/exograph/runtime.env`) that is stable across generations, so plans,
//! drift and down plans can talk about "the same thing" over time.

use std::collections::BTreeMap;

use hostkit_api::values::SecretRef;
use serde::{Deserialize, Serialize};

/// One thing on a host that HostKit manages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub id: String,
    pub spec: Spec,
    /// Which service (or `host/NAME`) declared it: shown in plans and errors.
    pub owner: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// `rollback: keep` on a file: a down plan leaves it where an apply created it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_on_rollback: bool,
}

/// An ordering edge, labelled with why it exists (shown by `hostkit plan -o json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub id: String,
    pub edge: Edge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    ParentDirectory,
    OwnerAccount,
    UnitFile,
    EnvFile,
    ExecPath,
    TimerService,
    Phase,
    Package,
    DependsOn,
    /// The daemon runs the code a `current` link points at (restarted when it switches);
    /// the link points at a release (made first).
    Source,
}

/// What a resource is. File-like kinds (`File`) carry their content; the rest carry the
/// properties that are compared with the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Spec {
    #[serde(rename_all = "camelCase")]
    Account {
        name: String,
        system: bool,
        home: String,
        shell: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    Directory {
        path: String,
        owner: String,
        group: String,
        mode: u32,
        /// Removed by a down plan when the apply created it (`rollback: deleteIfCreated`).
        delete_if_created: bool,
    },
    #[serde(rename_all = "camelCase")]
    File {
        path: String,
        content: Content,
        owner: String,
        group: String,
        mode: u32,
        role: FileRole,
    },
    #[serde(rename_all = "camelCase")]
    Symlink {
        path: String,
        to: String,
    },
    /// `name` is semantic (mapped per package manager) unless `system` (`as:`) names the
    /// distribution's package; `version` is a glob the installed version must match.
    #[serde(rename_all = "camelCase")]
    Package {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        update: bool,
    },
    Command(CommandSpec),
    /// A systemd unit's state: enabled and (for services and timers) started; restarted
    /// when a file it depends on changes.
    #[serde(rename_all = "camelCase")]
    Unit {
        name: String,
        start: bool,
        /// The `[Install] WantedBy=` targets: enabling links the unit into their
        /// `.wants/` folders, as `systemctl enable` does.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        wanted_by: Vec<String>,
    },
    /// A release of `spec.source`, fetched and built on the host (see `crate::release`).
    Release(crate::release::ReleaseSpec),
    /// The loaded nftables table, compared by the digest of `nft list table`.
    #[serde(rename_all = "camelCase")]
    Firewall {
        table: String,
        file: String,
    },
}

/// What a file is for: decides restarts, reloads and how its diff is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    Plain,
    Env,
    Config,
    Unit,
    Caddy,
    Firewall,
}

/// File content that may hold secret placeholders. Only references are stored here;
/// [`crate::secrets::Secrets`] turns it into bytes at plan time, in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// The text, with each secret as [`Content::placeholder`]; base64 for binary files.
    pub text: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSlot>,
}

/// Where a secret goes and how its value is escaped there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSlot {
    pub reference: SecretRef,
    pub escape: Escape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Escape {
    /// A double-quoted dotenv value.
    Dotenv,
    /// A JSON string literal (also valid TOML basic string and YAML).
    Json,
    /// As is.
    Raw,
}

impl Content {
    pub fn text(text: impl Into<String>) -> Content {
        Content {
            text: text.into(),
            base64: false,
            secrets: BTreeMap::new(),
        }
    }

    /// The marker a secret's value replaces.
    pub fn placeholder(key: &str) -> String {
        format!("@@hostkit-secret:{key}@@")
    }
}

/// A command run on the host, with its run conditions and its undo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandSpec {
    pub name: String,
    pub exec: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Env files (paths) sourced before running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<String>,
    /// Files whose content hash is part of the run stamp.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Skip when this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Skip when this shell test succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
    /// The run stamp: a hash of argv, environment and input paths. A command without
    /// `creates`/`unless` runs again only when this changes.
    pub stamp: String,
    pub stamp_path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_codes: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    pub down: Down,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Down {
    Exec(Vec<String>),
    Noop,
    Irreversible,
}

impl Resource {
    pub fn new(id: impl Into<String>, owner: &str, spec: Spec) -> Resource {
        Resource {
            id: id.into(),
            spec,
            owner: owner.to_string(),
            depends_on: Vec::new(),
            keep_on_rollback: false,
        }
    }

    pub fn depends(&mut self, id: impl Into<String>, edge: Edge) {
        let id = id.into();
        if id != self.id && !self.depends_on.iter().any(|d| d.id == id) {
            self.depends_on.push(Dependency { id, edge });
        }
    }

    /// The resource as history keeps it, to remove it later: what and where, not a file's
    /// content (which may be large, and reach a secret through its placeholders).
    pub fn without_content(&self) -> Resource {
        let mut r = self.clone();
        if let Spec::File { content, .. } = &mut r.spec {
            *content = Content::text("");
        }
        r
    }

    /// The path of path-like resources.
    pub fn path(&self) -> Option<&str> {
        match &self.spec {
            Spec::Directory { path, .. } | Spec::File { path, .. } | Spec::Symlink { path, .. } => {
                Some(path)
            }
            _ => None,
        }
    }

    /// The id a path-like resource of this kind gets.
    pub fn file_id(path: &str) -> String {
        format!("file:{path}")
    }
    pub fn directory_id(path: &str) -> String {
        format!("directory:{path}")
    }
}
