//! Every operator-facing text, snapshot-tested.

use std::fmt::Write as _;

use sysdb_errclass::{ErrorClass, WalReplayCause};

const CAUSES: [WalReplayCause; 6] = [
    WalReplayCause::Ddl,
    WalReplayCause::ChecksumMismatch,
    WalReplayCause::Undecodable,
    WalReplayCause::ExtensionUnavailable,
    WalReplayCause::ProcessAborted,
    WalReplayCause::Other,
];

fn every_class() -> Vec<ErrorClass> {
    let mut classes: Vec<ErrorClass> = CAUSES
        .iter()
        .map(|&cause| ErrorClass::WalReplay { cause })
        .collect();
    classes.extend([
        ErrorClass::Locked { pid: Some(4242) },
        ErrorClass::Locked { pid: None },
        ErrorClass::NotADatabase,
        ErrorClass::CorruptDatabase,
        ErrorClass::Truncated,
        ErrorClass::NewerStorage,
        ErrorClass::UnsupportedStorage,
        ErrorClass::PermissionDenied,
        ErrorClass::DiskFull,
        ErrorClass::OutOfMemory,
        ErrorClass::Io,
        ErrorClass::Unknown,
    ]);
    classes
}

#[test]
fn every_class_display() {
    let mut out = String::new();
    for class in every_class() {
        writeln!(out, "{:<22} {class}", class.as_str()).expect("write to string");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn every_cause_display() {
    let mut out = String::new();
    for cause in CAUSES {
        writeln!(out, "{:<22} {cause}", cause.as_str()).expect("write to string");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn operator_texts_are_lowercase_without_trailing_period() {
    for class in every_class() {
        let text = class.to_string();
        assert!(text.starts_with(char::is_lowercase), "{text}");
        assert!(!text.ends_with('.'), "{text}");
    }
}

#[test]
fn only_wal_replay_is_recoverable() {
    for class in every_class() {
        assert_eq!(
            class.is_wal_replay(),
            matches!(class, ErrorClass::WalReplay { .. }),
            "{class:?}"
        );
    }
    assert_eq!(
        every_class().iter().filter(|c| c.is_wal_replay()).count(),
        CAUSES.len()
    );
}

#[test]
fn classify_error_reads_the_duckdb_message() {
    let err = duckdb::Error::DuckDBFailure(
        duckdb::ffi::Error::new(duckdb::ffi::DuckDBError),
        Some("IO Error: Could not set lock on file \"/x\": Conflicting lock is held in /bin/y (PID 31) by user z".into()),
    );
    assert_eq!(
        sysdb_errclass::classify_error(&err),
        ErrorClass::Locked { pid: Some(31) }
    );
    assert_eq!(
        sysdb_errclass::classify_error(&duckdb::Error::QueryReturnedNoRows),
        ErrorClass::Unknown
    );
}
