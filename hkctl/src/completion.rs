//! Shell completion that asks the server: kinds (`svc`, `services`…) and, after
//! `KIND/`, the names of that kind's objects, as `kubectl` completes them. Enabled with
//! `source <(COMPLETE=bash hkctl)` (zsh, fish and elvish too); `hkctl completion SHELL`
//! still prints a static script without server names.
//!
//! A completion that cannot reach the server offers the kinds only, within a second: a
//! slow or absent server must never hang the shell.

use std::ffi::OsStr;
use std::time::Duration;

use clap_complete::engine::CompletionCandidate;
use hostkit_api::kinds::{KINDS, find_kind};
use serde_json::Value;

use crate::client::{Client, ListOptions};
use crate::config::{Overrides, resolve};

/// Every spelling of every kind.
fn kinds(prefix: &str) -> Vec<CompletionCandidate> {
    let mut out = Vec::new();
    for k in KINDS {
        for s in [k.singular, k.plural]
            .into_iter()
            .chain(k.short_names.iter().copied())
        {
            if s.starts_with(prefix) {
                out.push(CompletionCandidate::new(s).help(Some(k.kind.into())));
            }
        }
    }
    out
}

/// The names of `kind`'s objects on the server (the config's current context), or none.
fn names(kind: &str) -> Vec<String> {
    let Some(info) = find_kind(kind) else {
        return Vec::new();
    };
    let Ok(config) = resolve(&Overrides {
        context: std::env::var("HKCTL_CONTEXT").ok(),
        ..Default::default()
    }) else {
        return Vec::new();
    };
    let Ok(client) = Client::new(&config) else {
        return Vec::new();
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        match tokio::time::timeout(
            Duration::from_secs(1),
            client.list(info, &ListOptions::default()),
        )
        .await
        {
            Ok(Ok((items, _))) => items
                .iter()
                .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        }
    })
}

/// `KIND` or `KIND/NAME` being typed.
pub fn objects(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(text) = current.to_str() else {
        return Vec::new();
    };
    match text.split_once('/') {
        Some((kind, prefix)) => names(kind)
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .map(|n| CompletionCandidate::new(format!("{kind}/{n}")))
            .collect(),
        None => kinds(text),
    }
}

/// A NAME after a bare KIND (`hkctl get svc <TAB>`): the kind is the word typed after the
/// verb. clap hands a completer only the word being completed, so the words come from the
/// completion call itself (`hkctl -- hkctl get svc ex`).
pub fn names_of_typed_kind(current: &OsStr) -> Vec<CompletionCandidate> {
    let words: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    names_after(&words, current.to_str().unwrap_or(""))
}

fn names_after(words: &[String], prefix: &str) -> Vec<CompletionCandidate> {
    // words: the program, the verb, then the kind (flags skipped).
    let kind = words
        .iter()
        .skip(2)
        .find(|w| !w.starts_with('-'))
        .filter(|k| !k.contains('/') && !k.contains(','));
    let Some(kind) = kind else {
        return Vec::new();
    };
    names(kind)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(CompletionCandidate::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_complete_by_every_spelling() {
        let got: Vec<String> = objects(OsStr::new("serv"))
            .iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["service", "services"]);
        let got: Vec<String> = objects(OsStr::new("sv"))
            .iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["svc"]);
    }
}
