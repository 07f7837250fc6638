//! Properties of snapshots and quarantine over real files, and a real kill
//! at every step of `take`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use sysdb_snapshot::{quarantine, restore, take, take_with, ClosedDb, DbFiles, Step};

fn setup() -> (tempfile::TempDir, DbFiles) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Utf8PathBuf::try_from(dir.path().join("system.duckdb")).expect("utf-8 path");
    (dir, DbFiles::new(db).expect("valid path"))
}

/// Deterministic pseudo-random bytes (a 64-bit LCG).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// Every file in the folder with its content.
fn folder(dir: &Utf8Path) -> BTreeMap<String, Vec<u8>> {
    fs_err::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs_err::read(e.path()).expect("read"))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn take_then_restore_round_trips_byte_for_byte(
        seed in any::<u64>(),
        len in prop_oneof![Just(0usize), 1usize..4096, 4096usize..6_000_000],
    ) {
        let (_dir, files) = setup();
        let content = bytes(seed, len);
        fs_err::write(files.db(), &content).expect("write db");
        let db = ClosedDb::assume_closed(files.clone());
        let taken = take(&db).expect("take");
        prop_assert_eq!(taken.bytes, len as u64);
        prop_assert_eq!(fs_err::read(files.snapshot()).expect("read"), content.clone());
        quarantine(&db).expect("quarantine");
        prop_assert!(!files.db().exists());
        restore(&db, &files.snapshot()).expect("restore");
        prop_assert_eq!(fs_err::read(files.db()).expect("read"), content.clone());
        prop_assert_eq!(fs_err::read(files.snapshot()).expect("read"), content);
    }

    #[test]
    fn quarantine_moves_exactly_the_present_files(
        present in proptest::collection::vec(any::<bool>(), 4),
        seed in any::<u64>(),
    ) {
        let (dir, files) = setup();
        let dir = Utf8Path::from_path(dir.path()).expect("utf-8");
        let members = [
            files.db().to_owned(),
            files.wal(),
            files.sibling(".wal.checkpoint"),
            files.sibling(".wal.recovery"),
        ];
        let mut expected = Vec::new();
        for (i, (path, here)) in members.iter().zip(&present).enumerate() {
            if *here {
                let content = bytes(seed.wrapping_add(i as u64), 100 + i);
                fs_err::write(path, &content).expect("write member");
                expected.push((path.clone(), content));
            }
        }
        // Neighbours that are not the database's sidecars.
        let bystanders = [
            files.snapshot(),
            files.sibling(".walx"),
            files.sibling(".wal.bak"),
            dir.join("other.duckdb.wal"),
        ];
        for b in &bystanders {
            fs_err::write(b, b"bystander").expect("write bystander");
        }
        let before = folder(dir);

        let q = quarantine(&ClosedDb::assume_closed(files.clone())).expect("quarantine");

        prop_assert_eq!(q.moved.len(), expected.len());
        for (from, content) in &expected {
            let m = q.moved.iter().find(|m| &m.from == from).expect("member moved");
            prop_assert!(!from.exists());
            prop_assert_eq!(&fs_err::read(&m.to).expect("read"), content);
            prop_assert_eq!(m.bytes, content.len() as u64);
        }
        // Same bytes under the new names, bystanders untouched, nothing lost.
        let after = folder(dir);
        let mut before_contents: Vec<&Vec<u8>> = before.values().collect();
        let mut after_contents: Vec<&Vec<u8>> = after.values().collect();
        before_contents.sort();
        after_contents.sort();
        prop_assert_eq!(before_contents, after_contents);
        for b in &bystanders {
            prop_assert_eq!(fs_err::read(b).expect("read"), b"bystander".to_vec());
        }
    }
}

const KILL_AT_ENV: &str = "SYSDB_SNAPSHOT_KILL_AT";
const KILL_DB_ENV: &str = "SYSDB_SNAPSHOT_KILL_DB";
const THIS_TEST: &str = "a_kill_at_any_step_of_take_leaves_the_old_or_the_new_snapshot";

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::SpaceChecked { .. } => "space-checked",
        Step::TempCreated => "temp-created",
        Step::Copying { done, total } if done < total => "mid-copy",
        Step::Copying { .. } => "copied",
        Step::Synced => "synced",
        Step::Renamed => "renamed",
        Step::DirSynced => "dir-synced",
        _ => "other",
    }
}

/// The child: take a snapshot, and at the named step say so and wait to be
/// killed.
fn child_take(db: &str, kill_at: &str) {
    let files = DbFiles::new(db).expect("valid path");
    let mut progress = |step: Step| {
        if step_name(&step) == kill_at {
            println!("reached {kill_at}");
            std::io::stdout().flush().expect("flush");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    };
    take_with(&ClosedDb::assume_closed(files), &mut progress).expect("take");
    println!("finished");
}

#[test]
fn a_kill_at_any_step_of_take_leaves_the_old_or_the_new_snapshot() {
    if let (Ok(db), Ok(at)) = (std::env::var(KILL_DB_ENV), std::env::var(KILL_AT_ENV)) {
        child_take(&db, &at);
        return;
    }
    // Three chunks, so that the first progress report is mid-copy.
    let new = bytes(1, 20 << 20);
    let old = bytes(2, 3 << 20);
    let steps = [
        ("space-checked", false),
        ("temp-created", false),
        ("mid-copy", false),
        ("copied", false),
        ("synced", false),
        ("renamed", true),
        ("dir-synced", true),
    ];
    for (step, expect_new) in steps {
        let (dir, files) = setup();
        fs_err::write(files.db(), &new).expect("write db");
        fs_err::write(files.snapshot(), &old).expect("write old snapshot");

        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", THIS_TEST, "--nocapture", "--test-threads=1"])
            .env(KILL_DB_ENV, files.db().as_str())
            .env(KILL_AT_ENV, step)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reached = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.trim_end().ends_with(&format!("reached {step}")));
        assert!(reached, "child never reached {step}");
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "child was not killed at {step}");

        let snapshot = fs_err::read(files.snapshot()).expect("a snapshot is at the final name");
        let wanted = if expect_new { &new } else { &old };
        assert!(
            snapshot == *wanted,
            "after a kill at {step} the snapshot is neither complete old nor new ({} bytes)",
            snapshot.len()
        );
        assert_eq!(
            fs_err::read(files.db()).expect("read db"),
            new,
            "the database changed"
        );

        // The next take cleans up what the killed one left and completes.
        take(&ClosedDb::assume_closed(files.clone())).expect("take after kill");
        assert_eq!(fs_err::read(files.snapshot()).expect("read"), new);
        let names: Vec<String> = folder(Utf8Path::from_path(dir.path()).expect("utf-8"))
            .into_keys()
            .collect();
        assert_eq!(
            names,
            ["system.duckdb", "system.duckdb.pre-migrate"],
            "after {step}"
        );
    }
}

#[test]
fn copies_keep_the_database_files_mode_never_wider() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Utf8Path| {
        fs_err::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    for kept in [0o600u32, 0o640, 0o664] {
        let (_tmp, files) = setup();
        fs_err::write(files.db(), bytes(u64::from(kept), 70_000)).expect("write");
        fs_err::set_permissions(files.db(), std::fs::Permissions::from_mode(kept)).expect("chmod");
        let db = ClosedDb::assume_closed(files.clone());
        let snapshot = take(&db).expect("take").to;
        assert_eq!(mode(&snapshot), kept, "the snapshot of a {kept:o} database");
        quarantine(&db).expect("set aside");
        restore(&db, &snapshot).expect("restore");
        assert_eq!(
            mode(files.db()),
            kept,
            "the database restored from a {kept:o} snapshot"
        );
        let built = files.dir().join("replayed");
        fs_err::copy(&snapshot, &built).expect("copy");
        quarantine(&db).expect("set aside");
        sysdb_snapshot::install(&db, &built).expect("install");
        assert_eq!(mode(files.db()), kept, "the installed copy");
    }
}

#[test]
fn a_symlink_is_never_written_through_nor_restored_from() {
    let (_tmp, files) = setup();
    fs_err::write(files.db(), bytes(7, 70_000)).expect("write");
    let db = ClosedDb::assume_closed(files.clone());
    let elsewhere = files.dir().join("elsewhere");
    fs_err::write(&elsewhere, b"not to be overwritten").expect("write");
    std::os::unix::fs::symlink(&elsewhere, files.snapshot()).expect("symlink");
    let err = take(&db).expect_err("the snapshot is a link");
    assert!(
        matches!(&err, sysdb_snapshot::Error::Symlink { path } if *path == files.snapshot()),
        "{err:?}"
    );
    assert_eq!(
        fs_err::read(&elsewhere).expect("read"),
        b"not to be overwritten"
    );
    insta::assert_snapshot!(
        "symlink",
        err.to_string()
            .replace(files.dir().as_str(), "/srv/data/state")
    );

    fs_err::remove_file(files.snapshot()).expect("unlink");
    quarantine(&db).expect("set aside");
    let link = files.dir().join("link-to-a-copy");
    std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
    let err = restore(&db, &link).expect_err("the source is a link");
    assert!(
        matches!(&err, sysdb_snapshot::Error::Symlink { path } if *path == link),
        "{err:?}"
    );
    assert!(!files.db().exists());
}

#[test]
fn copies_keep_the_database_files_owner_where_the_process_may() {
    use std::os::unix::fs::MetadataExt;
    let (_tmp, files) = setup();
    fs_err::write(files.db(), bytes(8, 70_000)).expect("write");
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(files.db(), Some(4321), Some(4322)).expect("chown");
    }
    let owner = |p: &Utf8Path| {
        let m = fs_err::metadata(p).expect("metadata");
        (m.uid(), m.gid())
    };
    let db = ClosedDb::assume_closed(files.clone());
    let snapshot = take(&db).expect("take").to;
    assert_eq!(owner(&snapshot), owner(files.db()));
    if root {
        assert_eq!(owner(&snapshot), (4321, 4322));
    }
}

/// Whether the file at `a` holds the bytes of the file at `b`, read whole.
fn same_bytes(a: &Utf8Path, b: &Utf8Path) -> bool {
    use std::io::Read;
    let (mut a, mut b) = (
        fs_err::File::open(a).expect("open"),
        fs_err::File::open(b).expect("open"),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).expect("read");
        let m = b.read(&mut y).expect("read");
        if x[..n] != y[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

/// On a loop-mounted XFS with reflink, a take and a restore of 1 GiB are
/// clones: the reflink branch, byte for byte, in far less time than the
/// 1 GiB copy would take. Where no such mount can be made (not root, no
/// xfsprogs), it says why; `SYSDB_COW=required` (set by CI) makes that a
/// failure.
#[test]
fn on_a_copy_on_write_mount_take_and_restore_are_clones() {
    let mount = match sysdb_scenarios::cow::CowMount::xfs(3 << 30) {
        Ok(mount) => mount,
        Err(why) => {
            assert!(
                !std::env::var("SYSDB_COW").is_ok_and(|v| v == "required"),
                "SYSDB_COW=required, and no copy-on-write mount: {why}"
            );
            eprintln!("no copy-on-write mount here, the reflink branch is not run: {why}");
            return;
        }
    };
    let db = mount.path().join("system.duckdb");
    {
        let mut out = fs_err::File::create(&db).expect("create");
        let mut chunk = bytes(1, 1 << 20);
        for n in 0..1024u64 {
            chunk[..8].copy_from_slice(&n.to_le_bytes());
            out.write_all(&chunk).expect("write");
        }
        out.sync_all().expect("sync");
    }
    let files = DbFiles::new(&db).expect("files");
    let closed = ClosedDb::assume_closed(files.clone());

    let started = std::time::Instant::now();
    let taken = take(&closed).expect("take");
    let took = started.elapsed();
    assert_eq!(taken.method, sysdb_snapshot::CopyMethod::Reflink);
    assert_eq!(taken.bytes, 1 << 30);
    assert!(same_bytes(&db, &files.snapshot()), "the snapshot differs");

    // The database changes and is set aside; the restore brings the
    // snapshot's bytes back.
    {
        let mut out = fs_err::OpenOptions::new()
            .write(true)
            .open(&db)
            .expect("open");
        out.write_all(&bytes(7777, 1 << 20)).expect("damage");
        out.sync_all().expect("sync");
    }
    assert!(!same_bytes(&db, &files.snapshot()));
    let set = quarantine(&closed).expect("set the database aside");
    assert_eq!(set.moved.len(), 1);
    let started = std::time::Instant::now();
    let restored = restore(&closed, &files.snapshot()).expect("restore");
    let restore_took = started.elapsed();
    assert_eq!(restored.method, sysdb_snapshot::CopyMethod::Reflink);
    assert!(same_bytes(&db, &files.snapshot()), "the restore differs");
    eprintln!("on XFS with reflink, 1 GiB: take {took:?}, restore {restore_took:?}");
    // A copy of 1 GiB streams at about 1 s/GiB here; a clone takes
    // milliseconds (the benchmark measures it).
    assert!(
        took < Duration::from_millis(250) && restore_took < Duration::from_millis(250),
        "take {took:?}, restore {restore_took:?}"
    );
}
