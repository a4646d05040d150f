//! `hkctl get KIND [NAME…]`: tables, wide tables, names, JSON or YAML; `-w` then prints a
//! row per change, once each, across reconnects and re-lists ([`crate::reflector`]).

use hostkit_api::kinds::KindInfo;
use serde_json::Value;

use super::{client, kind_arg, out};
use crate::Result;
use crate::client::{Client, ListOptions};
use crate::config::Overrides;
use crate::output::{self, Format};
use crate::reflector::{self, Reflector};

#[derive(clap::Args)]
pub struct Args {
    /// A kind (service, svc, services…) or kind/name.
    kind: String,
    names: Vec<String>,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
    /// Label selector, e.g. tier=search,env!=dev.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector, e.g. spec.project=toys.
    #[arg(long)]
    field_selector: Option<String>,
    /// After listing, watch for changes.
    #[arg(short, long)]
    watch: bool,
    /// With -w, say what each change was: an EVENT column (ADDED, MODIFIED, DELETED), or
    /// `{"type", "object"}` for JSON and YAML.
    #[arg(long, requires = "watch")]
    output_watch_events: bool,
}

fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub async fn run(overrides: &Overrides, args: &Args) -> Result<u8> {
    let (info, name) = kind_arg(&args.kind)?;
    let mut names = args.names.clone();
    names.extend(name);
    let options = ListOptions {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
    };
    let c = client(overrides)?;
    let Fetched {
        objects,
        rv,
        single,
        missing,
    } = fetch(&c, info, &names, &options).await?;
    let mut widths = Vec::new();
    if !objects.is_empty() || missing == 0 {
        print(info, &objects, rv.as_deref(), single, args, &mut widths);
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
                let event = events.then_some(type_);
                print_change(info, event, object, args.output, &mut widths);
            }
        };
        reflector::run(&c, info, &options, &mut reflector, report).await?;
    }
    // As kubectl: what was found is printed, each name that was not is an error, and any
    // such error makes the exit code 1.
    Ok(u8::from(missing > 0))
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

fn print(
    info: &'static KindInfo,
    objects: &[Value],
    rv: Option<&str>,
    single: bool,
    args: &Args,
    widths: &mut Vec<usize>,
) {
    let format = args.output;
    match format {
        Format::Table | Format::Wide => {
            if objects.is_empty() && !args.watch {
                eprintln!("No {} found.", info.plural);
            } else {
                let now = chrono::Utc::now();
                let (headers, rows) = output::table(info, objects, format == Format::Wide, now);
                out(&output::render_table(Some(&headers), &rows, widths));
            }
        }
        Format::Name => {
            for o in objects {
                out(&format!("{}\n", output::kind_name(info, name_of(o))));
            }
        }
        Format::Json | Format::Yaml => {
            let value = if single {
                objects[0].clone()
            } else {
                serde_json::json!({
                    "apiVersion": hostkit_api::API_VERSION,
                    "kind": "List",
                    "metadata": {"resourceVersion": rv.unwrap_or_default()},
                    "items": objects,
                })
            };
            if format == Format::Json {
                out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                ));
            } else {
                out(&output::to_yaml(&value));
            }
        }
    }
}

/// Prints one change of a watch, with its event type when asked.
fn print_change(
    info: &'static KindInfo,
    event: Option<&str>,
    object: &Value,
    format: Format,
    widths: &mut Vec<usize>,
) {
    let wrapped = || match event {
        Some(t) => serde_json::json!({"type": t, "object": object}),
        None => object.clone(),
    };
    match format {
        Format::Table | Format::Wide => {
            let (mut headers, mut rows) = output::table(
                info,
                std::slice::from_ref(object),
                format == Format::Wide,
                chrono::Utc::now(),
            );
            if let Some(t) = event {
                headers.insert(0, "EVENT".into());
                for r in &mut rows {
                    r.insert(0, t.to_string());
                }
            }
            let header = widths.is_empty().then_some(headers.as_slice());
            out(&output::render_table(header, &rows, widths));
        }
        Format::Name => {
            let name = output::kind_name(info, name_of(object));
            match event {
                Some(t) => out(&format!("{t} {name}\n")),
                None => out(&format!("{name}\n")),
            }
        }
        Format::Json => out(&format!(
            "{}\n",
            serde_json::to_string(&wrapped()).unwrap_or_default()
        )),
        Format::Yaml => out(&format!("---\n{}", output::to_yaml(&wrapped()))),
    }
}
