//! Printing: text for people, JSON for machines, progress on terminals.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sysdb::{Progress, ProgressHook, Task, Unit};

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
    if global.json {
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

/// The progress bars, drawn on stderr when it is a terminal and there is
/// no `-q`, hidden otherwise.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| {
        if progress_shown() {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    })
}

/// A line of progress on stderr, when it is a terminal.
pub fn note(line: &str) {
    if progress_shown() {
        bars().suspend(|| eprintln!("{line}"));
    }
}

/// Where the logs go: stderr, with the progress bars cleared while a line
/// is written and drawn again after.
#[derive(Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// The progress of sysdb's long tasks as bars on stderr (a terminal, no
/// `-q`), one per task, each leaving a line that says what it did and how
/// long it took.
pub fn progress_bars() -> ProgressHook {
    let running: Mutex<Vec<(Task, ProgressBar, Instant)>> = Mutex::new(Vec::new());
    ProgressHook::new(move |progress| {
        let Ok(mut running) = running.lock() else {
            return;
        };
        match progress {
            Progress::Began { task, total } => {
                // Drawn only once it is in the bars (hidden under `-q`),
                // so its ticks start after.
                let bar = bars().add(bar_for(task, total));
                bar.enable_steady_tick(Duration::from_millis(120));
                running.push((task, bar, Instant::now()));
            }
            Progress::Advanced { task, done } => {
                if let Some((_, bar, _)) = running.iter().find(|(t, ..)| *t == task) {
                    bar.set_position(done);
                }
            }
            Progress::Ended { task } => {
                if let Some(i) = running.iter().position(|(t, ..)| *t == task) {
                    let (_, bar, started) = running.remove(i);
                    let done = bar.position();
                    bar.finish_and_clear();
                    bars().remove(&bar);
                    let what = match task.unit() {
                        Unit::Bytes => format!("{} ", bytes(done)),
                        Unit::Tables => format!("{done} table(s) "),
                        Unit::Steps => format!("{done} step(s) "),
                        Unit::Replays => format!("{done} replay(s) "),
                        _ => String::new(),
                    };
                    let took = humantime::format_duration(Duration::from_millis(
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    ));
                    let _ = bars().println(format!("{:>10} {what}in {took}", task.name()));
                }
            }
            _ => {}
        }
    })
}

/// A bar for `task`: bytes with their rate, a count, or a spinner where
/// nothing is counted; it draws nowhere until it joins the bars.
fn bar_for(task: Task, total: Option<u64>) -> ProgressBar {
    let (template, bar) = match (task.unit(), total) {
        (Unit::Bytes, Some(total)) => (
            "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden()),
        ),
        (Unit::None, _) | (_, None) => (
            "{prefix:>10} {spinner} {elapsed}",
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
        ),
        (unit, Some(total)) => {
            let counted = match unit {
                Unit::Tables => "tables",
                Unit::Steps => "steps",
                _ => "replays at most",
            };
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
                .with_message(counted);
            ("{prefix:>10} [{bar:30}] {pos}/{len} {msg} {elapsed}", bar)
        }
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.with_style(style).with_prefix(task.name())
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
