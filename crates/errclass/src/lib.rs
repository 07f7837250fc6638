//! The DuckDB error taxonomy: which failure is this, and may recovery act on it?
//!
//! DuckDB reports every failure to open a database through one error type
//! with an unknown code, so the message text is the only signal. This crate
//! turns that text into an [`ErrorClass`]. It says what an error *is*; what to
//! do about it is the business of the `sysdb` crate.
//!
//! A wrong answer here is expensive in both directions: a real write-ahead-log
//! replay failure that is not recognised leaves a service that cannot start,
//! and a lock or corruption error mistaken for one gets "recovered" over and
//! loses data. The classifier is therefore built around DuckDB's own message
//! templates:
//!
//! * the class is decided by the *start* of the message (after any
//!   `"<Type> Error:"` prefix), never by a phrase found somewhere inside it,
//!   so a database stored under a folder called
//!   `/srv/Failure while replaying WAL file/` that hits a lock error is still
//!   [`ErrorClass::Locked`];
//! * details that DuckDB prints after a quoted path (the replay cause, the
//!   operating system's error text) are read from the text that follows the
//!   path, located by the template's own punctuation;
//! * whitespace and line breaks are insignificant, and text DuckDB appends
//!   (hints, `Stack Trace:`) is ignored.
//!
//! ```
//! use sysdb_errclass::{classify, ErrorClass, WalReplayCause};
//!
//! let class = classify(
//!     "Catalog Error: Failure while replaying WAL file \"/data/state/system.duckdb.wal\": \
//!      Type with name my_enum does not exist!",
//! );
//! assert_eq!(class, ErrorClass::WalReplay { cause: WalReplayCause::Ddl });
//! assert!(class.is_wal_replay());
//!
//! let class = classify(
//!     "IO Error: Could not set lock on file \"/data/state/system.duckdb\": \
//!      Conflicting lock is held in /usr/bin/service (PID 4242) by user app",
//! );
//! assert_eq!(class, ErrorClass::Locked { pid: Some(4242) });
//! assert!(!class.is_wal_replay());
//! ```

use std::borrow::Cow;
use std::fmt;

/// What kind of failure a DuckDB error message describes.
///
/// Only [`ErrorClass::WalReplay`] describes a state that the automatic
/// recovery may act on; every other class must reach an operator unchanged.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// DuckDB could not replay the write-ahead log (`<db>.wal`) on open. The
    /// main database file is intact at its last checkpoint.
    WalReplay {
        /// Why the replay failed.
        cause: WalReplayCause,
    },
    /// Another process (or another DuckDB instance in this process) holds the
    /// database's file lock.
    Locked {
        /// The lock holder's process id, when DuckDB names one (never 0).
        pid: Option<u32>,
    },
    /// The file exists but is not a DuckDB database (another format, garbage,
    /// or a header DuckDB does not recognise).
    NotADatabase,
    /// The main database file fails DuckDB's own integrity checks.
    CorruptDatabase,
    /// The main database file is shorter than its own header says it is.
    Truncated,
    /// The file was written by a newer DuckDB whose storage format this build
    /// cannot read.
    NewerStorage,
    /// The file is in a storage format this build cannot read, but not a
    /// newer one (an old development build, for example).
    UnsupportedStorage,
    /// The operating system refused access to a file.
    PermissionDenied,
    /// The file system is full (or a quota is exhausted).
    DiskFull,
    /// DuckDB ran out of memory (its `memory_limit`, or the process's or
    /// container's). Also while it replays the write-ahead log: the log is
    /// intact and replays with more memory.
    OutOfMemory,
    /// Any other input/output failure.
    Io,
    /// A message this classifier does not recognise.
    Unknown,
}

/// Why DuckDB could not replay the write-ahead log.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalReplayCause {
    /// A logged schema change (DDL) failed to bind or find a catalog entry
    /// when replayed; a DuckDB bug class, the log itself is intact.
    Ddl,
    /// A log entry's stored checksum does not match its bytes.
    ChecksumMismatch,
    /// The log's bytes could not be decoded (damaged header or entry).
    Undecodable,
    /// An extension needed to replay the log could not be loaded.
    ExtensionUnavailable,
    /// The replay killed the process that attempted it (an abort or a crash
    /// inside DuckDB, seen by a probe child); no message to classify.
    ProcessAborted,
    /// Any other replay failure.
    Other,
}

impl ErrorClass {
    /// `true` for [`ErrorClass::WalReplay`], the only class that the automatic
    /// recovery may act on.
    pub fn is_wal_replay(&self) -> bool {
        matches!(self, ErrorClass::WalReplay { .. })
    }

    /// `true` for a failure of the environment rather than of the files:
    /// memory, disk space, permissions, an I/O error, a lock. The files are
    /// intact and open once the environment is fixed, so nothing may be set
    /// aside for it.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            ErrorClass::Locked { .. }
                | ErrorClass::PermissionDenied
                | ErrorClass::DiskFull
                | ErrorClass::OutOfMemory
                | ErrorClass::Io
        )
    }

    /// A stable, machine-readable name (`"wal-replay"`, `"locked"`, …) for
    /// reports and manifests.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::WalReplay { .. } => "wal-replay",
            ErrorClass::Locked { .. } => "locked",
            ErrorClass::NotADatabase => "not-a-database",
            ErrorClass::CorruptDatabase => "corrupt-database",
            ErrorClass::Truncated => "truncated",
            ErrorClass::NewerStorage => "newer-storage",
            ErrorClass::UnsupportedStorage => "unsupported-storage",
            ErrorClass::PermissionDenied => "permission-denied",
            ErrorClass::DiskFull => "disk-full",
            ErrorClass::OutOfMemory => "out-of-memory",
            ErrorClass::Io => "io",
            ErrorClass::Unknown => "unknown",
        }
    }
}

impl WalReplayCause {
    /// A stable, machine-readable name (`"ddl"`, `"checksum-mismatch"`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            WalReplayCause::Ddl => "ddl",
            WalReplayCause::ChecksumMismatch => "checksum-mismatch",
            WalReplayCause::Undecodable => "undecodable",
            WalReplayCause::ExtensionUnavailable => "extension-unavailable",
            WalReplayCause::ProcessAborted => "process-aborted",
            WalReplayCause::Other => "other",
        }
    }
}

impl fmt::Display for WalReplayCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WalReplayCause::Ddl => {
                "a logged schema change could not be applied again (a known DuckDB replay bug; the log itself is intact)"
            }
            WalReplayCause::ChecksumMismatch => "a log entry failed its checksum",
            WalReplayCause::Undecodable => "the log's bytes could not be decoded",
            WalReplayCause::ExtensionUnavailable => {
                "an extension needed to replay the log could not be loaded"
            }
            WalReplayCause::ProcessAborted => {
                "the replay killed the process that attempted it (an abort or crash inside DuckDB)"
            }
            WalReplayCause::Other => "the replay failed for a reason DuckDB did not classify",
        })
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::WalReplay { cause } => {
                write!(f, "the write-ahead log could not be replayed: {cause}")
            }
            ErrorClass::Locked { pid: Some(pid) } => {
                write!(f, "the database is locked by another process (pid {pid})")
            }
            ErrorClass::Locked { pid: None } => {
                f.write_str("the database is locked by another process")
            }
            ErrorClass::NotADatabase => f.write_str("the file is not a DuckDB database"),
            ErrorClass::CorruptDatabase => {
                f.write_str("the database file is corrupt (it fails DuckDB's integrity checks)")
            }
            ErrorClass::Truncated => {
                f.write_str("the database file is truncated (shorter than DuckDB expects)")
            }
            ErrorClass::NewerStorage => f.write_str(
                "the database file was written by a newer DuckDB than this build can read",
            ),
            ErrorClass::UnsupportedStorage => {
                f.write_str("the database file is in a storage format this build cannot read")
            }
            ErrorClass::PermissionDenied => f.write_str("permission to a database file was denied"),
            ErrorClass::DiskFull => f.write_str("the file system is full"),
            ErrorClass::OutOfMemory => f.write_str(
                "the database ran out of memory (DuckDB's memory_limit, or the process's or container's limit)",
            ),
            ErrorClass::Io => f.write_str("an input/output error occurred"),
            ErrorClass::Unknown => f.write_str("an unrecognised DuckDB error"),
        }
    }
}

/// Classify the error duckdb-rs returned.
///
/// DuckDB failures carry their message in
/// [`duckdb::Error::DuckDBFailure`]; every other variant is classified by its
/// `Display` text (which normally makes it [`ErrorClass::Unknown`]).
pub fn classify_error(err: &duckdb::Error) -> ErrorClass {
    match err {
        duckdb::Error::DuckDBFailure(_, Some(message)) => classify(message),
        other => classify(&other.to_string()),
    }
}

/// Classify a DuckDB error message.
///
/// Never panics, whatever the input; see the crate documentation for how the
/// message is read.
pub fn classify(message: &str) -> ErrorClass {
    let normalized = normalize_whitespace(message);
    let (prefixes, body) = strip_type_prefixes(&normalized);
    let prefix_is = |name: &str| prefixes.iter().any(|p| p.eq_ignore_ascii_case(name));

    // Whatever it was doing (a replay of the write-ahead log included),
    // DuckDB ran out of memory: the environment, never the files.
    if prefix_is("Out of Memory") {
        return ErrorClass::OutOfMemory;
    }
    if let Some(class) = classify_body(body) {
        return class;
    }
    // The body is not a template we know; the "<Type> Error:" prefix is the
    // only remaining signal.
    if prefix_is("Data Corruption") {
        ErrorClass::CorruptDatabase
    } else if prefix_is("IO") {
        errno_class(body).unwrap_or(ErrorClass::Io)
    } else if prefix_is("Permission") {
        ErrorClass::PermissionDenied
    } else {
        errno_class(body).unwrap_or(ErrorClass::Unknown)
    }
}

/// The class decided by the message body (prefixes removed), if its start
/// matches one of DuckDB's templates.
fn classify_body(body: &str) -> Option<ErrorClass> {
    // The DuckDB shell wraps the error: `unable to open database "<path>":
    // IO Error: …`. The wrapped message starts after the first `": ` that is
    // followed by a "<Type> Error:" prefix.
    if let Some(rest) = strip_prefix_ci(body, "unable to open database") {
        return tails_after_quote(rest)
            .find(|tail| !strip_type_prefixes(tail).0.is_empty())
            .map(classify);
    }
    if let Some(rest) = strip_prefix_ci(body, "Failure while replaying WAL file")
        .or_else(|| strip_prefix_ci(body, "Failure while replaying checkpoint WAL file"))
    {
        let (prefixes, cause) = replay_failure(rest);
        let replay = wal_replay_cause(&prefixes, cause);
        // A cause that is one of the log's own failures (a checksum, bytes
        // that do not decode, a schema change) is the log's; any other may
        // be the environment's.
        let environment = match replay {
            WalReplayCause::Other => environment_in_replay(&prefixes, cause),
            _ => out_of_memory(&prefixes, cause),
        };
        return Some(environment.unwrap_or(ErrorClass::WalReplay { cause: replay }));
    }
    if starts_with_ci(body, "ReplayAlter") {
        return Some(ErrorClass::WalReplay {
            cause: WalReplayCause::Ddl,
        });
    }
    if let Some(rest) = strip_prefix_ci(body, "Could not set lock on file") {
        let unsupported = tails_after_quote(rest)
            .any(|tail| starts_with_ci(tail, "File locks are not supported"));
        let conflict = tails_after_quote(rest).any(|tail| {
            starts_with_ci(tail, "Conflicting lock is held")
                || starts_with_ci(tail, "Lock is already held")
        });
        if unsupported && !conflict {
            return Some(ErrorClass::Io);
        }
        return Some(ErrorClass::Locked {
            pid: holder_pid(rest),
        });
    }
    if starts_with_ci(body, "file is locked")
        || starts_with_ci(
            body,
            "The process cannot access the file because it is being used",
        )
    {
        return Some(ErrorClass::Locked { pid: None });
    }
    if starts_with_ci(body, "The file") && contains_ci(body, "not a valid DuckDB database file") {
        return Some(ErrorClass::NotADatabase);
    }
    // A file of another format (SQLite, …) makes DuckDB reach for the
    // extension that reads it; with auto-install off that fails like this.
    if starts_with_ci(body, "Extension \"") || starts_with_ci(body, "Failed to download extension")
    {
        return Some(ErrorClass::NotADatabase);
    }
    if starts_with_ci(body, "Corrupt database file")
        || starts_with_ci(body, "malformed database file")
        || starts_with_ci(body, "database disk image is malformed")
    {
        return Some(ErrorClass::CorruptDatabase);
    }
    if starts_with_ci(body, "Could not read enough bytes from file")
        || starts_with_ci(body, "Could not read all bytes from file")
    {
        return Some(ErrorClass::Truncated);
    }
    if starts_with_ci(body, "Trying to read a database file with") {
        return Some(storage_version_class(body));
    }
    if let Some(class) = out_of_memory(&[], body) {
        return Some(class);
    }
    if IO_TEMPLATES.iter().any(|t| starts_with_ci(body, t)) {
        return Some(errno_class(body).unwrap_or(ErrorClass::Io));
    }
    None
}

/// The start of DuckDB's messages about a failed file-system call.
const IO_TEMPLATES: &[&str] = &[
    "Cannot open file",
    "Could not open file",
    "Could not write",
    "Could not read",
    "Could not fsync",
    "Could not truncate",
    "Could not seek",
    "Could not remove",
    "Could not rename",
    "Could not move",
    "Failed to get stats for file",
    "Failed to create directory",
    "Failed to read",
    "Failed to write",
];

/// `… storage version number N, but we can only read storage versions
/// between A and B …` (2.0) or `… version number N, but we can only read
/// versions between A and B …` (1.x): newer when N is above B, whatever
/// words follow (1.x says "an newer version", and a version DuckDB knows by
/// name is named instead).
fn storage_version_class(body: &str) -> ErrorClass {
    let number_after = |word: &str, from: usize| -> Option<(u64, usize)> {
        let at = find_ci(&body[from..], word)? + from + word.len();
        let digits: String = body[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some((digits.parse().ok()?, at + digits.len()))
    };
    let read = number_after("version number ", 0).and_then(|(file, at)| {
        let (_, at) = number_after("between ", at)?;
        let (upper, _) = number_after(" and ", at)?;
        Some((file, upper))
    });
    match read {
        Some((file, upper)) if file > upper => ErrorClass::NewerStorage,
        Some(_) => ErrorClass::UnsupportedStorage,
        None if contains_ci(body, "created with a newer version of DuckDB")
            || contains_ci(body, "created with an newer version of DuckDB") =>
        {
            ErrorClass::NewerStorage
        }
        None => ErrorClass::UnsupportedStorage,
    }
}

/// The cause after `Failure while replaying WAL file`, and its own
/// `<Type> Error:` prefixes. DuckDB writes `"<db>.wal": <cause>`; the
/// seed's shorter form is `: <cause>`. The cause starts after the first
/// `.wal": `, so that a path containing `": ` elsewhere does not move it.
fn replay_failure(rest: &str) -> (Vec<&str>, &str) {
    let cause = find_ci(rest, ".wal\": ")
        .map(|at| &rest[at + ".wal\": ".len()..])
        .or_else(|| find_ci(rest, "\": ").map(|at| &rest[at + "\": ".len()..]))
        .or_else(|| rest.trim_start().strip_prefix(':'))
        .unwrap_or(rest);
    strip_type_prefixes(cause)
}

/// A replay that failed because of the environment, not the log: memory,
/// a full disk, a permission, or a file-system call on a file other than
/// the log (the temporary directory, the database file). The log is
/// intact; setting it aside would throw committed writes away.
fn environment_in_replay(prefixes: &[&str], cause: &str) -> Option<ErrorClass> {
    if let Some(class) = out_of_memory(prefixes, cause) {
        return Some(class);
    }
    if let Some(class) = errno_class_at_start(cause) {
        return Some(class);
    }
    if IO_TEMPLATES.iter().any(|t| starts_with_ci(cause, t)) {
        // A descriptor that is not valid is this process's state, whatever
        // file it was meant for.
        let bad_descriptor = tails_after_quote(cause)
            .last()
            .is_some_and(|tail| starts_with_ci(tail, "Bad file descriptor"));
        if bad_descriptor || !names_the_log(cause) {
            return Some(errno_class(cause).unwrap_or(ErrorClass::Io));
        }
    }
    None
}

/// [`ErrorClass::OutOfMemory`] for a cause that says DuckDB could not get
/// memory (with or without its `Out of Memory Error:` prefix).
fn out_of_memory(prefixes: &[&str], cause: &str) -> Option<ErrorClass> {
    const MEMORY: &[&str] = &[
        "failed to allocate",
        "could not allocate",
        "Allocation failure",
        "std::bad_alloc",
    ];
    let oom = prefixes
        .iter()
        .any(|p| p.eq_ignore_ascii_case("Out of Memory"))
        || MEMORY.iter().any(|t| starts_with_ci(cause, t));
    oom.then_some(ErrorClass::OutOfMemory)
}

/// Whether the file a `<template> "<path>": <system's words>` message names
/// is a write-ahead log. The path ends at the last `": ` (a path may contain
/// one itself), so only its end is read.
fn names_the_log(text: &str) -> bool {
    let Some(end) = text.rfind("\": ") else {
        return false;
    };
    let path = &text[..end];
    [".wal", ".wal.checkpoint", ".wal.recovery"]
        .iter()
        .any(|suffix| path.ends_with(suffix))
}

/// The cause of a WAL replay failure, read from the text after
/// `Failure while replaying WAL file` (split by [`replay_failure`]).
fn wal_replay_cause(prefixes: &[&str], cause: &str) -> WalReplayCause {
    let cause = cut_at_ci(cause, "Stack Trace");
    const CHECKSUM: &[&str] = &["Corrupt WAL file: entry at byte position"];
    const UNDECODABLE: &[&str] = &[
        "Failed to decode",
        "Corrupt WAL file",
        "Corrupt Encrypted WAL file",
        "Failed to read WAL of version",
        "Failed to deserialize",
        "Serialization Error",
    ];
    const EXTENSION: &[&str] = &[
        "Extension \"",
        "Failed to download extension",
        "Failed to load extension",
        "Could not load extension",
        "Extension Autoloading Error",
    ];
    const DDL: &[&str] = &[
        "Calling DatabaseManager::GetDefaultDatabase",
        "ReplayAlter",
        "Type with name",
        "Schema with name",
        "Table with name",
        "View with name",
        "Sequence with name",
        "Index with name",
        "Macro with name",
        "Catalog with name",
        "Function with name",
        "Table Function with name",
        "Referenced column",
        "Entry with name",
    ];
    let starts = |list: &[&str]| list.iter().any(|t| starts_with_ci(cause, t));
    if starts(CHECKSUM) && contains_ci(cause, "does not match stored checksum") {
        return WalReplayCause::ChecksumMismatch;
    }
    if starts(UNDECODABLE) {
        return WalReplayCause::Undecodable;
    }
    if starts(EXTENSION) {
        return WalReplayCause::ExtensionUnavailable;
    }
    if starts(DDL) {
        return WalReplayCause::Ddl;
    }
    let prefix_is = |name: &str| prefixes.iter().any(|p| p.eq_ignore_ascii_case(name));
    if prefix_is("Catalog") || prefix_is("Binder") || prefix_is("Dependency") {
        return WalReplayCause::Ddl;
    }
    if prefix_is("Serialization") {
        return WalReplayCause::Undecodable;
    }
    WalReplayCause::Other
}

/// The pid in DuckDB's `…": Conflicting lock is held in <exe> (PID <n>)`.
///
/// Only the text after the last `": Conflicting lock is held` counts (a path
/// before it may contain anything), and within it the last `(PID <n>)`,
/// because the executable's path comes before the pid unquoted. `PID 0`
/// means DuckDB did not know.
fn holder_pid(rest: &str) -> Option<u32> {
    let holder = tails_after_quote(rest)
        .filter(|tail| {
            starts_with_ci(tail, "Conflicting lock is held")
                || starts_with_ci(tail, "Lock is already held")
        })
        .last()?;
    if starts_with_ci(holder, "Lock is already held") {
        return None;
    }
    let at = rfind_ci(holder, "(PID ")?;
    let digits: String = holder[at + "(PID ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    match digits.parse::<u32>() {
        Ok(0) | Err(_) => None,
        Ok(pid) => Some(pid),
    }
}

/// The class named by the operating-system error text DuckDB appends after a
/// quoted path (`Cannot open file "<path>": Permission denied`). The last
/// such text is the real one: a path can contain `": `, the appended
/// `strerror` text never does.
fn errno_class(body: &str) -> Option<ErrorClass> {
    let tail = tails_after_quote(body).last()?;
    const PERMISSION: &[&str] = &["Permission denied", "Operation not permitted"];
    const FULL: &[&str] = &[
        "No space left on device",
        "Disk quota exceeded",
        "File too large",
    ];
    if PERMISSION.iter().any(|t| starts_with_ci(tail, t)) {
        Some(ErrorClass::PermissionDenied)
    } else if FULL.iter().any(|t| starts_with_ci(tail, t)) {
        Some(ErrorClass::DiskFull)
    } else {
        None
    }
}

/// [`errno_class`] of a text that starts with the system's words
/// (`No space left on device`, `Permission denied`, …).
fn errno_class_at_start(text: &str) -> Option<ErrorClass> {
    errno_class(&format!("\": {text}"))
}

/// Every text that follows a `": ` (the end of a quoted path) in `s`.
fn tails_after_quote(s: &str) -> impl Iterator<Item = &str> {
    s.match_indices("\": ")
        .map(move |(at, m)| &s[at + m.len()..])
}

/// Collapse every run of whitespace (line breaks included) into one space and
/// trim the ends.
fn normalize_whitespace(s: &str) -> Cow<'_, str> {
    let already = !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s
            .char_indices()
            .any(|(i, c)| c.is_whitespace() && (c != ' ' || s[i + 1..].starts_with(' ')));
    if already {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

/// Strip leading `"<Type> Error:"` / `"<Name>Exception:"` prefixes (DuckDB's
/// own, or a client's such as `duckdb.duckdb.IOException:`), returning the
/// type names seen and the rest.
fn strip_type_prefixes(mut s: &str) -> (Vec<&str>, &str) {
    let mut prefixes = Vec::new();
    loop {
        s = s.trim_start();
        let Some(colon) = s.find(':') else { break };
        let head = &s[..colon];
        let plausible = head.len() <= 64
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_' || c == '.');
        if !plausible {
            break;
        }
        let head = head.trim_end();
        let name = if let Some(n) = strip_suffix_ci(head, "Error") {
            n
        } else if let Some(n) = strip_suffix_ci(head, "Exception") {
            n
        } else {
            break;
        };
        // `duckdb.duckdb.IOException` names the type `IO`.
        let name = name.rsplit('.').next().unwrap_or(name).trim();
        prefixes.push(name);
        s = &s[colon + 1..];
    }
    (prefixes, s.trim_start())
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    strip_prefix_ci(s, prefix).is_some()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let start = s.len().checked_sub(suffix.len())?;
    let tail = s.get(start..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &s[..start])
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| starts_with_ci(&haystack[i..], needle))
}

fn rfind_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .char_indices()
        .map(|(i, _)| i)
        .rev()
        .find(|&i| starts_with_ci(&haystack[i..], needle))
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    find_ci(haystack, needle).is_some()
}

/// `s` up to the first occurrence of `marker`, or all of it.
fn cut_at_ci<'a>(s: &'a str, marker: &str) -> &'a str {
    find_ci(s, marker).map_or(s, |at| &s[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped_in_any_form() {
        let (p, body) = strip_type_prefixes("INTERNAL Error: Data Corruption Error: x: y");
        assert_eq!(p, ["INTERNAL", "Data Corruption"]);
        assert_eq!(body, "x: y");
        let (p, body) = strip_type_prefixes("duckdb.duckdb.IOException: IO Error: z");
        assert_eq!(p, ["IO", "IO"]);
        assert_eq!(body, "z");
        let (p, body) = strip_type_prefixes("Failure while replaying WAL file: x");
        assert!(p.is_empty());
        assert_eq!(body, "Failure while replaying WAL file: x");
    }

    #[test]
    fn whitespace_is_collapsed() {
        assert_eq!(normalize_whitespace("a  b\n\tc "), "a b c");
        assert!(matches!(normalize_whitespace("a b c"), Cow::Borrowed(_)));
    }

    #[test]
    fn pid_is_the_last_one_named() {
        assert_eq!(
            holder_pid(
                " \"/x (PID 7)/db\": Conflicting lock is held in /bin/(PID 9) (PID 12) by user a"
            ),
            Some(12)
        );
        assert_eq!(
            holder_pid(" \"/db\": Conflicting lock is held in x (PID 0)"),
            None
        );
        assert_eq!(
            holder_pid(" \"/db\": Resource temporarily unavailable"),
            None
        );
        assert_eq!(
            holder_pid(" \"/d\": Conflicting lock is held in x (PID 99999999999)"),
            None
        );
        assert_eq!(
            holder_pid(" \"/a\": Conflicting lock is held in x (PID 5)/db\": Lock is already held in current process"),
            None
        );
    }

    #[test]
    fn case_insensitive_helpers_respect_char_boundaries() {
        assert_eq!(find_ci("ééab", "AB"), Some(4));
        assert_eq!(rfind_ci("ab é ab", "ab"), Some(6));
        assert!(!starts_with_ci("é", "e"));
        assert_eq!(strip_suffix_ci("xé", "error"), None);
    }
}
