//! How `hkctl get` prints: a list once, then, with `-w`, each change. A watched table keeps
//! its columns lined up (the header comes with the first row, and again whenever a wider
//! cell widens a column) and prints a row only when a cell it shows changed, so status-only
//! writes that change nothing shown stay quiet.

use std::collections::BTreeMap;

use hostkit_api::kinds::KindInfo;
use serde_json::{Value, json};

use super::name_of;
use crate::commands::out;
use crate::output::jsonpath::column_cells;
use crate::output::{self, Format};

pub(super) struct Printer {
    format: Format,
    no_headers: bool,
    show_labels: bool,
    /// Column widths so far (a watch keeps them, and only widens them).
    widths: Vec<usize>,
    /// The header last printed; `None` until one was.
    header: Option<Vec<String>>,
    /// What was last printed for each object (cells without AGE, or the text), by name.
    shown: BTreeMap<String, Vec<String>>,
}

impl Printer {
    pub(super) fn new(format: Format, no_headers: bool, show_labels: bool) -> Printer {
        Printer {
            format,
            no_headers,
            show_labels,
            widths: Vec::new(),
            header: None,
            shown: BTreeMap::new(),
        }
    }

    /// Tables say "No services found." for an empty list; other formats print the empty
    /// result itself.
    pub(super) fn is_table(&self) -> bool {
        matches!(
            self.format,
            Format::Table | Format::Wide | Format::CustomColumns(_)
        )
    }

    /// Headers and rows of `objects` in the table formats; `kind_names` names rows
    /// `kind/name` (several kinds at once).
    fn rows(
        &self,
        info: &'static KindInfo,
        objects: &[Value],
        kind_names: bool,
    ) -> (Vec<String>, Vec<Vec<String>>) {
        let (mut headers, mut rows) = match &self.format {
            Format::CustomColumns(columns) => (
                columns.iter().map(|c| c.header.clone()).collect(),
                objects.iter().map(|o| column_cells(columns, o)).collect(),
            ),
            format => output::table(
                info,
                objects,
                matches!(format, Format::Wide),
                chrono::Utc::now(),
            ),
        };
        if kind_names && !matches!(self.format, Format::CustomColumns(_)) {
            for r in &mut rows {
                r[0] = output::kind_name(info, &r[0]);
            }
        }
        if self.show_labels && !headers.iter().any(|h| h == "LABELS") {
            headers.push("LABELS".into());
            for (r, o) in rows.iter_mut().zip(objects) {
                r.push(output::or_dash(output::labels(o)));
            }
        }
        (headers, rows)
    }

    /// Prints a list (or the one object asked for by name, for JSON, YAML and JSONPath).
    pub(super) fn list(
        &mut self,
        info: &'static KindInfo,
        objects: &[Value],
        rv: Option<&str>,
        single: bool,
        kind_names: bool,
    ) {
        let whole = || {
            if single {
                objects[0].clone()
            } else {
                list_of(objects, rv)
            }
        };
        match &self.format {
            Format::Table | Format::Wide | Format::CustomColumns(_) => {
                let (headers, rows) = self.rows(info, objects, kind_names);
                self.print_rows(headers, &rows);
                for (o, r) in objects.iter().zip(&rows) {
                    self.shown
                        .insert(name_of(o).to_string(), without_age(&self.header, r));
                }
            }
            Format::Name => {
                for o in objects {
                    out(&format!("{}\n", output::kind_name(info, name_of(o))));
                }
            }
            Format::Json => out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&whole()).unwrap_or_default()
            )),
            Format::Yaml => out(&output::to_yaml(&whole())),
            Format::JsonPath(t) => out(&t.render(&whole())),
        }
    }

    /// `get all` and `get svc,hosts`: a table per kind with a blank line between, or one
    /// List of every object.
    pub(super) fn lists(&mut self, lists: &[(&'static KindInfo, Vec<Value>)]) {
        if self.is_table() {
            let mut first = true;
            for (info, objects) in lists.iter().filter(|(_, o)| !o.is_empty()) {
                if !first {
                    out("\n");
                }
                first = false;
                self.widths.clear();
                self.header = None;
                self.list(info, objects, None, false, true);
            }
            if first {
                eprintln!("No resources found.");
            }
            return;
        }
        if matches!(self.format, Format::Name) {
            for (info, objects) in lists {
                self.list(info, objects, None, false, true);
            }
            return;
        }
        let all: Vec<Value> = lists.iter().flat_map(|(_, o)| o.iter().cloned()).collect();
        self.list(lists[0].0, &all, None, false, true);
    }

    /// Prints one change of a watch (`type_`: ADDED, MODIFIED, DELETED), with its type in
    /// front when `events`.
    pub(super) fn change(
        &mut self,
        info: &'static KindInfo,
        type_: &str,
        events: bool,
        object: &Value,
    ) {
        let name = name_of(object).to_string();
        let wrapped = || match events {
            true => json!({"type": type_, "object": object}),
            false => object.clone(),
        };
        match &self.format {
            Format::Table | Format::Wide | Format::CustomColumns(_) => {
                let (mut headers, mut rows) = self.rows(info, std::slice::from_ref(object), false);
                let seen = without_age(&Some(headers.clone()), &rows[0]);
                if !self.news(&name, type_, seen) {
                    return;
                }
                if events {
                    headers.insert(0, "EVENT".into());
                    rows[0].insert(0, type_.to_string());
                }
                self.print_rows(headers, &rows);
            }
            Format::Name => {
                let shown = output::kind_name(info, &name);
                if !self.news(&name, type_, vec![]) {
                    return;
                }
                match events {
                    true => out(&format!("{type_} {shown}\n")),
                    false => out(&format!("{shown}\n")),
                }
            }
            Format::JsonPath(t) => {
                let text = t.render(&wrapped());
                if self.news(&name, type_, vec![text.clone()]) {
                    out(&text);
                }
            }
            Format::Json => out(&format!(
                "{}\n",
                serde_json::to_string(&wrapped()).unwrap_or_default()
            )),
            Format::Yaml => out(&format!("---\n{}", output::to_yaml(&wrapped()))),
        }
    }

    /// Whether a change shows anything new: a MODIFIED that looks as it was last printed
    /// is not; additions and deletions always are.
    fn news(&mut self, name: &str, type_: &str, seen: Vec<String>) -> bool {
        if type_ == "DELETED" {
            self.shown.remove(name);
            return true;
        }
        if type_ == "MODIFIED" && self.shown.get(name) == Some(&seen) {
            return false;
        }
        self.shown.insert(name.to_string(), seen);
        true
    }

    /// Prints rows under `headers`: the header first if none was printed, or again when
    /// the rows widen a column, so every row lines up with the header above it.
    fn print_rows(&mut self, headers: Vec<String>, rows: &[Vec<String>]) {
        // An empty list being watched: the header waits for the first row, and its width.
        if rows.is_empty() {
            return;
        }
        let before = self.widths.clone();
        let mut widths = self.widths.clone();
        let _ = output::render_table(Some(&headers), rows, &mut widths);
        let widened = !before.is_empty() && widths != before;
        let header_changed = self.header.as_ref() != Some(&headers);
        self.widths = widths;
        let print_header = !self.no_headers && (header_changed || widened);
        let header = print_header.then_some(headers.as_slice());
        let mut widths = self.widths.clone();
        out(&output::render_table(header, rows, &mut widths));
        self.header = Some(headers);
    }
}

/// A row without its AGE cell (which changes with the clock, not the object).
fn without_age(headers: &Option<Vec<String>>, row: &[String]) -> Vec<String> {
    let age = headers
        .as_ref()
        .and_then(|h| h.iter().position(|c| c == "AGE"));
    row.iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != age)
        .map(|(_, c)| c.clone())
        .collect()
}

fn list_of(objects: &[Value], rv: Option<&str>) -> Value {
    json!({
        "apiVersion": hostkit_api::API_VERSION,
        "kind": "List",
        "metadata": {"resourceVersion": rv.unwrap_or_default()},
        "items": objects,
    })
}
