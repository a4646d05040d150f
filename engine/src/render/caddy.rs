//! Caddyfile site blocks: one file per site, imported by the host's main Caddyfile.

use hostkit_api::kinds::CaddySite;

/// Renders one site; `upstream` is the resolved reverse-proxy target (a named listener's
/// `host:port` or `to:`).
pub fn site(site: &CaddySite, upstream: Option<&str>) -> String {
    let mut out = String::from("# Managed by HostKit. Local edits are reported as drift.\n");
    out.push_str(&format!("{} {{\n", site.host));
    if !site.encode.is_empty() {
        out.push_str(&format!("\tencode {}\n", site.encode.join(" ")));
    }
    if let Some(root) = &site.root {
        out.push_str(&format!("\troot * {root}\n"));
    }
    if let Some(up) = upstream {
        out.push_str(&format!("\treverse_proxy {up}\n"));
    }
    if site.file_server {
        out.push_str("\tfile_server\n");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot() {
        let s = CaddySite {
            name: "api".into(),
            host: "api.example.com".into(),
            encode: vec!["zstd".into(), "gzip".into()],
            ..Default::default()
        };
        assert_eq!(
            site(&s, Some("127.0.0.1:4000")),
            "# Managed by HostKit. Local edits are reported as drift.\napi.example.com {\n\tencode zstd gzip\n\treverse_proxy 127.0.0.1:4000\n}\n"
        );
        let s = CaddySite {
            name: "docs".into(),
            host: "docs.example.com".into(),
            root: Some("/srv/docs".into()),
            file_server: true,
            ..Default::default()
        };
        assert_eq!(
            site(&s, None),
            "# Managed by HostKit. Local edits are reported as drift.\ndocs.example.com {\n\troot * /srv/docs\n\tfile_server\n}\n"
        );
    }
}
