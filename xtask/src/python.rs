//! `cargo xtask python`: build the Python package's wheel from the build
//! the Rust tests use, install it in a virtualenv, and run its pytest suite.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

/// The virtualenvs, each made from `python/requirements/<name>.txt`: the
/// one the tests run in first, then the services on other DuckDB versions.
const VENVS: [&str; 3] = ["test", "service-duckdb-1.4", "service-duckdb-1.1"];

/// Build the wheel, install it, run pytest with `pytest_args` added.
pub fn run(pytest_args: &[&str]) -> Result<(), String> {
    let root = crate::root();
    let python = root.join("python");
    let target = sysdb_scenarios::target_dir();
    let venvs_dir =
        std::env::var("SYSDB_VENVS").map_or_else(|_| target.join("python"), Utf8PathBuf::from);
    let mut venvs = Vec::new();
    for name in VENVS {
        let requirements = python.join("requirements").join(format!("{name}.txt"));
        venvs.push(venv(&venvs_dir.join(name), &requirements)?);
    }
    let test = &venvs[0];

    // The dev profile and this target folder: the build the tests use, so
    // DuckDB's C++ is not compiled again.
    let wheels = target.join("wheels");
    if wheels.exists() {
        for entry in fs_err::read_dir(&wheels).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_some_and(|e| e == "whl") {
                fs_err::remove_file(&path).map_err(|e| e.to_string())?;
            }
        }
    }
    run_in(
        Command::new(test.join("bin/maturin"))
            .args(["build", "--profile", "dev", "--locked", "--out"])
            .arg(&wheels)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&python),
        "building the wheel",
    )?;
    let wheel = only_wheel(&wheels)?;
    run_in(
        Command::new(test.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel),
        "installing the wheel",
    )?;

    let services: Vec<String> = venvs.iter().map(|v| v.join("bin/python").into()).collect();
    run_in(
        Command::new(test.join("bin/python"))
            .args(["-m", "pytest", "-p", "no:cacheprovider", "tests"])
            .args(pytest_args)
            .env("SYSDB_TEST_SERVICE_PYTHONS", services.join(":"))
            .env("SYSDB_TEST_WHEEL", &wheel)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("SYSDB_BIN")
            .current_dir(&python),
        "the Python tests",
    )
}

/// The virtualenv at `dir` with what `requirements` pins: made (or made
/// again) when the pins it was made with differ.
fn venv(dir: &Utf8Path, requirements: &Utf8Path) -> Result<Utf8PathBuf, String> {
    let pins = fs_err::read_to_string(requirements).map_err(|e| e.to_string())?;
    let made_with = dir.join("requirements.txt");
    if fs_err::read_to_string(&made_with).ok().as_deref() == Some(pins.as_str()) {
        return Ok(dir.to_owned());
    }
    if dir.exists() {
        fs_err::remove_dir_all(dir).map_err(|e| e.to_string())?;
    }
    eprintln!("making the virtualenv {dir} from {requirements}");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run_in(
        Command::new(&python).args(["-m", "venv"]).arg(dir),
        "making a virtualenv",
    )?;
    run_in(
        Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
        "installing the pinned packages from PyPI",
    )?;
    // Written last: a virtualenv whose install was interrupted is made again.
    fs_err::write(&made_with, pins).map_err(|e| e.to_string())?;
    Ok(dir.to_owned())
}

/// The one wheel in `dir`.
fn only_wheel(dir: &Utf8Path) -> Result<Utf8PathBuf, String> {
    let mut wheels = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            wheels.push(path);
        }
    }
    match wheels.as_slice() {
        [one] => Utf8PathBuf::try_from(one.clone()).map_err(|e| e.to_string()),
        _ => Err(format!("expected one wheel in {dir}, found {wheels:?}")),
    }
}

fn run_in(command: &mut Command, doing: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("{doing}: {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{doing} failed ({status})"))
    }
}
