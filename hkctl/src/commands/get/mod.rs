//! `hkctl get KIND [NAME…]`, `get svc,hosts`, `get all`: tables, wide tables, names, JSON,
//! YAML, JSONPath templates and custom columns ([`print`]); `-w` then prints a row per
//! change, once each, across reconnects and re-lists ([`crate::reflector`]), and only when
//! a column it shows changed.

mod print;

use hostkit_api::kinds::{KINDS, KindInfo};
use serde_json::Value;

use super::{client, kind_arg};
use crate::client::{Client, ListOptions};
use crate::config::Overrides;
use crate::output::Format;
use crate::output::jsonpath::{self, Path};
use crate::reflector::{self, Reflector};
use crate::{Error, Result};
use print::Printer;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  # Services, then every kind at once
  hkctl get svc
  hkctl get all

  # Two kinds, with their labels
  hkctl get svc,hosts --show-labels

  # Names only, for a script
  hkctl get svc -o name

  # One field of each, sorted
  hkctl get svc -o jsonpath='{range .items[*]}{.metadata.name}{\"\\t\"}{.status.currentRevision}{\"\\n\"}{end}' --sort-by=.metadata.name

  # Columns of your own
  hkctl get hosts -o custom-columns='NAME:.metadata.name,OS:.status.facts.os' --no-headers

  # Watch Services; a row is printed when a column changes
  hkctl get svc -w")]
pub struct Args {
    /// A kind (service, svc, services…), kind/name, several kinds (`svc,hosts`) or `all`.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::objects))]
    kind: String,
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(crate::completion::names_of_typed_kind))]
    names: Vec<String>,
    /// table, wide, name, json, yaml, jsonpath=TEMPLATE, custom-columns=HEADER:PATH,….
    #[arg(short, long, default_value = "table", value_parser = Format::parse)]
    output: Format,
    /// Label selector, e.g. tier=search,env!=dev.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector, e.g. spec.project=toys (a field the kind does not have is an error).
    #[arg(long)]
    field_selector: Option<String>,
    /// Sort by a field, as a JSONPath: .metadata.name, {.status.currentRevision}.
    #[arg(long)]
    sort_by: Option<String>,
    /// Leave out the header row of tables.
    #[arg(long)]
    no_headers: bool,
    /// Add a LABELS column.
    #[arg(long)]
    show_labels: bool,
    /// After listing, watch for changes.
    #[arg(short, long)]
    watch: bool,
    /// With -w, say what each change was: an EVENT column (ADDED, MODIFIED, DELETED), or
    /// `{"type", "object"}` for JSON and YAML.
    #[arg(long, requires = "watch")]
    output_watch_events: bool,
}

/// The kinds `hkctl get all` lists: what operators manage, not the controller's records
/// (Events, Revisions), as kubectl's `all` leaves out events.
fn all_kinds() -> Vec<&'static KindInfo> {
    KINDS
        .iter()
        .copied()
        .filter(|k| !matches!(k.kind, "Event" | "Revision"))
        .collect()
}

fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let sort = args.sort_by.as_deref().map(Path::parse).transpose()?;
    let mut printer = Printer::new(args.output.clone(), args.no_headers, args.show_labels);
    if args.kind == "all" || args.kind.contains(',') {
        return several_kinds(overrides, args, sort.as_ref(), &mut printer).await;
    }
    let (info, name) = kind_arg(&args.kind)?;
    let mut names = args.names.clone();
    names.extend(name);
    let options = ListOptions {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
    };
    let c = client(overrides)?;
    let Fetched {
        mut objects,
        rv,
        single,
        missing,
    } = fetch(&c, info, &names, &options).await?;
    if let Some(path) = &sort {
        jsonpath::sort_by(&mut objects, path);
    }
    if !objects.is_empty() || missing == 0 {
        if objects.is_empty() && !args.watch && printer.is_table() {
            eprintln!("No {} found.", info.plural);
        } else if args.output_watch_events {
            // As kubectl: with event types shown, what the list had is ADDED.
            for o in &objects {
                printer.change(info, "ADDED", true, o);
            }
        } else {
            printer.list(info, &objects, rv.as_deref(), single, false);
        }
    }
    if args.watch {
        let mut reflector = match rv {
            Some(rv) => Reflector::new(&objects, rv),
            None => {
                let (all, rv) = c.list(info, &options).await?;
                Reflector::new(&all, rv)
            }
        };
        let events = args.output_watch_events;
        let report = |type_: &str, object: &Value| {
            if names.is_empty() || names.iter().any(|n| name_of(object) == n) {
                printer.change(info, type_, events, object);
            }
        };
        reflector::run(&c, info, &options, &mut reflector, report).await?;
    }
    // As kubectl: what was found is printed, each name that was not is an error, and any
    // such error makes the exit code 1.
    Ok(u8::from(missing > 0))
}

/// `get svc,hosts` and `get all`: each kind's list in turn (a table per kind, rows named
/// `kind/name`), or one List of all of them for JSON, YAML and JSONPath.
async fn several_kinds(
    overrides: &Overrides,
    args: &Args,
    sort: Option<&Path>,
    printer: &mut Printer,
) -> Result<u8> {
    if !args.names.is_empty() || args.watch {
        return Err(Error::Usage(
            "several kinds are listed whole and not watched: give one kind to name objects or use -w".into(),
        ));
    }
    let kinds = if args.kind == "all" {
        all_kinds()
    } else {
        let mut kinds = Vec::new();
        for k in args.kind.split(',').filter(|k| !k.is_empty()) {
            let (info, name) = kind_arg(k)?;
            if name.is_some() {
                return Err(Error::Usage(format!(
                    "{k:?}: with several kinds, give kinds only (svc,hosts)"
                )));
            }
            if !kinds.contains(&info) {
                kinds.push(info);
            }
        }
        kinds
    };
    let options = ListOptions {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
    };
    let c = client(overrides)?;
    let mut lists = Vec::new();
    for info in kinds {
        let (mut objects, _) = c.list(info, &options).await?;
        if let Some(path) = sort {
            jsonpath::sort_by(&mut objects, path);
        }
        lists.push((info, objects));
    }
    printer.lists(&lists);
    Ok(0)
}

struct Fetched {
    objects: Vec<Value>,
    /// The list's resourceVersion (a list, not names).
    rv: Option<String>,
    /// One object was asked for by name.
    single: bool,
    /// Names asked for that do not exist (each already reported).
    missing: usize,
}

/// The objects asked for; a name that is not found is reported here, once.
async fn fetch(
    c: &Client,
    info: &'static KindInfo,
    names: &[String],
    options: &ListOptions,
) -> Result<Fetched> {
    if names.is_empty() {
        let (objects, rv) = c.list(info, options).await?;
        return Ok(Fetched {
            objects,
            rv: Some(rv),
            single: false,
            missing: 0,
        });
    }
    let mut objects = Vec::new();
    let mut missing = 0;
    for n in names {
        match c.get(info, n).await {
            Ok(v) => objects.push(v),
            Err(e) if e.is_not_found() => {
                eprintln!("error: {e}");
                missing += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Fetched {
        objects,
        rv: None,
        single: names.len() == 1,
        missing,
    })
}
