//! `hkctl events [--for KIND/NAME] [-w]`: recent events, oldest first.

use hostkit_api::kinds::find_kind;
use serde_json::Value;

use super::{client, kind_arg, out};
use crate::client::{Client, ListOptions};
use crate::config::Overrides;
use crate::output;
use crate::reflector::{self, Reflector};
use crate::{Error, Result};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Every recent event, then one object's, then follow them
  hkctl events
  hkctl events --for service/web
  hkctl events -w")]
pub struct Args {
    /// Only events about this object, e.g. service/exograph.
    #[arg(long = "for")]
    for_object: Option<String>,
    #[arg(short, long)]
    watch: bool,
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let c = client(overrides)?;
    let info = find_kind("events").expect("Event is a kind");
    let field_selector = match &args.for_object {
        Some(o) => {
            let (k, n) = kind_arg(o)?;
            let n = n.ok_or_else(|| Error::Usage("--for needs KIND/NAME".into()))?;
            Some(involving(k.kind, &n))
        }
        None => None,
    };
    let options = ListOptions {
        label_selector: None,
        field_selector,
    };
    let (mut items, rv) = c.list(info, &options).await?;
    sort_events(&mut items);
    let mut widths = Vec::new();
    if items.is_empty() && !args.watch {
        eprintln!("No events found.");
        return Ok(0);
    }
    out(&output::render_table(
        Some(&headers()),
        &rows(&items),
        &mut widths,
    ));
    if args.watch {
        // Deletions (events expiring) are not news here; additions and repeats are.
        let mut reflector = Reflector::new(&items, rv);
        let report = |type_: &str, object: &Value| {
            if type_ != "DELETED" {
                out(&output::render_table(
                    None,
                    &rows(std::slice::from_ref(object)),
                    &mut widths,
                ));
            }
        };
        reflector::run(&c, info, &options, &mut reflector, report).await?;
    }
    Ok(0)
}

/// The field selector of the events about one object.
fn involving(kind: &str, name: &str) -> String {
    format!("spec.involvedObject.kind={kind},spec.involvedObject.name={name}")
}

fn headers() -> Vec<String> {
    ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        .map(String::from)
        .to_vec()
}

fn rows(items: &[Value]) -> Vec<Vec<String>> {
    let now = chrono::Utc::now();
    items
        .iter()
        .map(|e| {
            let s = |p: &str| {
                e.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let last = s("/spec/lastTimestamp");
            vec![
                output::age(
                    if last.is_empty() {
                        e.pointer("/metadata/creationTimestamp")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    } else {
                        &last
                    },
                    now,
                ),
                s("/spec/type"),
                s("/spec/reason"),
                format!(
                    "{}/{}",
                    s("/spec/involvedObject/kind").to_lowercase(),
                    s("/spec/involvedObject/name")
                ),
                s("/spec/message"),
            ]
        })
        .collect()
}

fn sort_events(items: &mut [Value]) {
    items.sort_by_key(|e| {
        e.pointer("/spec/lastTimestamp")
            .or_else(|| e.pointer("/metadata/creationTimestamp"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    });
}

/// The events about one object, oldest first (for `describe`).
/// The events about one object: with `uid`, only those of that very object (and those
/// recorded without a uid), not a deleted predecessor's of the same name.
pub async fn about(c: &Client, kind: &str, name: &str, uid: Option<&str>) -> Result<Vec<Value>> {
    let info = find_kind("events").expect("Event is a kind");
    let options = ListOptions {
        label_selector: None,
        field_selector: Some(involving(kind, name)),
    };
    let (mut items, _) = c.list(info, &options).await?;
    items.retain(|e| of_object(e, uid));
    sort_events(&mut items);
    Ok(items)
}

fn of_object(event: &Value, uid: Option<&str>) -> bool {
    match (
        uid,
        event
            .pointer("/spec/involvedObject/uid")
            .and_then(Value::as_str),
    ) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_objects_events_are_its_own_not_a_predecessors_of_the_same_name() {
        let event = |uid: Option<&str>| json!({"spec": {"involvedObject": {"kind": "Service", "name": "web", "uid": uid}}});
        assert!(of_object(&event(Some("u-2")), Some("u-2")));
        assert!(
            !of_object(&event(Some("u-1")), Some("u-2")),
            "the deleted one's"
        );
        assert!(
            of_object(&event(None), Some("u-2")),
            "recorded without a uid"
        );
        assert!(
            of_object(&event(Some("u-1")), None),
            "no uid to tell them apart"
        );
    }
}
