//! Caddyfile site blocks: one file per site, imported by the host's main Caddyfile.

use hostkit_api::kinds::CaddySite;

/// Renders one site; `upstream` is the resolved reverse-proxy target (a named listener's
/// `host:port` or `to:`).
/// Refuses a word that would change the Caddyfile's structure (whitespace, braces, quotes,
/// a comment, a control character): defence in depth behind validation.
fn word<'a>(what: &str, text: &'a str) -> Result<&'a str, String> {
    let bad = text.is_empty()
        || text.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '"' | '`' | '#')
        });
    if bad {
        Err(format!("{what} {text:?} is not one Caddyfile word"))
    } else {
        Ok(text)
    }
}

pub fn site(site: &CaddySite, upstream: Option<&str>) -> Result<String, String> {
    let _ = word("site address", &site.host)?;
    for e in &site.encode {
        word("encoding", e)?;
    }
    if let Some(root) = &site.root {
        word("root", root)?;
    }
    if let Some(up) = upstream {
        word("upstream", up)?;
    }
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
    Ok(out)
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
            site(&s, Some("127.0.0.1:4000")).unwrap(),
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
            site(&s, None).unwrap(),
            "# Managed by HostKit. Local edits are reported as drift.\ndocs.example.com {\n\troot * /srv/docs\n\tfile_server\n}\n"
        );
    }

    #[test]
    fn a_word_that_would_open_or_close_a_block_is_refused() {
        let mut s = CaddySite {
            name: "api".into(),
            host: "api.example.com".into(),
            encode: vec![],
            reverse_proxy: None,
            root: None,
            file_server: true,
            monitors: vec![],
        };
        for bad in [
            "127.0.0.1:4000 }",
            "127.0.0.1:4000\nimport /etc/x",
            "a#b",
            "",
        ] {
            assert!(site(&s, Some(bad)).is_err(), "{bad:?}");
        }
        s.host = "api.example.com {".into();
        assert!(site(&s, None).unwrap_err().contains("site address"));
    }
}
