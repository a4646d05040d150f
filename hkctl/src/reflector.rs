//! A watch that outlives its connection, as kubectl's `get -w` (client-go's reflector)
//! does: it remembers each object's resourceVersion and the last resourceVersion seen,
//! reconnects with backoff when the stream ends or the server is gone, and when the server
//! says the history it needs was compacted away (410), lists again and reports only what
//! changed meanwhile. So every change is reported once, however often the connection drops.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use hostkit_api::kinds::KindInfo;
use serde_json::Value;

use crate::client::{Client, ListOptions};
use crate::{Error, Result};

/// What the watcher has reported so far.
#[derive(Debug, Default)]
pub struct Reflector {
    /// Each object's last reported resourceVersion, and the object (a DELETED found by a
    /// re-list is reported with the last version seen).
    known: BTreeMap<String, (String, Value)>,
    /// The resourceVersion to watch from.
    pub rv: String,
}

fn name_of(o: &Value) -> String {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn rv_of(o: &Value) -> String {
    o.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl Reflector {
    /// Starts from a list (its items and resourceVersion), already reported.
    pub fn new(items: &[Value], rv: String) -> Reflector {
        Reflector {
            known: items
                .iter()
                .map(|o| (name_of(o), (rv_of(o), o.clone())))
                .collect(),
            rv,
        }
    }

    /// Takes in one watch event; returns it when it is news.
    pub fn observe(&mut self, type_: &str, object: Value) -> Option<(String, Value)> {
        let rv = rv_of(&object);
        if !rv.is_empty() {
            self.rv = rv.clone();
        }
        let name = name_of(&object);
        match type_ {
            "ADDED" | "MODIFIED" => {
                if self.known.get(&name).is_some_and(|(seen, _)| *seen == rv) {
                    return None;
                }
                self.known.insert(name, (rv, object.clone()));
                Some((type_.to_string(), object))
            }
            "DELETED" => {
                self.known.remove(&name)?;
                Some(("DELETED".into(), object))
            }
            _ => None,
        }
    }

    /// Takes in a fresh list after the history was compacted away: what changed since, as
    /// the events a watch would have given (additions and changes in name order, then
    /// deletions).
    pub fn relist(&mut self, items: Vec<Value>, rv: String) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let mut present = BTreeMap::new();
        for o in items {
            let name = name_of(&o);
            let version = rv_of(&o);
            match self.known.get(&name) {
                Some((seen, _)) if *seen == version => {}
                Some(_) => out.push(("MODIFIED".to_string(), o.clone())),
                None => out.push(("ADDED".to_string(), o.clone())),
            }
            present.insert(name, (version, o));
        }
        for (name, (_, last)) in &self.known {
            if !present.contains_key(name) {
                out.push(("DELETED".to_string(), last.clone()));
            }
        }
        self.known = present;
        self.rv = rv;
        out
    }
}

/// Worth reconnecting after: the server is gone or restarting, or the stream broke.
fn transient(e: &Error) -> bool {
    match e {
        Error::Unreachable { .. } | Error::Protocol(_) => true,
        Error::Server { code, .. } => *code >= 500 || *code == 429,
        _ => false,
    }
}

fn expired(e: &Error) -> bool {
    matches!(e, Error::Server { code: 410, .. })
}

/// Watches `info` from `reflector.rv` for as long as the process runs, calling `report`
/// with each change once. Returns only on an error no retry can fix (refused credentials,
/// an unknown kind).
pub async fn run(
    c: &Client,
    info: &'static KindInfo,
    options: &ListOptions,
    reflector: &mut Reflector,
    mut report: impl FnMut(&str, &Value),
) -> Result<()> {
    const FIRST: Duration = Duration::from_millis(250);
    const MOST: Duration = Duration::from_secs(8);
    let mut backoff = FIRST;
    let mut relist = false;
    loop {
        if relist {
            match c.list(info, options).await {
                Ok((items, rv)) => {
                    for (t, o) in reflector.relist(items, rv) {
                        report(&t, &o);
                    }
                    relist = false;
                }
                Err(e) if transient(&e) => {
                    wait(&mut backoff, MOST, &e).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let stream = match c.watch(info, Some(&reflector.rv), options).await {
            Ok(s) => s,
            Err(e) if expired(&e) => {
                relist = true;
                continue;
            }
            Err(e) if transient(&e) => {
                wait(&mut backoff, MOST, &e).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut stream = std::pin::pin!(stream);
        let mut ended: Option<Error> = None;
        while let Some(line) = stream.next().await {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    ended = Some(e);
                    break;
                }
            };
            backoff = FIRST;
            if line.type_ == "ERROR" {
                ended = Some(watch_error(&line.object));
                break;
            }
            if let Some((t, o)) = reflector.observe(&line.type_, line.object) {
                report(&t, &o);
            }
        }
        match ended {
            Some(e) if expired(&e) => relist = true,
            Some(e) if !transient(&e) => return Err(e),
            Some(e) => wait(&mut backoff, MOST, &e).await,
            // The server ended the stream (a restart, a timeout): pick up where it left.
            None => {
                wait(
                    &mut backoff,
                    MOST,
                    &Error::Protocol("the watch ended".into()),
                )
                .await
            }
        }
    }
}

/// The error a watch stream ended with (a Status object).
fn watch_error(object: &Value) -> Error {
    Error::Server {
        code: object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
        reason: object
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        message: object
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("watch failed")
            .to_string(),
    }
}

async fn wait(backoff: &mut Duration, most: Duration, why: &Error) {
    eprintln!("watch: {why}; reconnecting in {} ms", backoff.as_millis());
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(most);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, rv: u64) -> Value {
        json!({"metadata": {"name": name, "resourceVersion": rv.to_string()}})
    }

    #[test]
    fn an_event_already_reported_is_not_reported_again() {
        let mut r = Reflector::new(&[obj("a", 5)], "5".into());
        assert_eq!(r.observe("MODIFIED", obj("a", 5)), None, "the list had it");
        assert!(r.observe("MODIFIED", obj("a", 7)).is_some());
        assert_eq!(r.rv, "7");
        assert_eq!(r.observe("MODIFIED", obj("a", 7)), None);
        assert!(r.observe("DELETED", obj("a", 8)).is_some());
        assert_eq!(r.observe("DELETED", obj("a", 8)), None);
        assert_eq!(r.observe("BOOKMARK", obj("", 9)), None);
        assert_eq!(r.rv, "9", "a bookmark moves the resume point");
    }

    #[test]
    fn a_relist_reports_only_what_changed_meanwhile() {
        let mut r = Reflector::new(&[obj("a", 5), obj("b", 6), obj("c", 7)], "7".into());
        let changes = r.relist(vec![obj("a", 5), obj("b", 9), obj("d", 10)], "10".into());
        let seen: Vec<(String, String)> = changes
            .iter()
            .map(|(t, o)| (t.clone(), name_of(o)))
            .collect();
        assert_eq!(
            seen,
            [
                ("MODIFIED".to_string(), "b".to_string()),
                ("ADDED".into(), "d".into()),
                ("DELETED".into(), "c".into())
            ]
        );
        assert_eq!(r.rv, "10");
        assert!(
            r.relist(vec![obj("a", 5), obj("b", 9), obj("d", 10)], "11".into())
                .is_empty()
        );
    }
}
