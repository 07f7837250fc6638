//! Connect, and recover from a write-ahead log that cannot be replayed:
//! this carries out what plan.rs decides.
//!
//! A recovery tries its sources in order of what they lose (see
//! [`Source`]). The log is replayed only on copies in a scratch folder
//! beside the database (`system.duckdb.replay/`), so the original database,
//! log and sidecars are set aside byte-identical whichever source wins.

use std::time::{Duration, Instant, SystemTime};

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::Connection;
use serde::Serialize;
use sysdb_errclass::{classify_error, ErrorClass, WalReplayCause};
use sysdb_schema::{ApplyOptions, Ladder};
use sysdb_snapshot::{install, quarantine, remove_durably, restore_with, ClosedDb};

use crate::marker::Recovering;
use crate::plan::file_unreadable;
use crate::plan::{self, Found, LadderOn, OnFailure, ReplayFailed, Search, Source, Start};
use crate::progress::{file_bytes, ProgressHook, Task};
use crate::replay::{Attempt, Replayer, Scratch, Types};
use crate::report::{
    FailedCommit, LogKept, MetError, MovedFile, ProbeOutcome, Reapplied, RestoreSource, Restored,
};
use crate::wal::{Cuts, Tail, WalLayout};
use crate::{probe, Connector, Error, Failure, OpenLock, OpenOptions, OpenReport, Paths, Result};

pub(crate) fn connect_or_recover(
    paths: &Paths,
    ladder: &Ladder,
    options: &OpenOptions,
    connector: &dyn Connector,
    found: &Found,
    report: &mut OpenReport,
) -> Result<Connection> {
    let recovery = Recovery {
        paths,
        ladder,
        options,
        connector,
        found,
        // No connection is open: none has been made yet.
        closed: ClosedDb::assume_closed(paths.files().clone()),
    };
    if plan::scratch_left_over(found) {
        tracing::debug!(scratch = %Scratch::at(paths).dir(), "removing a scratch folder left over");
        Scratch::at(paths).remove();
    }
    match plan::start(found) {
        Start::Vanished(evidence) => {
            return Err(Error::Vanished {
                path: paths.db().to_owned(),
                evidence,
            })
        }
        Start::FinishRecovery => return recovery.finish_killed(report),
        Start::Create => recovery.create(report)?,
        Start::Connect => {}
    }
    if found.recovering.is_some() {
        tracing::warn!("an earlier recovery was killed before it finished; finishing it");
    }
    match recovery.first_connect(report)? {
        Ok(conn) if found.recovering.is_some() => recovery.finish(conn),
        Ok(conn) => Ok(conn),
        Err((class, wal_error)) => recovery.recover(class, wal_error, report),
    }
}

/// The failure came from a probe child that a signal killed.
fn probed_abort(class: ErrorClass) -> bool {
    class
        == ErrorClass::WalReplay {
            cause: WalReplayCause::ProcessAborted,
        }
}

/// What the sources before the last checkpoint gave.
struct Chosen {
    /// The database replayed on a copy, to restore; `None` for the
    /// database file at its last checkpoint (or the snapshot).
    built: Option<Utf8PathBuf>,
    /// How much of the log that holds, as the number of cuts of
    /// [`Log::cuts`] (commits, or bytes where the framing does not read):
    /// `None` where it holds the log whole and the log has no cuts.
    prefix: Option<usize>,
    /// What of the log that keeps and loses.
    kept: Option<LogKept>,
}

/// What the replays of copies showed so far.
#[derive(Default)]
struct Tries {
    /// Replays of copies tried.
    replays: u32,
    /// The first commit known not to replay.
    failed: Option<FailedCommit>,
    /// The class of the whole log's failure to replay, where it was tried.
    whole: Option<ErrorClass>,
}

/// What one source of [`Recovery::replay_sources`] leads to.
enum Next {
    /// This: restore it.
    Chosen(Box<Chosen>),
    /// Try the next source.
    Source,
    /// No source that replays the log can work: go on to the database at
    /// its last checkpoint.
    Stop,
}

/// What the ladder does on a state a recovery may restore.
enum Fit {
    /// The service can start on it (see [`LadderOn::Starts`]).
    Starts,
    /// This step fails on it.
    StepFails(sysdb_schema::Error),
}

/// The write-ahead log, as the recovery read it: its framing read as a
/// stream, never the whole log in memory.
struct Log {
    /// Where it is.
    path: Utf8PathBuf,
    /// Its size, if it is there and opens.
    size: Option<u64>,
    /// Its framing, if that reads.
    layout: Option<WalLayout>,
}

impl Log {
    fn read(paths: &Paths) -> Self {
        let path = paths.wal();
        let Ok(file) = fs_err::File::open(&path) else {
            return Self {
                path,
                size: None,
                layout: None,
            };
        };
        let size = file.metadata().map(|m| m.len()).ok();
        let layout = size.and_then(|len| match WalLayout::read(file, len) {
            Ok(layout) => layout,
            Err(e) => {
                tracing::warn!(error = %e, "the write-ahead log's framing could not be read");
                None
            }
        });
        Self { path, size, layout }
    }

    fn len(&self) -> u64 {
        self.size.unwrap_or(0)
    }

    /// The first damaged entry after the log's last complete commit, if
    /// the framing shows one.
    fn damaged(&self) -> Option<FailedCommit> {
        self.layout.as_ref().and_then(|l| match &l.tail {
            Tail::Damaged { at, problem } => Some(FailedCommit {
                commit: Some(l.commits.len() as u64 + 1),
                at: *at,
                error: format!(
                    "the entry at byte {at} of the write-ahead log is damaged: {problem}"
                ),
            }),
            _ => None,
        })
    }

    /// Where its prefixes are cut: after each commit where the framing
    /// reads, else after each byte (a log of a newer DuckDB's framing).
    fn cuts(&self) -> Option<Cuts<'_>> {
        match (&self.layout, self.size) {
            (Some(layout), _) => Some(Cuts::Commits(layout, &self.path)),
            (None, Some(len)) => Some(Cuts::Bytes(len)),
            (None, None) => None,
        }
    }

    /// What a restored database that holds `commits` (`bytes`) of it keeps.
    fn kept(
        &self,
        commits: Option<u64>,
        bytes: u64,
        replays: u32,
        failed: Option<FailedCommit>,
    ) -> LogKept {
        LogKept {
            commits: self.layout.as_ref().map(|l| l.commits.len() as u64),
            commits_kept: commits,
            bytes: self.len(),
            bytes_kept: bytes,
            replays,
            first_failed: failed,
            reapplied: None,
            types_held: Vec::new(),
        }
    }
}

/// The steps of one recovery, on the closed files.
struct Recovery<'a> {
    paths: &'a Paths,
    ladder: &'a Ladder,
    options: &'a OpenOptions,
    connector: &'a dyn Connector,
    found: &'a Found,
    closed: ClosedDb,
}

impl Recovery<'_> {
    /// Finish a recovery that was killed after it set the database aside
    /// (or while it set aside the files its replayed copy replaces):
    /// restore what that recovery chose (see [`plan::finish`]).
    fn finish_killed(&self, report: &mut OpenReport) -> Result<Connection> {
        let paths = self.paths;
        let marker = self.found.recovering.as_ref();
        tracing::warn!(started_at = ?marker.map(|m| &m.started_at), "an earlier recovery was killed before it restored the database; finishing it");
        let wal_error = Failure::Text(marker.map_or(String::new(), |m| m.error.clone()));
        let conn = match plan::finish(self.found, paths.dir()) {
            plan::Finish::Snapshot(snapshot) => {
                self.restore_snapshot(&snapshot, &wal_error.to_string(), report)?
            }
            plan::Finish::Replayed {
                built,
                set_aside_first,
            } => {
                if set_aside_first {
                    self.set_aside(report)?;
                }
                let from = newest_quarantined_db(paths)?.unwrap_or_else(|| built.clone());
                self.restore_replayed(&built, &from, None, report)?
            }
            plan::Finish::NewestSetAside => {
                let newest = newest_quarantined_db(paths)?;
                self.restore(newest.as_deref(), &wal_error, None, report)?
            }
        };
        self.finish(conn)
    }

    /// The first connect (in the probe's child first, where the options ask
    /// and a log waits): the connection, or the failure's class and error.
    fn first_connect(
        &self,
        report: &mut OpenReport,
    ) -> Result<std::result::Result<Connection, (ErrorClass, Failure)>> {
        let paths = self.paths;
        if let Some(probe) = self.options.probe.as_ref().filter(|_| self.found.wal) {
            let phase = Instant::now();
            let outcome = probe::run(probe, paths.db())?;
            report.phase("probe", phase);
            report.probe = Some(outcome.clone());
            if let ProbeOutcome::Killed { signal } = outcome {
                return Ok(Err((
                    ErrorClass::WalReplay {
                        cause: WalReplayCause::ProcessAborted,
                    },
                    Failure::Probe(format!(
                        "the first open of {} killed the probe process {} (signal {signal}) while it replayed the write-ahead log",
                        paths.db(),
                        probe.program.display()
                    )),
                )));
            }
        }
        let phase = Instant::now();
        let first = self.connector.connect(paths.db());
        report.phase("connect", phase);
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::open::connected");
        Ok(first.map_err(|e| (classify_error(&e), Failure::DuckDb(e))))
    }

    /// The first connect failed with `wal_error` of `class`: refuse, or
    /// recover as [`plan::on_failure`] decides: choose on copies, write the
    /// recovery marker, set the files aside, restore, connect.
    fn recover(
        &self,
        class: ErrorClass,
        wal_error: Failure,
        report: &mut OpenReport,
    ) -> Result<Connection> {
        let paths = self.paths;
        report.error = Some(MetError::new(class, &wal_error));
        let sources = match plan::on_failure(self.found, class) {
            OnFailure::Refuse => {
                tracing::warn!(db = %paths.db(), class = class.as_str(), error = %wal_error, "open failed; not recoverable automatically");
                return Err(Error::Open {
                    path: paths.db().to_owned(),
                    class,
                    cause: Box::new(wal_error),
                });
            }
            OnFailure::Recover(sources) => sources,
        };
        tracing::warn!(db = %paths.db(), %class, error = %wal_error, "write-ahead log replay failed; recovering");

        if sources == [Source::Snapshot] {
            // The file is the copy the killed recovery restored, and it does
            // not read: go on to the snapshot, as that recovery would have.
            tracing::warn!(error = %wal_error, "the database file the earlier recovery restored is unreadable");
            strict_check(paths, self.ladder, self.options, self.found, self.connector)?;
            self.set_aside(report)?;
            let conn = self.restore(None, &wal_error, None, report)?;
            return self.finish(conn);
        }

        let replayer = match (&self.options.probe, probed_abort(class)) {
            // The plain open kills the process that tries it: so may a replay
            // of a copy, which then runs in the probe's child too.
            (Some(probe), true) => Replayer::Child(probe),
            _ => Replayer::InProcess(self.connector),
        };
        let scratch =
            Scratch::new(paths).map_err(self.replay_error("preparing the scratch folder for"))?;
        let chosen = match self.choose(sources, &replayer, &scratch, &wal_error, report) {
            Ok(chosen) => chosen,
            Err(e) => {
                scratch.remove();
                return Err(e);
            }
        };

        let marker = Recovering {
            class: class.as_str().to_owned(),
            error: wal_error.to_string(),
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            pid: std::process::id(),
            replayed: chosen
                .built
                .as_ref()
                .and_then(|b| b.strip_prefix(paths.dir()).ok())
                .map(Utf8Path::to_owned),
            snapshot: None,
        };
        marker.write(paths)?;
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::recover::marked");
        let set = self.set_aside(report)?;
        report.wal_bytes_set_aside = set
            .moved
            .iter()
            .filter(|m| set.database() != Some(*m))
            .map(|m| m.bytes)
            .sum();
        let conn = match &chosen.built {
            Some(built) => {
                let from = set
                    .database()
                    .map_or_else(|| built.clone(), |m| m.to.clone());
                self.restore_replayed(built, &from, chosen.kept.clone(), report)?
            }
            None => {
                let db = set.database().map(|m| m.to.clone());
                self.restore(db.as_deref(), &wal_error, chosen.kept, report)?
            }
        };
        let conn = self.finish(conn)?;
        scratch.remove();
        Ok(conn)
    }

    /// Create the new database at the options' storage version, in the
    /// scratch folder, and rename it into place: a kill leaves either no
    /// database or a whole one.
    fn create(&self, report: &mut OpenReport) -> Result<()> {
        let paths = self.paths;
        let phase = Instant::now();
        let version = &self.options.storage_version;
        let io_error = |doing| {
            move |source| Error::Replay {
                path: paths.db().to_owned(),
                doing,
                cause: source,
            }
        };
        let scratch = Scratch::new(paths).map_err(io_error("preparing the scratch folder for"))?;
        let new = scratch
            .fresh("new")
            .map_err(io_error("preparing the scratch folder for"))?;
        crate::connect::create(self.connector, &new, version).map_err(|source| Error::Create {
            path: paths.db().to_owned(),
            storage_version: version.clone(),
            cause: Box::new(source),
        })?;
        fs_err::File::open(&new)
            .and_then(|f| f.sync_all())
            .map_err(io_error("syncing the new database"))?;
        install(&self.closed, &new).map_err(self.files_error("creating"))?;
        scratch.remove();
        tracing::info!(db = %paths.db(), storage_version = %version, "created the database");
        report.created = Some(version.clone());
        report.phase("create", phase);
        Ok(())
    }

    fn files_error(&self, doing: &'static str) -> impl FnOnce(sysdb_snapshot::Error) -> Error {
        Error::moving(doing, self.paths.db())
    }

    /// Choose, on copies and before any file is moved, what to restore:
    /// of the states the log replays to ([`Self::replay_sources`]), the one
    /// that loses least on which the ladder completes
    /// ([`Self::fit_ladder`]). A failure of the environment stops here,
    /// with nothing moved.
    fn choose(
        &self,
        sources: &[Source],
        replayer: &Replayer<'_>,
        scratch: &Scratch,
        wal_error: &Failure,
        report: &mut OpenReport,
    ) -> Result<Chosen> {
        let log = Log::read(self.paths);
        let chosen = self.replay_sources(sources, replayer, scratch, wal_error, &log, report)?;
        let mut chosen = self.fit_ladder(chosen, replayer, scratch, &log, report)?;
        if let (Some(kept), Some(_)) = (chosen.kept.as_mut(), &chosen.built) {
            if let Replayer::InProcess(connector) = replayer {
                let types = scratch
                    .types(self.paths)
                    .map_err(self.replay_error("reading the types of"))?;
                kept.types_held = crate::replay::user_types(*connector, &types).unwrap_or_default();
            }
        }
        Ok(chosen)
    }

    /// Where the log keeping `k` of `cuts` is cut.
    fn cut(&self, cuts: Cuts<'_>, k: usize) -> Result<u64> {
        cuts.cut(k)
            .map_err(self.replay_error("reading the write-ahead log's framing beside"))
    }

    fn replay_error(&self, doing: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        let path = self.paths.db().to_owned();
        move |source| Error::Replay {
            path,
            doing,
            cause: source,
        }
    }

    /// Try the sources that replay the log, on copies, before any file is
    /// moved: the whole log, then the longest prefix that replays. A
    /// failure of the environment stops here, with nothing moved.
    fn replay_sources(
        &self,
        sources: &[Source],
        replayer: &Replayer<'_>,
        scratch: &Scratch,
        wal_error: &Failure,
        log: &Log,
        report: &mut OpenReport,
    ) -> Result<Chosen> {
        let mut tries = Tries::default();
        // DuckDB refuses a log with a damaged entry before replaying any of
        // it, through ATTACH too: its prefixes are what may replay.
        let damaged = log.damaged();
        for source in sources {
            let next = match source {
                Source::Replay if damaged.is_none() => {
                    self.replay_whole(replayer, scratch, log, &mut tries, report)?
                }
                Source::Replay => {
                    tries.failed = damaged.clone();
                    Next::Source
                }
                Source::Salvage => self.salvage(
                    replayer,
                    scratch,
                    log,
                    damaged.is_none(),
                    &mut tries,
                    report,
                )?,
                Source::LastCheckpoint | Source::Snapshot => Next::Stop,
            };
            match next {
                Next::Chosen(chosen) => return Ok(*chosen),
                Next::Stop => break,
                Next::Source => {}
            }
        }
        let failed = tries.failed.or_else(|| {
            Some(FailedCommit {
                commit: None,
                at: 0,
                error: wal_error.to_string(),
            })
        });
        let wal = log.size;
        Ok(Chosen {
            built: None,
            prefix: wal.map(|_| 0),
            kept: wal.map(|_| log.kept(Some(0), 0, tries.replays, failed)),
        })
    }

    /// The whole log, replayed on a copy (read-only on a hard link first,
    /// where the database is large beside its log).
    fn replay_whole(
        &self,
        replayer: &Replayer<'_>,
        scratch: &Scratch,
        log: &Log,
        tries: &mut Tries,
        report: &mut OpenReport,
    ) -> Result<Next> {
        let paths = self.paths;
        let phase = Instant::now();
        tracing::info!(db = %paths.db(), "replaying the whole write-ahead log on a copy, through ATTACH");
        tries.replays += 1;
        let running = self.options.progress.begin(Task::Replay, None);
        let db_bytes = fs_err::metadata(paths.db()).map_or(0, |m| m.len());
        let tried = if plan::replay_read_only_first(db_bytes, log.len()) {
            replayer
                .try_whole(paths, scratch)
                .map_err(self.replay_error("replaying a linked copy of"))?
        } else {
            None
        };
        let attempt = match tried {
            Some(failed @ Attempt::Failed { .. }) => failed,
            replayed_or_not_tried => {
                if replayed_or_not_tried.is_some() {
                    tries.replays += 1;
                }
                replayer
                    .build(paths, scratch, None)
                    .map_err(self.replay_error("replaying a copy of"))?
            }
        };
        drop(running);
        report.phase("replay", phase);
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::recover::replayed");
        match attempt {
            Attempt::Replayed(built) => {
                tracing::info!(copy = %built, "the whole write-ahead log replays through ATTACH");
                let commits = log.layout.as_ref().map(|l| l.commits.len() as u64);
                Ok(Next::Chosen(Box::new(Chosen {
                    built: Some(built),
                    prefix: log.cuts().map(|c| c.count()),
                    kept: Some(log.kept(commits, log.len(), tries.replays, None)),
                })))
            }
            Attempt::Failed { class, error } => {
                match plan::replay_failed(class) {
                    ReplayFailed::Environment => return Err(self.refused(class, &error, scratch)),
                    ReplayFailed::File => {
                        tracing::warn!(%error, "the database file does not read; no replay of its log can");
                        return Ok(Next::Stop);
                    }
                    ReplayFailed::Log => {}
                }
                tracing::warn!(%error, "the whole write-ahead log does not replay through ATTACH either");
                tries.whole = Some(class);
                tries.failed = Some(FailedCommit {
                    commit: None,
                    at: log.layout.as_ref().map_or(0, |l| l.header_end),
                    error: scratch.as_original(&error.to_string(), paths),
                });
                Ok(Next::Source)
            }
        }
    }

    /// The longest prefix of the log that replays, found by read-only
    /// replays of cut copies, then built on a copy. `whole_failed`: the
    /// whole log is known not to replay.
    fn salvage(
        &self,
        replayer: &Replayer<'_>,
        scratch: &Scratch,
        log: &Log,
        whole_failed: bool,
        tries: &mut Tries,
        report: &mut OpenReport,
    ) -> Result<Next> {
        let paths = self.paths;
        tracing::info!(db = %paths.db(), "searching the longest prefix of the write-ahead log that replays, on copies");
        // By commits where the framing reads; else by bytes (a log of a
        // newer DuckDB's framing), ⌈log2(bytes)⌉ replays.
        let Some(cuts) = log.cuts() else {
            return Ok(Next::Source);
        };
        if log.layout.is_none() {
            tracing::warn!(
                "the write-ahead log's framing cannot be read; searching its prefixes by bytes"
            );
        }
        let phase = Instant::now();
        let mut search = Search::new(cuts.count(), whole_failed);
        // The search's replays, and the build of the prefix found.
        let at_most = u64::from(plan::replay_budget(cuts.count())) + 1;
        let running = self.options.progress.begin(Task::Salvage, Some(at_most));
        let mut salvage_replays = 0;
        // The first guess, where it is likely the answer and a copy of the
        // database is cheap beside a replay, is built on a copy at once:
        // the usual crash is then salvaged in one replay, not two.
        let db_bytes = fs_err::metadata(paths.db()).map_or(0, |m| m.len());
        let mut built = None;
        while let Some(k) = search.next() {
            tries.replays += 1;
            salvage_replays += 1;
            running.advance(salvage_replays);
            let cut = self.cut(cuts, k)?;
            let mut build =
                whole_failed && search.guessing(k) && !plan::replay_read_only_first(db_bytes, cut);
            let mut attempt = if build {
                replayer.build(paths, scratch, Some(cut))
            } else {
                replayer.try_prefix(paths, scratch, cut)
            }
            .map_err(self.replay_error("replaying a cut copy of"))?;
            if let Attempt::Failed { class, .. } = &attempt {
                let class = *class;
                if build
                    && plan::replay_failed(class) == ReplayFailed::Log
                    && !plan::build_failed_in_replay(class)
                {
                    // The build failed after its replay: whether the
                    // prefix replays is asked read-only (what replays so
                    // is built again at the end of the search).
                    tries.replays += 1;
                    build = false;
                    attempt = replayer
                        .try_prefix(paths, scratch, cut)
                        .map_err(self.replay_error("replaying a cut copy of"))?;
                }
            }
            #[cfg(feature = "failpoints")]
            fail::fail_point!("sysdb::recover::probed");
            match attempt {
                Attempt::Replayed(copy) => {
                    if build {
                        built = Some((k, copy));
                    }
                    search.record(k, true);
                }
                Attempt::Failed { class, error } => {
                    match plan::replay_failed(class) {
                        ReplayFailed::Environment => {
                            return Err(self.refused(class, &error, scratch))
                        }
                        // Only an unreadable database fails the empty
                        // prefix too: give up the search.
                        ReplayFailed::File => search.record(0, false),
                        ReplayFailed::Log => {}
                    }
                    tracing::debug!(k, %error, "this prefix does not replay");
                    search.record(k, false);
                    tries.failed = Some(FailedCommit {
                        commit: cuts.commits(k),
                        at: self.cut(cuts, k - 1)?,
                        error: scratch.as_original(&error.to_string(), paths),
                    });
                }
            }
        }
        let k = search.found();
        let first_failing = cuts.commits(k + 1);
        if let Some(f) = tries.failed.as_mut().filter(|f| f.commit != first_failing) {
            // Its error came from a longer prefix (or the whole log); the
            // search showed where it starts.
            f.commit = first_failing;
            f.at = self.cut(cuts, k)?;
        }
        let first_type_commit = log.layout.as_ref().and_then(|l| l.first_type_commit);
        if plan::retry_with_prefix_types(tries.whole, k, first_type_commit) {
            if let Some(whole) =
                self.retry_with_prefix_types(replayer, scratch, log, &cuts, k, tries)?
            {
                drop(running);
                report.phase("salvage", phase);
                return Ok(whole);
            }
            // That replay was built where the first guess was.
            built = None;
        }
        if k == 0 {
            report.phase("salvage", phase);
            tracing::warn!("no commit of the write-ahead log replays");
            return Ok(Next::Chosen(Box::new(Chosen {
                built: None,
                prefix: Some(0),
                kept: Some(log.kept(cuts.commits(0), 0, tries.replays, tries.failed.clone())),
            })));
        }
        let attempt = match built.filter(|(b, _)| *b == k) {
            Some((_, copy)) => Attempt::Replayed(copy),
            None => {
                tries.replays += 1;
                running.advance(salvage_replays + 1);
                replayer
                    .build(paths, scratch, Some(self.cut(cuts, k)?))
                    .map_err(self.replay_error("replaying a cut copy of"))?
            }
        };
        drop(running);
        report.phase("salvage", phase);
        match attempt {
            Attempt::Replayed(built) => {
                tracing::warn!(
                    kept = k,
                    of = cuts.count(),
                    "salvaged the commits before the first that does not replay"
                );
                Ok(Next::Chosen(Box::new(Chosen {
                    built: Some(built),
                    prefix: Some(k),
                    kept: Some(log.kept(
                        cuts.commits(k),
                        self.cut(cuts, k)?,
                        tries.replays,
                        tries.failed.clone(),
                    )),
                })))
            }
            Attempt::Failed { class, error } => {
                if plan::replay_failed(class) == ReplayFailed::Environment {
                    return Err(self.refused(class, &error, scratch));
                }
                tracing::warn!(%error, "the salvaged prefix replayed read-only but not on the copy");
                Ok(Next::Source)
            }
        }
    }

    /// The whole log, built on a copy from a DuckDB that holds the types
    /// of the database with its first `k` commits (which replay, and one of
    /// which creates a type): a cast to that type in a later commit binds
    /// only so. `None` where it still does not replay.
    fn retry_with_prefix_types(
        &self,
        replayer: &Replayer<'_>,
        scratch: &Scratch,
        log: &Log,
        cuts: &Cuts<'_>,
        k: usize,
        tries: &mut Tries,
    ) -> Result<Option<Next>> {
        let paths = self.paths;
        tracing::info!(
            kept = k,
            "replaying the whole write-ahead log again, holding the types its first commits create"
        );
        tries.replays += 1;
        let types = scratch
            .prefix_types(paths, self.cut(*cuts, k)?)
            .map_err(self.replay_error("linking, with a prefix of its log,"))?;
        let attempt = replayer
            .build_with(paths, scratch, None, Types::Prefix(paths, scratch, &types))
            .map_err(self.replay_error("replaying a copy of"))?;
        match attempt {
            Attempt::Replayed(built) => {
                tracing::info!(copy = %built, "the whole write-ahead log replays through ATTACH with the types its first commits create");
                let commits = log.layout.as_ref().map(|l| l.commits.len() as u64);
                tries.failed = None;
                Ok(Some(Next::Chosen(Box::new(Chosen {
                    built: Some(built),
                    prefix: Some(cuts.count()),
                    kept: Some(log.kept(commits, log.len(), tries.replays, None)),
                }))))
            }
            Attempt::Failed { class, error } => {
                if plan::replay_failed(class) == ReplayFailed::Environment {
                    return Err(self.refused(class, &error, scratch));
                }
                tracing::debug!(%error, "the whole log does not replay with those types either");
                Ok(None)
            }
        }
    }

    /// Keep `chosen` if the ladder completes on it; else, where the ladder
    /// fails on it (the log ends with a migration committed without its
    /// version row), the longest shorter prefix of the log on which the
    /// ladder completes, setting aside only commits after the last that
    /// writes data (a torn migration's catalog changes, which the ladder
    /// makes again), down to the database at its last checkpoint where
    /// the log writes no data. Where the ladder fails on all of them: refused, with
    /// nothing moved. Every state tried is a prefix of the log, so what
    /// is kept is always a prefix of the committed history.
    fn fit_ladder(
        &self,
        chosen: Chosen,
        replayer: &Replayer<'_>,
        scratch: &Scratch,
        log: &Log,
        report: &mut OpenReport,
    ) -> Result<Chosen> {
        let paths = self.paths;
        let source = match &chosen.built {
            Some(built) => built.clone(),
            None => scratch
                .types(paths)
                .map_err(self.replay_error("linking the database file of"))?,
        };
        let step = match self.ladder_on(&source, scratch)? {
            Fit::Starts => return Ok(chosen),
            Fit::StepFails(step) => step,
        };
        tracing::warn!(error = %step, "the migration ladder fails on the state the log replays to; trying shorter prefixes of the log");
        let (Some(cuts), Some(top)) = (log.cuts(), chosen.prefix.filter(|k| *k > 0)) else {
            return Err(Error::LadderFails {
                path: paths.db().to_owned(),
                cause: Box::new(step),
            });
        };
        // Only commits after the last that writes data may be set aside.
        let floor = plan::ladder_floor(log.layout.as_ref().map(|l| l.last_data_commit), top);
        if floor >= top {
            return Err(Error::LadderFails {
                path: paths.db().to_owned(),
                cause: Box::new(step),
            });
        }
        let phase = Instant::now();
        let mut replays = chosen.kept.as_ref().map_or(0, |k| k.replays);
        let mut search = Search::below_from(floor, top);
        let at_most = u64::from(plan::replay_budget(top)) + 1;
        let running = self.options.progress.begin(Task::Salvage, Some(at_most));
        let mut tries = 0;
        // The prefix the scratch folder's `build/` holds, if it fits.
        let mut in_build = None;
        while let Some(k) = search.next() {
            replays += 1;
            tries += 1;
            running.advance(tries);
            let attempt = replayer
                .build(paths, scratch, Some(self.cut(cuts, k)?))
                .map_err(self.replay_error("replaying a cut copy of"))?;
            in_build = None;
            let fits = match attempt {
                Attempt::Replayed(built) => match self.ladder_on(&built, scratch)? {
                    Fit::Starts => {
                        in_build = Some((k, built));
                        true
                    }
                    Fit::StepFails(e) => {
                        tracing::debug!(k, error = %e, "the ladder fails on this prefix");
                        false
                    }
                },
                Attempt::Failed { class, error } => {
                    if plan::replay_failed(class) == ReplayFailed::Environment {
                        return Err(self.refused(class, &error, scratch));
                    }
                    tracing::debug!(k, %error, "this prefix does not replay");
                    false
                }
            };
            search.record(k, fits);
        }
        let k = search.found();
        let reapplied = Reapplied {
            commits: cuts.commits(top).zip(cuts.commits(k)).map(|(a, b)| a - b),
            at: self.cut(cuts, k)?,
            error: step.to_string(),
        };
        let built = match in_build {
            Some((found, built)) if found == k => Some(built),
            _ if k == 0 => None,
            _ => {
                replays += 1;
                match replayer
                    .build(paths, scratch, Some(self.cut(cuts, k)?))
                    .map_err(self.replay_error("replaying a cut copy of"))?
                {
                    // The floor is taken to do without a try: check it now.
                    Attempt::Replayed(built) if k == floor => {
                        match self.ladder_on(&built, scratch)? {
                            Fit::Starts => Some(built),
                            Fit::StepFails(_) => {
                                return Err(Error::LadderFails {
                                    path: paths.db().to_owned(),
                                    cause: Box::new(step),
                                })
                            }
                        }
                    }
                    Attempt::Replayed(built) => Some(built),
                    Attempt::Failed { class, error } => {
                        return Err(self.refused(class, &error, scratch))
                    }
                }
            }
        };
        drop(running);
        report.phase("fit-ladder", phase);
        if built.is_none() {
            let at_checkpoint = scratch
                .types(paths)
                .map_err(self.replay_error("linking the database file of"))?;
            if let Fit::StepFails(_) = self.ladder_on(&at_checkpoint, scratch)? {
                return Err(Error::LadderFails {
                    path: paths.db().to_owned(),
                    cause: Box::new(step),
                });
            }
        }
        tracing::warn!(kept = k, of = top, "keeping the longest prefix of the log on which the migration ladder completes; the ladder applies the torn step again");
        let first_failed = chosen.kept.and_then(|k| k.first_failed);
        let mut kept = log.kept(cuts.commits(k), self.cut(cuts, k)?, replays, first_failed);
        kept.reapplied = Some(reapplied);
        Ok(Chosen {
            built,
            prefix: Some(k),
            kept: Some(kept),
        })
    }

    /// Whether the ladder completes on `db` (a database with no log, in
    /// the scratch folder or a link of the database file): read-only
    /// first, where nothing pending needs no copy; else the ladder runs on
    /// a copy in `ladder/`, removed after. The environment's failure is
    /// the recovery's refusal.
    fn ladder_on(&self, db: &Utf8Path, scratch: &Scratch) -> Result<Fit> {
        let options = ApplyOptions {
            target: None,
            accept_drift: self.options.accept_drift,
        };
        let refuse = |e: duckdb::Error| {
            let class = classify_error(&e);
            if class.is_environment() {
                Err(self.refused(class, &Failure::DuckDb(e), scratch))
            } else {
                // A file that does not open is no matter of the ladder: the
                // restore finds it so and goes on as it would anyway.
                Ok(Fit::Starts)
            }
        };
        match self.connector.connect_read_only(db) {
            Ok(conn) => {
                if self
                    .ladder
                    .plan(&conn, &options)
                    .is_ok_and(|p| p.is_empty())
                {
                    return Ok(Fit::Starts);
                }
            }
            Err(e) => return refuse(e),
        }
        let copy = scratch
            .fresh("ladder")
            .map_err(self.replay_error("preparing the scratch folder for"))?;
        fs_err::copy(db, &copy)
            .map_err(self.replay_error("copying, to run the ladder on, a replayed copy of"))?;
        let conn = match self.connector.connect(&copy) {
            Ok(conn) => conn,
            Err(e) => return refuse(e),
        };
        let result = self.ladder.apply(&conn, &options).map(drop);
        drop(conn);
        if let Some(dir) = copy.parent() {
            if let Err(e) = fs_err::remove_dir_all(dir) {
                tracing::warn!(error = %e, "the copy the ladder ran on could not be removed");
            }
        }
        match (plan::ladder_on(&result), result) {
            (LadderOn::StepFails, Err(step)) => Ok(Fit::StepFails(step)),
            (LadderOn::Environment(class), Err(e)) => {
                Err(self.refused(class, &Failure::Text(e.to_string()), scratch))
            }
            _ => Ok(Fit::Starts),
        }
    }

    /// The refusal for a failure of the environment met while replaying a
    /// copy: nothing was moved.
    fn refused(&self, class: ErrorClass, error: &Failure, scratch: &Scratch) -> Error {
        tracing::error!(%error, %class, "a replay of a copy failed for the environment; refusing, nothing moved");
        Error::Open {
            path: self.paths.db().to_owned(),
            class,
            cause: Box::new(Failure::Text(
                scratch.as_original(&error.to_string(), self.paths),
            )),
        }
    }

    /// Set the database and every sidecar aside.
    fn set_aside(&self, report: &mut OpenReport) -> Result<sysdb_snapshot::Quarantined> {
        let phase = Instant::now();
        let set = quarantine(&self.closed).map_err(self.files_error("quarantining"))?;
        report.phase("quarantine", phase);
        report
            .quarantined
            .extend(set.moved.iter().map(MovedFile::from));
        for m in &set.moved {
            tracing::info!(from = %m.from, to = %m.to, bytes = m.bytes, "set aside");
        }
        Ok(set)
    }

    /// Restore the database a replay built on a copy of `from` (the
    /// database set aside, with its log), and connect.
    fn restore_replayed(
        &self,
        built: &Utf8Path,
        from: &Utf8Path,
        kept: Option<LogKept>,
        report: &mut OpenReport,
    ) -> Result<Connection> {
        let paths = self.paths;
        let phase = Instant::now();
        // By rename: once the copy is in place it is no longer in the
        // scratch folder, so a kill after this finds the database in place
        // and connects, instead of replacing it again.
        install(&self.closed, built).map_err(self.files_error("restoring"))?;
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::recover::restored");
        let conn = self
            .connector
            .connect(paths.db())
            .map_err(|reconnect| Error::Reopen {
                path: paths.db().to_owned(),
                reconnect: Box::new(reconnect),
                source: Box::new(Failure::Text("the replayed copy was restored".to_owned())),
            })?;
        report.phase("restore-replayed", phase);
        let salvaged = kept
            .as_ref()
            .is_some_and(|k| k.commits_kept != k.commits || k.first_failed.is_some());
        report.restored = Some(Restored {
            source: if salvaged {
                RestoreSource::Salvaged
            } else {
                RestoreSource::Replayed
            },
            from: from.to_owned(),
            version: version(self.ladder, &conn),
            snapshot_age_secs: None,
            log: kept,
        });
        tracing::info!(from = %built, "restored the database replayed on a copy");
        Ok(conn)
    }

    /// Copy `from` over the database, reporting progress.
    fn copy_back(&self, from: &Utf8Path) -> Result<()> {
        let running = self.options.progress.begin(Task::Restore, file_bytes(from));
        restore_with(&self.closed, from, &mut running.copying())
            .map_err(self.files_error("restoring"))?;
        Ok(())
    }

    /// Restore `db` (the database file set aside, at its last checkpoint),
    /// and only if that is missing or unreadable, the pre-migrate snapshot;
    /// connect to the result. `kept`: what the replays of copies found of
    /// the log, which the database at its last checkpoint keeps none of.
    fn restore(
        &self,
        db: Option<&Utf8Path>,
        wal_error: &Failure,
        kept: Option<LogKept>,
        report: &mut OpenReport,
    ) -> Result<Connection> {
        let paths = self.paths;
        let reopen_error = |reconnect| Error::Reopen {
            path: paths.db().to_owned(),
            reconnect: Box::new(reconnect),
            source: Box::new(Failure::Text(wal_error.to_string())),
        };
        // First the database file at its last checkpoint: it loses nothing
        // that was checkpointed.
        if let Some(db) = db {
            let phase = Instant::now();
            self.copy_back(db)?;
            #[cfg(feature = "failpoints")]
            fail::fail_point!("sysdb::recover::restored");
            let reconnect = self.connector.connect(paths.db());
            report.phase("restore-database", phase);
            match reconnect {
                Ok(conn) => {
                    report.restored = Some(Restored {
                        source: RestoreSource::DatabaseAtLastCheckpoint,
                        from: db.to_owned(),
                        version: version(self.ladder, &conn),
                        snapshot_age_secs: None,
                        log: kept,
                    });
                    tracing::info!(from = %db, "restored the database file at its last checkpoint");
                    return Ok(conn);
                }
                Err(e) if file_unreadable(classify_error(&e)) => {
                    tracing::warn!(error = %e, "the database file at its last checkpoint is unreadable");
                    // The refusal leaves this copy in place: the next open
                    // fails on it the same way instead of starting empty.
                    strict_check(paths, self.ladder, self.options, self.found, self.connector)?;
                    // The copy duplicates what is already in quarantine; set
                    // it aside too rather than delete it.
                    self.set_aside(report)?;
                }
                Err(reconnect) => return Err(reopen_error(reconnect)),
            }
        } else {
            strict_check(paths, self.ladder, self.options, self.found, self.connector)?;
        }

        // Then the pre-migrate snapshot.
        self.restore_snapshot(&paths.snapshot(), &wal_error.to_string(), report)
    }

    /// Restore `snapshot` (a copy: the snapshot stays) and connect; `why`
    /// is the failure the recovery began with.
    fn restore_snapshot(
        &self,
        snapshot: &Utf8Path,
        why: &str,
        report: &mut OpenReport,
    ) -> Result<Connection> {
        let paths = self.paths;
        let snapshot = snapshot.to_owned();
        let age = age(&snapshot);
        let phase = Instant::now();
        self.copy_back(&snapshot)?;
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::recover::restored");
        let reconnect = self.connector.connect(paths.db());
        report.phase("restore-snapshot", phase);
        let conn = reconnect.map_err(|reconnect| Error::Reopen {
            path: paths.db().to_owned(),
            reconnect: Box::new(reconnect),
            source: Box::new(Failure::Text(why.to_owned())),
        })?;
        let version = version(self.ladder, &conn);
        tracing::info!(snapshot = %snapshot, ?age, ?version, "restored the pre-migrate snapshot");
        report.restored = Some(Restored {
            source: RestoreSource::Snapshot,
            from: snapshot,
            version,
            snapshot_age_secs: age.map(|a| a.as_secs()),
            log: None,
        });
        Ok(conn)
    }

    /// The restored database opened: the recovery is over.
    fn finish(&self, conn: Connection) -> Result<Connection> {
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::recover::reconnected");
        remove_durably(&self.paths.recovering()).map_err(Error::moving(
            "removing the recovery marker of",
            self.paths.db(),
        ))?;
        // A scratch folder left by a recovery that was killed.
        Scratch::at(self.paths).remove();
        Ok(conn)
    }
}

/// The database file of the newest quarantine set that holds one.
fn newest_quarantined_db(paths: &Paths) -> Result<Option<Utf8PathBuf>> {
    let sets = sysdb_snapshot::list(paths.files()).map_err(Error::quarantine(paths.db()))?;
    let prefix = paths.files().sibling(".broken.");
    Ok(sets.into_iter().find_map(|set| {
        set.files.into_iter().map(|(path, _)| path).find(|path| {
            path.as_str()
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| !rest.contains(".wal"))
        })
    }))
}

/// Under [`OpenOptions::strict_snapshot`], allow restoring the snapshot
/// only when the intent marker shows a migration in flight and names this
/// very snapshot (same size and checksum).
fn strict_check(
    paths: &Paths,
    ladder: &Ladder,
    options: &OpenOptions,
    found: &Found,
    connector: &dyn Connector,
) -> Result<()> {
    let snapshot = paths.snapshot();
    // The digest is read only where the verdict depends on it.
    let names_snapshot = match found.marker() {
        Some(marker) if options.strict_snapshot => marker.names_snapshot(&snapshot)?,
        _ => false,
    };
    let Err(why) = plan::snapshot_allowed(options.strict_snapshot, &found.marker, names_snapshot)
    else {
        return Ok(());
    };
    let refused = Error::SnapshotRefused {
        path: paths.db().to_owned(),
        age: age(&snapshot).map_or("at an unknown time".to_owned(), |a| {
            format!(
                "{} ago",
                humantime::format_duration(Duration::from_secs(a.as_secs()))
            )
        }),
        version: read_only_version(&snapshot, ladder, connector),
        snapshot,
        why,
    };
    tracing::error!(error = %refused, "refusing to restore the snapshot");
    Err(refused)
}

/// How long ago the file was last written.
fn age(path: &Utf8Path) -> Option<Duration> {
    let modified = fs_err::metadata(path).and_then(|m| m.modified()).ok()?;
    SystemTime::now().duration_since(modified).ok()
}

/// The schema version of an open database, if it can be read.
fn version(ladder: &Ladder, conn: &Connection) -> Option<u32> {
    ladder.status(conn).ok().map(|s| s.current)
}

/// The schema version of a database file, read without writing to it.
fn read_only_version(path: &Utf8Path, ladder: &Ladder, connector: &dyn Connector) -> Option<u32> {
    let conn = connector.connect_read_only(path).ok()?;
    version(ladder, &conn)
}

/// What a recovery by hand restores.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandSource {
    /// The database file at its last checkpoint: the commits in its
    /// write-ahead log are lost (they stay in quarantine).
    LastCheckpoint,
    /// This snapshot, by copy: every write made after it is lost.
    Snapshot(Utf8PathBuf),
}

impl HandSource {
    /// The newest snapshot there is to restore by hand: the pre-migrate
    /// snapshot, else the previous one (left alone where a migration
    /// window lost its database); `None` when there is neither.
    pub fn newest_snapshot(paths: &Paths) -> Option<Utf8PathBuf> {
        [paths.snapshot(), paths.previous_snapshot()]
            .into_iter()
            .find(|s| fs_err::metadata(s).is_ok_and(|m| m.is_file()))
    }

    /// [`Error::Missing`] where the file this source restores is not there
    /// (no database to restore at its last checkpoint, no snapshot):
    /// [`recover`](crate::by_hand::recover) refuses then before it writes
    /// anything, and a caller may ask first, before it takes the lock.
    pub fn require(&self, paths: &Paths) -> Result<()> {
        let (needed, doing) = match self {
            HandSource::LastCheckpoint => (paths.db(), "a recovery by hand at the last checkpoint"),
            HandSource::Snapshot(s) => (s.as_path(), "a recovery by hand from the snapshot"),
        };
        crate::folder::require(needed, doing)
    }
}

/// What a recovery by hand did.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ByHand {
    /// The files set aside, in the order they were moved.
    pub set_aside: Vec<MovedFile>,
    /// What the database was restored from.
    pub restored_from: Utf8PathBuf,
    /// Its size.
    pub restored_bytes: u64,
}

/// Recover by hand, where an open refuses: write the recovery marker, set
/// the database and its sidecars aside, restore `source` by copy, remove
/// the marker. A kill on the way leaves the marker, and the next open
/// finishes the same recovery instead of refusing a folder whose database
/// is gone. A source that is not there (no database to restore at its
/// last checkpoint, no snapshot) is refused with [`Error::Missing`] before
/// the marker is written. `_held` is the proof that this process holds the
/// open lock; it holds no connection to the database.
pub fn recover_by_hand(
    paths: &Paths,
    _held: &OpenLock,
    source: &HandSource,
    progress: &ProgressHook,
) -> Result<ByHand> {
    let moving = |doing| Error::moving(doing, paths.db());
    // Refused before the marker is written: a marker left by a recovery
    // that had nothing to restore would send the next open to an older
    // quarantine set.
    source.require(paths)?;
    let (error, snapshot) = match source {
        HandSource::LastCheckpoint => (
            "recovery by hand: the database file at its last checkpoint".to_owned(),
            None,
        ),
        HandSource::Snapshot(s) => (
            format!("recovery by hand: the snapshot {s}"),
            Some(
                s.strip_prefix(paths.dir())
                    .map_or_else(|_| s.clone(), Utf8Path::to_owned),
            ),
        ),
    };
    let marker = Recovering {
        class: "by-hand".to_owned(),
        error,
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        pid: std::process::id(),
        replayed: None,
        snapshot,
    };
    marker.write(paths)?;
    let closed = ClosedDb::assume_closed(paths.files().clone());
    let set = quarantine(&closed).map_err(moving("quarantining"))?;
    let from = match source {
        HandSource::Snapshot(s) => s.clone(),
        HandSource::LastCheckpoint => {
            set.database()
                .map(|m| m.to.clone())
                .ok_or_else(|| Error::Vanished {
                    path: paths.db().to_owned(),
                    evidence: vec![paths.recovering().to_string()],
                })?
        }
    };
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::recover::by_hand::set_aside");
    let running = progress.begin(Task::Restore, file_bytes(&from));
    let copied =
        restore_with(&closed, &from, &mut running.copying()).map_err(moving("restoring"))?;
    drop(running);
    remove_durably(&paths.recovering()).map_err(moving("removing the recovery marker of"))?;
    Ok(ByHand {
        set_aside: set.moved.iter().map(MovedFile::from).collect(),
        restored_from: from,
        restored_bytes: copied.bytes,
    })
}
