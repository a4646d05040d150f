//! Packages a Service or a Host's bootstrap installs: a semantic name, or details that
//! choose the distribution's own name, a version and an index refresh.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A package by semantic name (`ca-certificates`) or with details.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Package {
    Name(String),
    Detailed(PackageDetails),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageDetails {
    pub name: String,
    /// The distribution's own package name, skipping the semantic mapping (one distribution
    /// calls it something else, or the table does not know it).
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
    /// The version to install: exact (`2.6.3-1`) or a glob (`2.6.*`); the newest the host's
    /// package index offers that matches. It matches the whole version or the version
    /// without its epoch and distribution revision (`1:2.6.3-1` matches `2.6.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Refresh the package index before installing (apt-get update, dnf --refresh,
    /// apk --update-cache, pacman -Sy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub update: bool,
}

impl Package {
    /// The semantic name (the resource's id).
    pub fn name(&self) -> &str {
        match self {
            Package::Name(n) => n,
            Package::Detailed(d) => &d.name,
        }
    }

    /// Names the package managers accept and a version glob they can match, never shell
    /// text: every string lands in an install script.
    pub(crate) fn check(&self) -> Result<(), String> {
        check_name(self.name(), "name")?;
        let Package::Detailed(d) = self else {
            return Ok(());
        };
        if let Some(real) = &d.as_ {
            check_name(real, "as")?;
        }
        if let Some(v) = &d.version {
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '.' | '+' | '~' | ':' | '-' | '_' | '*' | '?')
                });
            if !ok {
                return Err(format!(
                    "version {v:?} is not a version or a glob (1 to 64 of letters, digits, '.', '+', '~', ':', '-', '_', and '*' or '?' as wildcards)"
                ));
            }
        }
        Ok(())
    }
}

fn check_name(name: &str, field: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} {name:?} is not a package name (letters, digits, '-', '_', '.', '+'; not starting with '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detailed(yaml: &str) -> Package {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn details_carry_the_distribution_name_a_version_glob_and_a_refresh() {
        let p = detailed("{name: demo, as: hk-demo, version: '2.6.*', update: true}");
        assert_eq!(p.check(), Ok(()));
        let Package::Detailed(d) = &p else {
            panic!("details parse as details: {p:?}")
        };
        assert_eq!(d.as_.as_deref(), Some("hk-demo"));
        assert_eq!(d.version.as_deref(), Some("2.6.*"));
        assert!(d.update);
        assert_eq!(detailed("tree"), Package::Name("tree".into()));
    }

    #[test]
    fn names_and_versions_that_are_not_plain_words_are_refused_naming_the_field() {
        let e = detailed("{name: demo, as: 'hk demo'}").check().unwrap_err();
        assert!(e.starts_with("as \"hk demo\" is not a package name"), "{e}");
        let e = detailed("{name: '-oDebug=1'}").check().unwrap_err();
        assert!(
            e.starts_with("name \"-oDebug=1\" is not a package name"),
            "{e}"
        );
        for bad in ["$(reboot)", "1.0 2.0", "", "1.0;x", "[12].0"] {
            let yaml = format!("{{name: demo, version: {bad:?}}}");
            let e = detailed(&yaml).check().unwrap_err();
            assert!(e.contains("is not a version or a glob"), "{bad}: {e}");
        }
        assert_eq!(
            detailed("{name: demo, version: '1:2.6.3-1+deb12u1~bpo'}").check(),
            Ok(())
        );
    }
}
