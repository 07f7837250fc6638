//! Printing: text for people, JSON for machines, progress on terminals.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::Global;

/// `-q`: no progress on stderr.
pub static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether progress goes to stderr: a terminal, and no `-q`.
fn progress_shown() -> bool {
    std::io::stderr().is_terminal() && !QUIET.load(Ordering::Relaxed)
}

/// Print `value` as JSON (one line) with --json, else the text `human`
/// makes.
pub fn emit<T: Serialize>(global: &Global, value: &T, human: impl FnOnce(&T) -> String) {
    if global.json() {
        match serde_json::to_string(value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: printing JSON: {e}"),
        }
    } else {
        print!("{}", human(value));
    }
}

/// `1.5 MiB`, `536 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How long ago `t` was, in words: `3h 12m`.
pub fn age(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    let rounded = if secs >= 3600 { secs - secs % 60 } else { secs };
    humantime::format_duration(Duration::from_secs(rounded)).to_string()
}

/// Ask `question` on the terminal; false when stdin is not one.
pub fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// A line of progress on stderr, when it is a terminal.
pub fn note(line: &str) {
    if progress_shown() {
        eprintln!("{line}");
    }
}

/// A progress callback for copies: a percentage on stderr when it is a
/// terminal, nothing otherwise.
pub fn copy_progress(label: &str) -> impl FnMut(sysdb_snapshot::Step) + '_ {
    let terminal = progress_shown();
    move |step| {
        if let (true, sysdb_snapshot::Step::Copying { done, total }) = (terminal, step) {
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\r{label}: {percent:>3}% of {}", bytes(total));
            if done == total {
                eprintln!();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(536), "536 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(9 * 1024 * 1024), "9.0 MiB");
    }
}
