//! nftables rulesets: one `inet` table with an input chain, allow/deny rules in the order
//! given, and a default policy. The file replaces the table atomically when loaded with
//! `nft -f` (declare, delete, define in one transaction).

use std::net::IpAddr;

use hostkit_api::kinds::{Firewall, FirewallAction, FirewallRule, TrafficMatch};

/// The table HostKit owns; nothing else on the host is touched.
pub const TABLE: &str = "hostkit";

/// Renders `firewall` for `object` (used in error messages), or says which rule is wrong.
pub fn ruleset(object: &str, firewall: &Firewall) -> Result<String, String> {
    let policy = match firewall.default.unwrap_or(FirewallAction::Deny) {
        FirewallAction::Deny => "drop",
        FirewallAction::Allow => "accept",
    };
    let mut rules = Vec::new();
    for (i, rule) in firewall.rules.iter().enumerate() {
        rules.extend(render_rule(rule).map_err(|e| format!("{object} firewall.rules[{i}]: {e}"))?);
    }
    let mut out = String::new();
    out.push_str("#!/usr/sbin/nft -f\n# Managed by HostKit. Local edits are reported as drift.\n");
    out.push_str(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"));
    out.push_str(&format!("table inet {TABLE} {{\n\tchain input {{\n"));
    out.push_str(&format!(
        "\t\ttype filter hook input priority filter; policy {policy};\n"
    ));
    out.push_str("\t\tct state established,related accept\n");
    out.push_str("\t\tct state invalid drop\n");
    out.push_str("\t\tiif \"lo\" accept\n");
    for r in rules {
        out.push_str("\t\t");
        out.push_str(&r);
        out.push('\n');
    }
    out.push_str("\t}\n}\n");
    Ok(out)
}

/// A source address or network, checked: `any`, an IPv4/IPv6 address, or a CIDR.
#[derive(Debug, PartialEq)]
enum Source {
    Any,
    V4(String),
    V6(String),
}

fn parse_source(s: &str) -> Result<Source, String> {
    let s = s.trim();
    if s == "any" {
        return Ok(Source::Any);
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!(
            "{s:?} is not a source: use any, an IPv4 or IPv6 address, or a CIDR like 10.0.0.0/24"
        )
    })?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(format!("{s:?}: prefix length must be 0-{max}")),
        }
    }
    Ok(if ip.is_ipv4() {
        Source::V4(s.to_string())
    } else {
        Source::V6(s.to_string())
    })
}

fn set(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn render_rule(rule: &FirewallRule) -> Result<Vec<String>, String> {
    let (traffic, verdict): (&TrafficMatch, &str) = match (&rule.allow, &rule.deny) {
        (Some(t), None) => (t, "accept"),
        (None, Some(t)) => (t, "drop"),
        _ => return Err("a rule has exactly one of allow or deny".to_string()),
    };
    let sources = match &rule.from {
        None => vec![Source::Any],
        Some(from) => from
            .list()
            .into_iter()
            .map(parse_source)
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut prefixes = Vec::new();
    if sources.contains(&Source::Any) {
        prefixes.push(String::new());
    } else {
        let v4: Vec<String> = sources
            .iter()
            .filter_map(|s| match s {
                Source::V4(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        let v6: Vec<String> = sources
            .iter()
            .filter_map(|s| match s {
                Source::V6(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        if !v4.is_empty() {
            prefixes.push(format!("ip saddr {} ", set(&v4)));
        }
        if !v6.is_empty() {
            prefixes.push(format!("ip6 saddr {} ", set(&v6)));
        }
    }
    let ports = |list: &[hostkit_api::values::PortSpec]| -> Result<String, String> {
        let mut items = Vec::new();
        for p in list {
            let (a, b) = p.bounds()?;
            items.push(if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            });
        }
        Ok(set(&items))
    };
    let mut matches = Vec::new();
    if !traffic.tcp.is_empty() {
        matches.push(format!("tcp dport {}", ports(&traffic.tcp)?));
    }
    if !traffic.udp.is_empty() {
        matches.push(format!("udp dport {}", ports(&traffic.udp)?));
    }
    if traffic.icmp {
        matches.push("meta l4proto { icmp, ipv6-icmp }".to_string());
    }
    if traffic.all {
        matches.push(String::new());
    }
    if matches.is_empty() {
        return Err("the rule matches nothing: give tcp, udp, icmp or all".to_string());
    }
    let mut out = Vec::new();
    for p in &prefixes {
        for m in &matches {
            let line = format!("{p}{m} {verdict}");
            out.push(line.trim().replace("  ", " "));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostkit_api::kinds::Sources;
    use hostkit_api::values::PortSpec;

    pub(crate) fn example() -> Firewall {
        Firewall {
            rules: vec![
                FirewallRule {
                    allow: Some(TrafficMatch {
                        tcp: vec![PortSpec::Port(22)],
                        ..Default::default()
                    }),
                    from: Some(Sources::One("any".into())),
                    ..Default::default()
                },
                FirewallRule {
                    allow: Some(TrafficMatch {
                        tcp: vec![PortSpec::Port(80), PortSpec::Port(443)],
                        udp: vec![PortSpec::Range("60000-61000".into())],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                FirewallRule {
                    allow: Some(TrafficMatch {
                        tcp: vec![PortSpec::Port(9100)],
                        icmp: true,
                        ..Default::default()
                    }),
                    from: Some(Sources::Many(vec![
                        "10.44.0.0/24".into(),
                        "192.0.2.7".into(),
                        "2001:db8::/32".into(),
                    ])),
                    ..Default::default()
                },
                FirewallRule {
                    deny: Some(TrafficMatch {
                        all: true,
                        ..Default::default()
                    }),
                    from: Some(Sources::One("198.51.100.0/24".into())),
                    ..Default::default()
                },
            ],
            default: Some(FirewallAction::Deny),
            path: None,
        }
    }

    #[test]
    fn snapshot() {
        let text = ruleset("Host/edge", &example()).unwrap();
        let expected = "#!/usr/sbin/nft -f
# Managed by HostKit. Local edits are reported as drift.
table inet hostkit
delete table inet hostkit
table inet hostkit {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tct state invalid drop
\t\tiif \"lo\" accept
\t\ttcp dport 22 accept
\t\ttcp dport { 80, 443 } accept
\t\tudp dport 60000-61000 accept
\t\tip saddr { 10.44.0.0/24, 192.0.2.7 } tcp dport 9100 accept
\t\tip saddr { 10.44.0.0/24, 192.0.2.7 } meta l4proto { icmp, ipv6-icmp } accept
\t\tip6 saddr 2001:db8::/32 tcp dport 9100 accept
\t\tip6 saddr 2001:db8::/32 meta l4proto { icmp, ipv6-icmp } accept
\t\tip saddr 198.51.100.0/24 drop
\t}
}
";
        assert_eq!(text, expected);
    }

    #[test]
    fn bad_rules_name_the_rule_and_what_is_valid() {
        let mut fw = example();
        fw.rules[2].from = Some(Sources::One("10.0.0.300/24".into()));
        let e = ruleset("Host/edge", &fw).unwrap_err();
        assert!(e.contains("firewall.rules[2]") && e.contains("CIDR"), "{e}");
        fw.rules[2].from = Some(Sources::One("10.0.0.0/40".into()));
        assert!(
            ruleset("Host/edge", &fw)
                .unwrap_err()
                .contains("prefix length")
        );
        fw.rules[2].from = None;
        fw.rules[2].allow = Some(TrafficMatch::default());
        assert!(
            ruleset("Host/edge", &fw)
                .unwrap_err()
                .contains("matches nothing")
        );
    }
}
