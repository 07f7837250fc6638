//! The `sysdb` binary end to end, on fresh folders and on copies of the
//! fixtures that real crashes left.

use std::process::{Command, Output, Stdio};

use camino::{Utf8Path, Utf8PathBuf};
use sysdb_scenarios::{folder_digest, Manifest, Outcome};

fn sysdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sysdb"))
        .args(args)
        .env_remove("DATA_DIR")
        .env_remove("SYSDB_STORAGE_VERSION")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run sysdb")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("an exit code")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn root() -> Utf8PathBuf {
    sysdb_scenarios::manifest_dir!()
        .parent()
        .and_then(Utf8Path::parent)
        .expect("workspace root")
        .to_owned()
}

fn migrations() -> String {
    root().join("fixtures/migrations").to_string()
}

/// A data folder holding a copy of the fixture's state folder.
fn fixture_copy(scenario: &str, tmp: &Utf8Path) -> (Manifest, Utf8PathBuf) {
    let dir = root().join("fixtures").join(scenario);
    let manifest: Manifest =
        serde_json::from_str(&fs_err::read_to_string(dir.join("manifest.json")).expect("read"))
            .expect("manifest");
    let state = tmp.join("data/state");
    fs_err::create_dir_all(&state).expect("state");
    for f in &manifest.files {
        fs_err::copy(dir.join(f), state.join(f)).expect("copy");
    }
    (manifest, tmp.join("data"))
}

fn scenarios() -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(root().join("fixtures"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest.json").exists())
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = Utf8PathBuf::try_from(tmp.path().to_owned()).expect("utf-8");
    (tmp, path)
}

#[test]
fn every_command_has_help_and_the_exit_codes_are_documented() {
    let out = sysdb(&["--help"]);
    assert_eq!(code(&out), 0);
    let help = text(&out);
    for word in [
        "status",
        "check",
        "migrate",
        "recover",
        "snapshot",
        "quarantine",
        "drill",
        "probe-open",
        "Exit codes",
        "--json",
        "--data-dir",
        "--db",
        "--migrations",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
    for cmd in [
        vec!["status"],
        vec!["check"],
        vec!["migrate"],
        vec!["recover"],
        vec!["snapshot", "take"],
        vec!["snapshot", "verify"],
        vec!["quarantine", "list"],
        vec!["quarantine", "prune"],
        vec!["drill"],
        vec!["probe-open"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = sysdb(&args);
        assert_eq!(code(&out), 0, "{cmd:?} --help");
        assert!(text(&out).contains("Exit codes"), "{cmd:?} --help");
    }
    let out = sysdb(&["status"]);
    assert_eq!(code(&out), 2, "no database named: {}", text(&out));
    assert!(text(&out).contains("--data-dir"), "{}", text(&out));
}

#[test]
fn the_drill_passes_with_a_small_table() {
    let out = sysdb(&["drill", "--rows", "2000"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("drill passed"), "{}", text(&out));

    let (_tmp, dir) = temp();
    let kept = dir.join("drill");
    let out = sysdb(&["drill", "--rows", "500", "--dir", kept.as_str(), "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let value = json(&out);
    assert_eq!(value["ok"], true);
    assert_eq!(
        value["report"]["restored"]["source"],
        "database-at-last-checkpoint"
    );
    assert!(
        value["duckdb_error"]
            .as_str()
            .is_some_and(|e| e.contains("replaying WAL")),
        "{value}"
    );
    assert!(kept.join("state/system.duckdb").exists());
    // A non-empty folder is refused.
    let out = sysdb(&["drill", "--dir", kept.as_str()]);
    assert_eq!(code(&out), 2, "{}", text(&out));
}

/// What `check` must come to on each fixture (the manifest's outcome, in
/// the library's JSON), and its exit code.
fn expected_outcome(manifest: &Manifest) -> (Outcome, i32) {
    // The manifest's memory limit is the library's connector's; the
    // command opens with the machine's memory, where the log replays.
    if manifest.expect.memory_limit.is_some() {
        return (Outcome::Healthy, 0);
    }
    let exit = match &manifest.expect.outcome {
        Outcome::Healthy => 0,
        Outcome::Migrated => 10,
        Outcome::Recovered { .. } => 11,
        Outcome::Refused { .. } => 12,
    };
    (manifest.expect.outcome.clone(), exit)
}

#[test]
fn check_and_status_change_nothing_and_check_agrees_with_migrate_on_every_fixture() {
    let scenarios = scenarios();
    assert!(scenarios.len() >= 12, "{scenarios:?}");
    for scenario in scenarios {
        let (_tmp, tmp) = temp();
        let (manifest, data) = fixture_copy(&scenario, &tmp);
        let state = data.join("state");
        let before = folder_digest(&state);
        let args = ["--data-dir", data.as_str(), "--migrations", &migrations()];

        let status = sysdb(&[&args[..], &["status", "--json"]].concat());
        assert_eq!(code(&status), 0, "{scenario}: {}", text(&status));
        let status = json(&status);
        assert_eq!(status["lock_held"], false, "{scenario}");

        let check = sysdb(&[&args[..], &["check", "--json"]].concat());
        let (outcome, exit) = expected_outcome(&manifest);
        assert_eq!(code(&check), exit, "{scenario}: {}", text(&check));
        let said = json(&check);
        let expected = serde_json::to_value(&outcome).expect("outcome JSON");
        for (key, value) in expected.as_object().expect("an object") {
            assert_eq!(&said[key], value, "{scenario}: {key} in {said:#}");
        }
        let recovered = matches!(outcome, Outcome::Recovered { .. });
        assert_eq!(
            folder_digest(&state),
            before,
            "{scenario}: status or check changed a file"
        );

        let migrate = sysdb(&[&args[..], &["migrate", "--json"]].concat());
        if let Outcome::Refused { why } = &outcome {
            assert_ne!(code(&migrate), 0, "{scenario}: {}", text(&migrate));
            assert_eq!(json(&migrate)["code"], why.as_str(), "{scenario}");
            assert_eq!(json(&migrate)["report"], serde_json::Value::Null);
            assert_eq!(
                folder_digest(&state),
                before,
                "{scenario}: a refusal changed a file"
            );
        } else {
            assert_eq!(code(&migrate), 0, "{scenario}: {}", text(&migrate));
            let report = json(&migrate);
            assert_eq!(
                report["restored"].is_null(),
                !recovered,
                "{scenario}: check and migrate disagree: {report}"
            );
            let again = sysdb(&[&args[..], &["check"]].concat());
            assert_eq!(code(&again), 0, "{scenario}: {}", text(&again));
        }
    }
}

#[test]
fn recover_by_hand_sets_everything_aside_and_deletes_nothing() {
    // A corrupt main file: restore the snapshot.
    let (_tmp, tmp) = temp();
    let (_, data) = fixture_copy("corrupt-block", &tmp);
    let state = data.join("state");
    let before = folder_digest(&state);
    let args = ["--data-dir", data.as_str(), "--migrations", &migrations()];

    // `migrate` refuses, naming the path and the next step.
    let out = sysdb(&[&args[..], &["migrate"]].concat());
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains(state.as_str()), "{}", text(&out));
    assert!(
        text(&out).contains("hint: `sysdb status`"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("recover --from-snapshot"),
        "{}",
        text(&out)
    );

    // Without --yes and without a terminal to ask on, nothing happens.
    let out = sysdb(&[&args[..], &["recover", "--from-snapshot"]].concat());
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("--yes"), "{}", text(&out));
    assert_eq!(folder_digest(&state), before);

    let out = sysdb(&[&args[..], &["recover", "--from-snapshot", "--yes"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("set aside"), "{}", text(&out));
    let after: Vec<String> = folder_digest(&state).into_values().collect();
    for (file, digest) in &before {
        assert!(after.contains(digest), "{file} is gone");
    }
    let out = sysdb(&[&args[..], &["migrate"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));

    // A WAL that does not replay and no snapshot: drop the WAL.
    let (_tmp, tmp) = temp();
    let (manifest, data) = fixture_copy("wal-replay-no-snapshot", &tmp);
    let state = data.join("state");
    let before = folder_digest(&state);
    let args = ["--data-dir", data.as_str(), "--migrations", &migrations()];
    let out = sysdb(&[&args[..], &["migrate", "--json"]].concat());
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        json(&out)["hint"]
            .as_str()
            .is_some_and(|h| h.contains("recover --drop-wal")),
        "{}",
        text(&out)
    );
    assert_eq!(folder_digest(&state), before);
    let out = sysdb(&[&args[..], &["recover", "--drop-wal", "--yes", "--json"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json(&out)["version"], 26);
    let after: Vec<String> = folder_digest(&state).into_values().collect();
    for (file, digest) in &before {
        assert!(after.contains(digest), "{file} is gone");
    }
    let out = sysdb(&[&args[..], &["migrate", "--json"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json(&out)["migration"]["to"], 27);
    assert!(manifest.expect.class.is_some());

    let out = sysdb(&["--data-dir", data.as_str(), "quarantine", "list", "--json"]);
    assert_eq!(code(&out), 0);
    let sets = json(&out);
    assert_eq!(sets.as_array().map(Vec::len), Some(1));
    let files: Vec<String> = sets[0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("a path").to_owned())
        .collect();
    assert!(files.iter().all(|f| Utf8Path::new(f).exists()), "{files:?}");

    // Pruning is the one deleting command. Without a terminal to ask on
    // and without --yes it deletes nothing; while a recovery is in flight
    // it refuses.
    let prune = [
        "--data-dir",
        data.as_str(),
        "quarantine",
        "prune",
        "--keep",
        "0",
    ];
    let out = sysdb(&prune);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("--yes"), "{}", text(&out));
    assert!(files.iter().all(|f| Utf8Path::new(f).exists()), "{files:?}");
    let recovering = data.join("state/system.duckdb.recovering");
    fs_err::write(&recovering, b"{}").expect("a recovery marker");
    let out = sysdb(&[&prune[..], &["--yes"]].concat());
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("in flight"), "{}", text(&out));
    assert!(files.iter().all(|f| Utf8Path::new(f).exists()), "{files:?}");
    fs_err::remove_file(&recovering).expect("remove the marker");

    let out = sysdb(&[&prune[..], &["--yes"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("deleted"), "{}", text(&out));
    assert!(
        files.iter().all(|f| !Utf8Path::new(f).exists()),
        "{files:?}"
    );
    let out = sysdb(&["--data-dir", data.as_str(), "quarantine", "list", "--json"]);
    assert_eq!(json(&out).as_array().map(Vec::len), Some(0));
}

#[test]
fn snapshots_and_quarantine_on_a_fresh_folder() {
    let (_tmp, tmp) = temp();
    let data = tmp.join("data");
    let args = ["--data-dir", data.as_str(), "--migrations", &migrations()];
    // Before there is a database, a snapshot or a recovery by hand refuses
    // and makes no file, not even the lock's folder.
    for command in [
        &["snapshot", "take"][..],
        &["recover", "--drop-wal", "--yes"],
    ] {
        let out = sysdb(&[&args[..], command, &["--json"]].concat());
        assert_eq!(code(&out), 1, "{command:?}: {}", text(&out));
        assert_eq!(json(&out)["code"], "missing", "{command:?}");
        assert!(!data.exists(), "{command:?} made {data}");
    }
    let out = sysdb(&[&args[..], &["migrate"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("migration: 0 -> 27"), "{}", text(&out));

    let out = sysdb(&[&args[..], &["snapshot", "take", "--json"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json(&out)["version"], 27);
    let out = sysdb(&[&args[..], &["snapshot", "verify"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("schema version 27"), "{}", text(&out));

    let out = sysdb(&[&args[..], &["check"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = sysdb(&[&args[..], &["status"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    let human = text(&out).replace(tmp.as_str(), "[tmp]");
    let human: Vec<String> = human
        .lines()
        .map(|l| match l.split_once(" (") {
            Some((head, _))
                if ["database", "snapshot", "previous"]
                    .iter()
                    .any(|w| l.starts_with(w)) =>
            {
                format!("{head} (…)")
            }
            _ => l.to_owned(),
        })
        .collect();
    insta::assert_snapshot!(human.join("\n"));

    let out = sysdb(&[
        "--data-dir",
        data.as_str(),
        "quarantine",
        "prune",
        "--keep",
        "0",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("no quarantine sets"), "{}", text(&out));
}

#[test]
fn a_held_lock_is_exit_code_3_with_the_holder_named() {
    let (_tmp, tmp) = temp();
    let data = tmp.join("data");
    let paths = sysdb::Paths::from_data_dir(&data).expect("paths");
    let _held = sysdb::by_hand::lock(&paths, std::time::Duration::ZERO).expect("lock");
    let out = sysdb(&[
        "--data-dir",
        data.as_str(),
        "--migrations",
        &migrations(),
        "check",
    ]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        text(&out).contains(&format!("process {}", std::process::id())),
        "{}",
        text(&out)
    );
    let out = sysdb(&["--data-dir", data.as_str(), "status", "--json"]);
    assert_eq!(json(&out)["lock_holder_pid"], std::process::id());
    let migrate = |more: &[&str]| {
        let args = [
            "--data-dir",
            data.as_str(),
            "--migrations",
            &migrations(),
            "--json",
            "migrate",
            "--lock-wait",
            "0s",
        ];
        sysdb(&[&args[..], more].concat())
    };
    let out = migrate(&[]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert_eq!(json(&out)["holder_pid"], std::process::id());
    assert_eq!(json(&out)["exit_code"], 3);
    // Started by the holder, it runs under the holder's lock.
    let out = migrate(&["--inherit-lock"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json(&out)["created"], "v1.4.0");
    assert_eq!(
        fs_err::read_to_string(paths.lock())
            .expect("lock file")
            .trim(),
        std::process::id().to_string(),
        "the holder's pid stays"
    );
}

#[test]
fn migrate_with_the_probe_recovers_a_log_that_does_not_replay() {
    let (_tmp, tmp) = temp();
    let (manifest, data) = fixture_copy("wal-replay-ddl", &tmp);
    let db = data.join("state/system.duckdb");

    // The probe's child alone: DuckDB's error, exit 1, nothing recovered.
    let out = sysdb(&["probe-open", db.as_str()]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("job_state"), "{}", text(&out));

    let out = sysdb(&[
        "migrate",
        "--probe",
        "--probe-timeout",
        "2min",
        "--json",
        "--data-dir",
        data.as_str(),
        "--migrations",
        &migrations(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["probe"]["exited"]["code"], 1, "{report:#}");
    let sysdb_scenarios::Outcome::Recovered { source } = &manifest.expect.outcome else {
        panic!("the fixture recovers: {:?}", manifest.expect.outcome)
    };
    assert_eq!(report["restored"]["source"], source.as_str());
    assert_eq!(report["recovery_resumed"], serde_json::Value::Null);
    assert!(!db.with_extension("duckdb.recovering").exists());

    // On the recovered folder the probe opens, and says so.
    let out = sysdb(&["probe-open", db.as_str()]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[test]
fn check_explains_a_recovery_in_words_and_in_json() {
    let (_tmp, tmp) = temp();
    let (_, data) = fixture_copy("wal-replay-ddl", &tmp);
    let args = ["--data-dir", data.as_str(), "--migrations", &migrations()];
    let out = sysdb(&[&args[..], &["check"]].concat());
    assert_eq!(code(&out), 11, "{}", text(&out));
    insta::assert_snapshot!(
        "check_human",
        String::from_utf8_lossy(&out.stdout).replace(tmp.as_str(), "[tmp]")
    );
    let out = sysdb(&[&args[..], &["check", "--json"]].concat());
    assert_eq!(code(&out), 11, "{}", text(&out));
    insta::assert_snapshot!(
        "check_json",
        sysdb_scenarios::redacted(json(&out), tmp.as_str())
    );
}

/// `sysdb` with `DATA_DIR` set, as inside the service's container.
fn sysdb_in(data_dir: &Utf8Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sysdb"))
        .args(args)
        .env("DATA_DIR", data_dir)
        .env_remove("SYSDB_STORAGE_VERSION")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run sysdb")
}

#[test]
fn a_fresh_data_folder_reads_as_empty_and_db_works_where_data_dir_is_set() {
    let (_tmp, tmp) = temp();
    let data = tmp.join("data");
    fs_err::create_dir_all(&data).expect("data folder");
    // No `state/` yet: nothing to list, nothing to fail on.
    for command in [&["status"][..], &["quarantine", "list"], &["check"]] {
        for out in [
            sysdb_in(&data, &[&["--migrations", &migrations()], command].concat()),
            sysdb(
                &[
                    &["--data-dir", data.as_str(), "--migrations", &migrations()],
                    command,
                ]
                .concat(),
            ),
        ] {
            let code = code(&out);
            let expected = if command == ["check"] { 10 } else { 0 };
            assert_eq!(code, expected, "{command:?}: {}", text(&out));
        }
    }
    assert!(
        !data.join("state").exists(),
        "a read-only command made the state folder"
    );

    // `--db` names another database even where DATA_DIR is set.
    let other = tmp.join("elsewhere/system.duckdb");
    let out = sysdb_in(
        &data,
        &[
            "--db",
            other.as_str(),
            "--migrations",
            &migrations(),
            "migrate",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(other.exists(), "{}", text(&out));
    assert!(!data.join("state/system.duckdb").exists());
    let out = sysdb_in(&data, &["--db", other.as_str(), "status", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains(other.as_str()), "{}", text(&out));
}

/// A copy of the fixtures' migrations in `tmp/migrations`, for a test to
/// change, and `data` migrated with it; the copy and the arguments that
/// name both.
fn migrated_with_own_migrations(tmp: &Utf8Path, data: &Utf8Path) -> (Utf8PathBuf, [String; 4]) {
    let migrations = tmp.join("migrations");
    fs_err::create_dir_all(&migrations).expect("migrations");
    for entry in fs_err::read_dir(self::migrations()).expect("list") {
        let entry = entry.expect("entry");
        fs_err::copy(
            entry.path(),
            migrations.as_std_path().join(entry.file_name()),
        )
        .expect("copy");
    }
    let args = [
        "--data-dir".to_owned(),
        data.to_string(),
        "--migrations".to_owned(),
        migrations.to_string(),
    ];
    let out = sysdb(&[&args.each_ref().map(String::as_str)[..], &["migrate"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    (migrations, args)
}

#[test]
fn a_step_that_fails_after_another_was_applied_says_what_was_done_before_it() {
    let (_tmp, tmp) = temp();
    let data = tmp.join("data");
    let (migrations, args) = migrated_with_own_migrations(&tmp, &data);
    let args = args.each_ref().map(String::as_str);
    fs_err::write(
        migrations.join("0028_notes.sql"),
        "CREATE TABLE notes (id INTEGER);\n",
    )
    .expect("write");
    fs_err::write(
        migrations.join("0029_typo.sql"),
        "CREAT TABLE x (id INTEGER);\n",
    )
    .expect("write");

    let out = sysdb(&[&args[..], &["migrate"]].concat());
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).replace(tmp.as_str(), "[tmp]");
    let done = stderr
        .split_once("done before the error:\n")
        .map(|(_, after)| after)
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    assert!(done.contains("migration: 27 -> 28"), "{stderr}");
    assert!(done.contains("  applied 28 notes"), "{stderr}");
    assert!(stderr.contains("0029_typo.sql"), "{stderr}");
    assert!(stderr.contains("hint: fix that step's file"), "{stderr}");

    let out = sysdb(&[&args[..], &["migrate", "--json"]].concat());
    assert_eq!(code(&out), 1, "{}", text(&out));
    let error = json(&out);
    assert_eq!(error["code"], "schema", "{error:#}");
    // The window is resumed and fails at once: this open changed nothing.
    assert_eq!(error["report"], serde_json::Value::Null, "{error:#}");

    // Fixed, the migration goes on from the failed step.
    fs_err::write(
        migrations.join("0029_typo.sql"),
        "CREATE TABLE x (id INTEGER);\n",
    )
    .expect("write");
    let out = sysdb(&[&args[..], &["migrate", "--json"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    let migration = &json(&out)["migration"];
    assert_eq!(migration["resumed_window"], true, "{migration:#}");
    assert_eq!(
        (&migration["from"], &migration["to"]),
        (&28.into(), &29.into())
    );
}

#[test]
fn drift_is_refused_by_migrate_and_check_and_accepted_with_the_flag() {
    let (_tmp, tmp) = temp();
    let data = tmp.join("data");
    let (migrations, args) = migrated_with_own_migrations(&tmp, &data);
    let args = args.each_ref().map(String::as_str);
    // An applied step's text changes after it ran.
    let step = fs_err::read_dir(&migrations)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().contains("0002_"))
        .expect("step 2");
    let mut sql = fs_err::read_to_string(&step).expect("read");
    sql.push_str("-- reworded after it ran\n");
    fs_err::write(&step, sql).expect("write");

    let out = sysdb(&[&args[..], &["migrate"]].concat());
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("--accept-drift"), "{}", text(&out));
    let out = sysdb(&[&args[..], &["check"]].concat());
    assert_eq!(code(&out), 12, "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("  because: "), "{said}");
    assert!(said.contains("next: if the change"), "{said}");
    assert!(said.contains("--accept-drift"), "{said}");
    assert!(!said.contains("would while"), "{said}");
    let out = sysdb(&[&args[..], &["check", "--accept-drift"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = sysdb(&[&args[..], &["migrate", "--accept-drift"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[test]
fn new_databases_get_the_storage_version_asked_for_by_flag_or_environment() {
    let (_tmp, tmp) = temp();
    let storage = |out: &Output| json(out)["schema"]["storage_version"].clone();
    let m = migrations();

    // Unset: the default, which DuckDB 1.4 and later read.
    let data = tmp.join("default");
    let out = sysdb_in(&data, &["--migrations", &m, "migrate"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("created: a new database at storage version v1.4.0"));
    let out = sysdb_in(&data, &["status"]);
    assert!(
        text(&out).contains("storage     version v1.4.0+"),
        "{}",
        text(&out)
    );

    // The flag, with DATA_DIR set and with --data-dir.
    let flag = tmp.join("flag");
    let out = sysdb_in(
        &flag,
        &["--migrations", &m, "--storage-version", "v1.5.0", "migrate"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(storage(&sysdb_in(&flag, &["status", "--json"])), "v1.5.0+");
    let flag2 = tmp.join("flag2");
    let out = sysdb(&[
        "--data-dir",
        flag2.as_str(),
        "--migrations",
        &m,
        "--storage-version",
        "latest",
        "migrate",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        storage(&sysdb(&["--data-dir", flag2.as_str(), "status", "--json"])),
        "v2.0.0+"
    );

    // The environment; an existing file keeps its own version.
    let env = tmp.join("env");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sysdb"))
            .args(args)
            .env("DATA_DIR", &env)
            .env("SYSDB_STORAGE_VERSION", "v1.5.0")
            .stdin(Stdio::null())
            .output()
            .expect("run sysdb")
    };
    assert_eq!(code(&run(&["--migrations", &m, "migrate"])), 0);
    assert_eq!(storage(&run(&["status", "--json"])), "v1.5.0+");
    let out = sysdb_in(
        &env,
        &["--migrations", &m, "--storage-version", "latest", "migrate"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(storage(&sysdb_in(&env, &["status", "--json"])), "v1.5.0+");

    // A version DuckDB does not know is a usage error naming the known ones.
    let out = sysdb_in(
        &tmp.join("bad"),
        &["--migrations", &m, "--storage-version", "v9", "migrate"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("v1.4.0, "), "{}", text(&out));
    assert!(!tmp.join("bad").exists());
}

#[test]
fn where_only_the_previous_snapshot_is_left_check_and_migrate_refuse_and_recover_restores_it() {
    let m = migrations();
    for data_dir_set in [true, false] {
        let (_tmp, tmp) = temp();
        let data = tmp.join("data");
        let run = |args: &[&str]| match data_dir_set {
            true => sysdb_in(&data, args),
            false => sysdb(&[&["--data-dir", data.as_str()], args].concat()),
        };
        assert_eq!(code(&run(&["--migrations", &m, "migrate"])), 0);
        // A window left open without its database: only the previous
        // snapshot is left.
        let state = data.join("state");
        fs_err::rename(
            state.join("system.duckdb.pre-migrate"),
            state.join("system.duckdb.pre-migrate.previous"),
        )
        .expect("rename");
        fs_err::rename(state.join("system.duckdb"), tmp.join("gone.duckdb")).expect("rename");

        let out = run(&["--migrations", &m, "migrate"]);
        assert_eq!(code(&out), 1, "{}", text(&out));
        assert!(text(&out).contains("is missing"), "{}", text(&out));
        assert!(
            text(&out).contains("recover --from-snapshot"),
            "{}",
            text(&out)
        );
        let out = run(&["--migrations", &m, "check"]);
        assert_eq!(code(&out), 12, "check agrees with migrate: {}", text(&out));

        let out = run(&["recover", "--from-snapshot", "--yes"]);
        assert_eq!(code(&out), 0, "{}", text(&out));
        assert!(
            text(&out).contains("system.duckdb.pre-migrate.previous"),
            "{}",
            text(&out)
        );
        assert!(!state.join("system.duckdb.recovering").exists());
        let out = run(&["--migrations", &m, "migrate"]);
        assert_eq!(code(&out), 0, "{}", text(&out));
    }
}

#[test]
fn new_creates_the_next_numbered_empty_migration() {
    let (_tmp, tmp) = temp();
    let dir = tmp.join("migrations");
    let m = dir.as_str();
    let out = sysdb(&["--migrations", m, "new", "create_jobs"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("0001_create_jobs.sql (version 1)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        fs_err::read(dir.join("0001_create_jobs.sql")).expect("made"),
        b""
    );
    let out = sysdb_in(&tmp, &["--migrations", m, "new", "add_owner", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json(&out)["path"], dir.join("0002_add_owner.sql").as_str());
    assert_eq!(json(&out)["version"], 2);

    let out = sysdb(&["--migrations", m, "new", "add owner"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("identifier"), "{}", text(&out));
    let out = sysdb(&["new", "x"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(fs_err::read_dir(&dir).expect("list").count(), 2);
}

#[test]
fn logs_follow_rust_log_and_the_verbosity_flags_and_json_is_one_line() {
    let (_tmp, tmp) = temp();
    let m = migrations();
    let err = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let quiet = sysdb_in(&tmp.join("quiet"), &["--migrations", &m, "-q", "migrate"]);
    assert_eq!(code(&quiet), 0, "{}", text(&quiet));
    assert_eq!(err(&quiet), "", "-q prints nothing on stderr");

    let verbose = sysdb_in(&tmp.join("verbose"), &["--migrations", &m, "-v", "migrate"]);
    assert_eq!(code(&verbose), 0, "{}", text(&verbose));
    for step in [
        "created the database",
        "migrating: checkpointing first",
        "copying the database for the pre-migrate snapshot, checking its blocks",
        "took the pre-migrate snapshot",
        "applied migration step",
    ] {
        assert!(
            err(&verbose).contains(step),
            "-v lacks {step:?}: {}",
            err(&verbose)
        );
    }

    let logged = Command::new(env!("CARGO_BIN_EXE_sysdb"))
        .args(["--migrations", &m, "migrate", "--json"])
        .env("DATA_DIR", tmp.join("logged"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .expect("run sysdb");
    assert_eq!(code(&logged), 0, "{}", text(&logged));
    assert!(
        err(&logged).contains("took the open lock"),
        "{}",
        err(&logged)
    );
    let stdout = String::from_utf8_lossy(&logged.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object per line: {stdout}"
    );
    assert_eq!(json(&logged)["migration"]["to"], 27);
}

#[test]
fn the_lock_file_and_markers_are_not_world_writable_and_never_a_symlink_followed() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, tmp) = temp();
    let data = tmp.join("data");
    // Under umask 000 a file takes exactly the mode it is created with.
    let under_umask_000 = |migrations: &str| {
        Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_sysdb"))
            .args([
                "--data-dir",
                data.as_str(),
                "--migrations",
                migrations,
                "migrate",
            ])
            .env_remove("DATA_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run sysdb")
    };
    let out = under_umask_000(&migrations());
    assert_eq!(code(&out), 0, "{}", text(&out));
    let mode = |p: &Utf8Path| fs_err::metadata(p).expect("metadata").permissions().mode();
    let lock = data.join("state/system.duckdb.lock");
    assert_eq!(mode(&lock) & 0o022, 0, "the lock file is {:o}", mode(&lock));

    // A step that fails leaves its migration window open: the intent
    // marker stays, as written.
    let failing = tmp.join("failing");
    fs_err::create_dir_all(&failing).expect("folder");
    for entry in fs_err::read_dir(root().join("fixtures/migrations")).expect("list") {
        let entry = entry.expect("entry");
        fs_err::copy(entry.path(), failing.as_std_path().join(entry.file_name())).expect("copy");
    }
    fs_err::write(failing.join("0028_broken.sql"), "SELECT * FROM nowhere;").expect("write");
    let out = under_umask_000(failing.as_str());
    assert_eq!(code(&out), 1, "{}", text(&out));
    let marker = data.join("state/system.duckdb.migrating");
    assert_eq!(
        mode(&marker) & 0o022,
        0,
        "the intent marker is {:o}",
        mode(&marker)
    );
    fs_err::remove_file(&marker).expect("remove the marker");

    let target = tmp.join("elsewhere");
    fs_err::write(&target, b"keep").expect("write");
    fs_err::remove_file(&lock).expect("unlink");
    std::os::unix::fs::symlink(&target, &lock).expect("symlink");
    let out = sysdb(&[
        "--data-dir",
        data.as_str(),
        "--migrations",
        &migrations(),
        "migrate",
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains(lock.as_str()), "{}", text(&out));
    assert_eq!(fs_err::read(&target).expect("read"), b"keep");
}

#[test]
fn the_entrypoint_starts_the_service_only_on_a_database_that_is_ready() {
    let (_tmp, tmp) = temp();
    let entrypoint = |data: &Utf8Path| {
        Command::new("sh")
            .arg("-c")
            .arg("\"$0\" --migrations \"$1\" migrate --probe --json && exec sh -c 'echo service started'")
            .arg(env!("CARGO_BIN_EXE_sysdb"))
            .arg(migrations())
            .env("DATA_DIR", data)
            .env_remove("SYSDB_STORAGE_VERSION")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run the entrypoint")
    };
    // A crash mid-migration: recovered, migrated, then the service.
    let (_, crashed) = fixture_copy("wal-replay-ddl", &tmp.join("crashed"));
    let out = entrypoint(&crashed);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(lines[0]).expect("the report");
    assert_eq!(report["migration"]["to"], 27, "{stdout}");
    assert_eq!(lines[1], "service started");

    // Healthy: nothing to do, then the service.
    let out = entrypoint(&crashed);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).ends_with("service started\n"), "{}", text(&out));

    // A file sysdb refuses (not a DuckDB database): the service never starts.
    let refused = tmp.join("refused");
    fs_err::create_dir_all(refused.join("state")).expect("state");
    fs_err::write(refused.join("state/system.duckdb"), b"not a database").expect("write");
    let out = entrypoint(&refused);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(!text(&out).contains("service started"), "{}", text(&out));
}

#[test]
fn duckdb_settings_reach_every_connection_the_probe_child_s_included() {
    let (_tmp, tmp) = temp();
    let (_, data) = fixture_copy("wal-replay-out-of-memory", &tmp);
    let before = folder_digest(&data.join("state"));
    let m = migrations();
    // The log replays with the machine's memory; with 1 MB, one thread and
    // no temporary folder to spill to it cannot, and a failure of the
    // environment moves nothing.
    for args in [
        &[
            "--duckdb-setting",
            "memory_limit=1MB,temp_directory=,threads=1",
            "--migrations",
            &m,
            "migrate",
        ][..],
        &[
            "--duckdb-setting",
            "memory_limit=1MB,temp_directory=,threads=1",
            "--migrations",
            &m,
            "migrate",
            "--probe",
        ],
    ] {
        let out = sysdb_in(&data, args);
        assert_eq!(code(&out), 1, "{args:?}: {}", text(&out));
        assert!(text(&out).contains("memory"), "{}", text(&out));
        assert_eq!(
            folder_digest(&data.join("state")),
            before,
            "{args:?} moved files"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sysdb"))
        .args(["--migrations", &m, "migrate", "--probe"])
        .env("DATA_DIR", &data)
        .env(
            "SYSDB_DUCKDB_SETTINGS",
            "threads=1,temp_directory=,memory_limit=1MB",
        )
        .stdin(Stdio::null())
        .output()
        .expect("run sysdb");
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(folder_digest(&data.join("state")), before);

    let out = sysdb_in(&data, &["--duckdb-setting", "memory_limit", "status"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("NAME=VALUE"), "{}", text(&out));

    let out = sysdb_in(&data, &["--migrations", &m, "migrate"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

/// `sysdb ARGS` run on a terminal (a pseudo-terminal that `script` makes),
/// with DATA_DIR set: what the terminal showed, with carriage returns.
fn on_a_terminal(data: &Utf8Path, args: &[&str]) -> (i32, String) {
    let mut command = vec![env!("CARGO_BIN_EXE_sysdb").to_owned()];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    let line = command
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("DATA_DIR", data)
        .env("COLUMNS", "120")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    (
        code(&out),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn on_a_terminal_each_long_step_shows_its_progress_and_what_it_did() {
    let (_tmp, tmp) = temp();
    let m = migrations();
    let (_, data) = fixture_copy("wal-rows-before-ddl", &tmp);
    let (code, shown) = on_a_terminal(&data, &["--migrations", &m, "migrate"]);
    assert_eq!(code, 0, "{shown}");
    for drawn in [
        "   salvage [",
        "replays at most",
        "   salvage 1 replay(s) in ",
        "checkpoint in ",
        "  snapshot ",
        "   migrate 1 step(s) in ",
    ] {
        assert!(shown.contains(drawn), "lacks {drawn:?}: {shown}");
    }
    assert!(shown.contains("restored: "), "the report follows: {shown}");

    let (_, data) = fixture_copy("wal-rows-before-ddl", &tmp.join("quiet"));
    let (code, shown) = on_a_terminal(&data, &["--migrations", &m, "-q", "migrate"]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        !shown.contains("salvage") && !shown.contains("WARN"),
        "-q: {shown}"
    );
    assert!(shown.contains("restored: "), "{shown}");
}
