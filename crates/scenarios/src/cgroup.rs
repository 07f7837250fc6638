//! A memory cgroup to run a child process in: the limit a container's
//! memory sets, enforced by the kernel's out-of-memory killer. It needs
//! root and a memory controller (cgroup v1's `memory` hierarchy, or v2
//! with `memory` enabled); [`MemoryCgroup::new`] says which is missing.
//! There is no swap to escape to: where the machine has swap, the cgroup's
//! swap is limited too.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use camino::{Utf8Path, Utf8PathBuf};

/// Where cgroup v1 mounts its memory hierarchy.
const V1: &str = "/sys/fs/cgroup/memory";
/// Where cgroup v2 mounts its unified hierarchy.
const V2: &str = "/sys/fs/cgroup";

/// A memory cgroup of its own; removed when dropped (once the processes
/// in it have ended).
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: Utf8PathBuf,
    v2: bool,
}

fn write(path: &Utf8Path, value: &str) -> Result<(), String> {
    fs_err::write(path, value).map_err(|e| e.to_string())
}

impl MemoryCgroup {
    /// A new cgroup whose processes may use at most `limit` bytes of
    /// memory together; `Err` says why none can be made here.
    pub fn new(limit: u64) -> Result<Self, String> {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sysdb-test-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let v1 = Utf8Path::new(V1);
        let (dir, v2) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(&name), false)
        } else {
            let controllers = fs_err::read_to_string(Utf8Path::new(V2).join("cgroup.controllers"))
                .map_err(|e| format!("no cgroup v1 memory hierarchy, and cgroup v2: {e}"))?;
            if !controllers.split_whitespace().any(|c| c == "memory") {
                return Err("no cgroup memory controller on this machine".to_owned());
            }
            (Utf8Path::new(V2).join(&name), true)
        };
        fs_err::create_dir(&dir).map_err(|e| format!("making a cgroup (root needed): {e}"))?;
        let cgroup = Self { dir, v2 };
        let limit = limit.to_string();
        if v2 {
            write(&cgroup.dir.join("memory.max"), &limit)?;
            // Absent where the kernel has no swap accounting.
            let _ = write(&cgroup.dir.join("memory.swap.max"), "0");
        } else {
            write(&cgroup.dir.join("memory.limit_in_bytes"), &limit)?;
            let _ = write(&cgroup.dir.join("memory.memsw.limit_in_bytes"), &limit);
        }
        Ok(cgroup)
    }

    /// `command` (its program, arguments, environment and working folder)
    /// run inside this cgroup: a shell that enters it, then executes the
    /// program in its place, so that everything the program allocates is
    /// counted.
    pub fn enter(&self, command: &Command) -> Command {
        let mut inside = Command::new("sh");
        inside
            .args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
            .arg(self.dir.join("cgroup.procs"))
            .arg(command.get_program())
            .args(command.get_args());
        for (name, value) in command.get_envs() {
            match value {
                Some(value) => inside.env(name, value),
                None => inside.env_remove(name),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            inside.current_dir(dir);
        }
        inside
    }

    /// How many processes of this cgroup the kernel's out-of-memory killer
    /// has killed.
    pub fn oom_kills(&self) -> Result<u64, String> {
        let (file, key) = match self.v2 {
            true => ("memory.events", "oom_kill"),
            false => ("memory.oom_control", "oom_kill"),
        };
        let text = fs_err::read_to_string(self.dir.join(file)).map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// The most memory the cgroup held at once, page cache included (which
    /// the kernel reclaims before it kills), where the kernel says.
    pub fn peak(&self) -> Option<u64> {
        let file = match self.v2 {
            true => "memory.peak",
            false => "memory.max_usage_in_bytes",
        };
        fs_err::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The processes are gone, but the kernel may take a moment to let
        // the folder go.
        for _ in 0..50 {
            if fs_err::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
