//! Properties of `classify` over generated input.

use proptest::prelude::*;
use sysdb_errclass::{classify, ErrorClass};

use crate::corpus::{parse, CAPTURED, DOCUMENTED};

/// Corpus messages with a path placeholder, to put other paths into.
fn templates() -> Vec<String> {
    parse(DOCUMENTED)
        .into_iter()
        .chain(parse(CAPTURED))
        .map(|e| e.message)
        .filter(|m| m.contains("<db>") || m.contains("<dir>"))
        .collect()
}

/// Every corpus message.
fn messages() -> Vec<String> {
    parse(DOCUMENTED)
        .into_iter()
        .chain(parse(CAPTURED))
        .map(|e| e.message)
        .collect()
}

/// The phrases the classifier keys on, and DuckDB's punctuation around them:
/// a path may contain any of them.
const KEY_PHRASES: &[&str] = &[
    "Failure while replaying WAL file",
    "INTERNAL Error: Failure while replaying WAL file: ",
    "Could not set lock on file",
    "Conflicting lock is held in x (PID 99)",
    "(PID 7)",
    "file is locked by another process",
    "The file",
    "exists, but it is not a valid DuckDB database file!",
    "Corrupt database file",
    "Corrupt WAL file: entry at byte position 1 computed checksum 2 does not match stored checksum 3",
    "Could not read enough bytes from file",
    "created with a newer version of DuckDB",
    "x\": Permission denied",
    "x\": No space left on device",
    "x\": File locks are not supported",
    "Type with name e does not exist!",
    "Failed to decode LEB128 integer",
    "Extension \"e\" not found",
    "Calling DatabaseManager::GetDefaultDatabase",
    "ReplayAlter",
    "Stack Trace:",
    "IO Error: ",
    "Data Corruption Error:",
    "état \u{fffd}\u{fffd} данные",
];

fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[A-Za-z0-9 _.()-]{1,16}",
        proptest::sample::select(KEY_PHRASES).prop_map(str::to_owned),
    ];
    proptest::collection::vec(segment, 1..6).prop_map(|s| format!("/{}", s.join("/")))
}

fn whitespace_strategy() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&[" ", "  ", "\n", "\r\n", "\t", " \n  ", "\u{a0}"][..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(s in any::<String>()) {
        let _ = classify(&s);
    }

    #[test]
    fn never_panics_on_replacement_characters(s in "[\u{fffd}\u{0}-\u{7f}IOErr: \"]{0,300}") {
        let _ = classify(&s);
    }

    #[test]
    fn class_does_not_depend_on_the_quoted_path(
        index in any::<proptest::sample::Index>(),
        path in path_strategy(),
    ) {
        let templates = templates();
        let template = index.get(&templates);
        let reference = classify(template);
        let message = template.replace("<db>", &path).replace("<dir>", &path);
        prop_assert_eq!(classify(&message), reference, "message: {}", message);
    }

    #[test]
    fn class_does_not_depend_on_whitespace(
        index in any::<proptest::sample::Index>(),
        spaces in proptest::collection::vec(whitespace_strategy(), 64),
        lead in whitespace_strategy(),
        trail in whitespace_strategy(),
    ) {
        let messages = messages();
        let message = index.get(&messages);
        let mut changed = String::from(lead);
        for (i, word) in message.split(' ').enumerate() {
            if i > 0 {
                changed.push_str(spaces[i % spaces.len()]);
            }
            changed.push_str(word);
        }
        changed.push_str(trail);
        prop_assert_eq!(classify(&changed), classify(message), "message: {:?}", changed);
    }

    #[test]
    fn class_does_not_depend_on_the_type_prefix(
        index in any::<proptest::sample::Index>(),
        prefix in proptest::sample::select(&["", "Error: ", "duckdb.duckdb.Exception: "][..]),
    ) {
        let messages = messages();
        let message = index.get(&messages);
        let body = strip_one_prefix(message);
        let changed = format!("{prefix}{body}");
        prop_assert_eq!(classify(&changed), classify(message), "message: {:?}", changed);
    }
}

proptest! {
    // A megabyte per case: fewer cases, the same property.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn never_panics_on_megabyte_inputs(chunk in any::<String>(), prefix in 0usize..3) {
        let chunk = if chunk.is_empty() { "x".to_owned() } else { chunk };
        let body = chunk.repeat(1_000_000 / chunk.len() + 1);
        let message = match prefix {
            0 => body,
            1 => format!("IO Error: Failure while replaying WAL file \"{body}.wal\": {body}"),
            _ => format!("IO Error: Could not set lock on file \"{body}\": {body} (PID {body}"),
        };
        prop_assert!(message.len() >= 1_000_000);
        let _ = classify(&message);
    }
}

/// The message without DuckDB's `"<Type> Error:"` prefix, if it has one.
fn strip_one_prefix(message: &str) -> &str {
    match message.split_once("Error:") {
        Some((head, rest)) if head.chars().all(|c| c.is_ascii_alphabetic() || c == ' ') => {
            rest.trim_start()
        }
        _ => message,
    }
}

#[test]
fn the_corpus_has_path_templates_of_every_key_class() {
    let classes: Vec<ErrorClass> = templates().iter().map(|t| classify(t)).collect();
    for wanted in [
        "wal-replay",
        "locked",
        "not-a-database",
        "truncated",
        "permission-denied",
    ] {
        assert!(
            classes.iter().any(|c| c.as_str() == wanted),
            "no path template classified {wanted}"
        );
    }
}
