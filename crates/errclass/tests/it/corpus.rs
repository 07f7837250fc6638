//! The corpus: every entry is classified, its class checked against the
//! label's first word, and the whole table snapshot-tested.

use std::fmt::Write as _;

use sysdb_errclass::classify;

/// One corpus entry: a label (`"<class>: <what>"`) and the message.
pub struct Entry {
    pub label: String,
    pub message: String,
}

/// Parse the corpus format: `## <label>` starts an entry, every following line
/// up to the next heading is its message; `#` lines before the first heading
/// are comments.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in text.lines() {
        if let Some(label) = line.strip_prefix("## ") {
            entries.push(Entry {
                label: label.trim().to_owned(),
                message: String::new(),
            });
        } else if let Some(entry) = entries.last_mut() {
            if !entry.message.is_empty() {
                entry.message.push('\n');
            }
            entry.message.push_str(line);
        }
    }
    for entry in &mut entries {
        entry.message = entry.message.trim_end().to_owned();
    }
    entries
}

/// Render entries in the corpus format (the inverse of [`parse`]).
pub fn render(header: &str, entries: &[Entry]) -> String {
    let mut out = String::from(header);
    for entry in entries {
        write!(out, "\n## {}\n{}\n", entry.label, entry.message).expect("write to string");
    }
    out
}

pub const DOCUMENTED: &str = include_str!("corpus/documented.txt");
pub const CAPTURED: &str = include_str!("corpus/captured.txt");

fn check_and_table(entries: &[Entry]) -> String {
    assert!(!entries.is_empty(), "corpus is empty");
    let mut table = String::new();
    for entry in entries {
        let class = classify(&entry.message);
        let expected = entry
            .label
            .split(':')
            .next()
            .expect("split yields at least one item")
            .trim();
        assert_eq!(
            class.as_str(),
            expected,
            "corpus entry {:?} classified as {class:?}:\n{}",
            entry.label,
            entry.message
        );
        writeln!(table, "{} => {class:?}", entry.label).expect("write to string");
    }
    table
}

#[test]
fn documented_messages_classify_as_labelled() {
    let entries = parse(DOCUMENTED);
    assert!(
        entries.len() >= 30,
        "documented corpus shrank to {}",
        entries.len()
    );
    insta::assert_snapshot!("documented", check_and_table(&entries));
}

#[test]
fn captured_messages_classify_as_labelled() {
    let entries = parse(CAPTURED);
    insta::assert_snapshot!("captured", check_and_table(&entries));
}

#[test]
fn parse_and_render_round_trip() {
    let entries = parse(DOCUMENTED);
    let again = parse(&render("# header\n", &entries));
    assert_eq!(entries.len(), again.len());
    for (a, b) in entries.iter().zip(&again) {
        assert_eq!(a.label, b.label);
        assert_eq!(a.message, b.message);
    }
}
