//! Progress lines while a verb waits (`delete --wait`, `sync`, `reconcile --wait`): the
//! object's events as the controller records them, one line each, from the moment the verb
//! started. What was recorded before is not news; an event seen again (its count grew) is.

use std::collections::BTreeMap;

use hostkit_api::kinds::{KindInfo, find_kind};
use serde_json::Value;

use crate::Result;
use crate::client::{Client, ListOptions};
use crate::commands::out;
use crate::output::kind_name;

pub struct EventTail {
    shown: String,
    options: ListOptions,
    /// Each event's name and the count last printed (or found at the start).
    seen: BTreeMap<String, i64>,
}

fn key_and_count(e: &Value) -> (String, i64) {
    (
        e.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        e.pointer("/spec/count")
            .and_then(Value::as_i64)
            .unwrap_or(1),
    )
}

impl EventTail {
    /// Starts from the events `kind`/`name` has now (none of them is printed).
    pub async fn start(c: &Client, kind: &KindInfo, name: &str) -> Result<EventTail> {
        let options = ListOptions {
            label_selector: None,
            field_selector: Some(format!(
                "spec.involvedObject.kind={},spec.involvedObject.name={name}",
                kind.kind
            )),
        };
        let mut tail = EventTail {
            shown: kind_name(kind, name),
            options,
            seen: BTreeMap::new(),
        };
        for e in tail.events(c).await? {
            let (k, n) = key_and_count(&e);
            tail.seen.insert(k, n);
        }
        Ok(tail)
    }

    async fn events(&self, c: &Client) -> Result<Vec<Value>> {
        let events = find_kind("events").expect("Event is a kind");
        let (mut items, _) = c.list(events, &self.options).await?;
        items.sort_by(|a, b| {
            let t = |e: &Value| {
                e.pointer("/spec/lastTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            t(a).cmp(&t(b))
        });
        Ok(items)
    }

    /// Prints the events recorded (or repeated) since the last call.
    pub async fn print_new(&mut self, c: &Client) -> Result<()> {
        for e in self.events(c).await? {
            let (k, n) = key_and_count(&e);
            if self.seen.get(&k) == Some(&n) {
                continue;
            }
            self.seen.insert(k, n);
            let s = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or("");
            let first_line = s("/spec/message").lines().next().unwrap_or("");
            out(&format!(
                "{}: {}: {first_line}\n",
                self.shown,
                s("/spec/reason")
            ));
        }
        Ok(())
    }
}
