//! Which addresses a sandboxed daemon or job may exchange packets with: `loopback`, `any`,
//! or allow/deny lists of addresses and CIDRs, rendered as systemd's IP firewalling.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NetworkAccess {
    /// Only 127.0.0.1/::1 (IPAddressDeny=any, IPAddressAllow=localhost).
    Loopback,
    /// No network restriction beyond the profile.
    Any,
}

/// Which addresses a sandboxed process may exchange packets with (systemd's
/// `IPAddressAllow=`/`IPAddressDeny=`: allow wins over deny).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Network {
    Access(NetworkAccess),
    Policy(NetworkPolicy),
}

/// `allow` and `deny` lists: each entry `any`, `loopback` (or `localhost`), `link-local`,
/// `multicast`, an IP address, or a CIDR (`10.44.0.0/24`, `fd00::/8`). With `allow` and no
/// `deny`, everything else is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<AddressList>,
}

/// `any`, or a list of addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AddressList {
    One(String),
    Many(Vec<String>),
}

impl AddressList {
    pub fn entries(&self) -> Vec<&str> {
        match self {
            AddressList::One(s) => vec![s.as_str()],
            AddressList::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl NetworkPolicy {
    /// The `deny` entries, `any` when only `allow` is given.
    pub fn deny_entries(&self) -> Vec<&str> {
        match &self.deny {
            Some(d) => d.entries(),
            None if !self.allow.is_empty() => vec!["any"],
            None => Vec::new(),
        }
    }
}

/// One `IPAddressAllow=`/`IPAddressDeny=` entry in systemd's spelling (`loopback` is
/// systemd's `localhost`), or why it is not one. Addresses are parsed, never passed on as
/// text: a unit file line holds nothing else.
pub fn address_entry(entry: &str) -> Result<String, String> {
    match entry {
        "any" | "localhost" | "link-local" | "multicast" => return Ok(entry.to_string()),
        "loopback" => return Ok("localhost".to_string()),
        _ => {}
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (entry, None),
    };
    let bad = || {
        format!(
            "{entry:?} is not an address entry: any, loopback, link-local, multicast, an IP address or a CIDR such as 10.44.0.0/24"
        )
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix {
        None => Ok(ip.to_string()),
        Some(p) => {
            let n: u8 = p.parse().map_err(|_| bad())?;
            if n > max || p.starts_with('+') || (p.len() > 1 && p.starts_with('0')) {
                return Err(format!("{entry:?}: the prefix length must be 0 to {max}"));
            }
            Ok(format!("{ip}/{n}"))
        }
    }
}
