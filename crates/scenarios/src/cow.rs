//! A copy-on-write file system to test and measure the reflink branch of
//! the snapshot on: an XFS image made with `mkfs.xfs -m reflink=1` in a
//! temporary folder and loop-mounted. It needs root, xfsprogs and a kernel
//! with XFS; [`CowMount::xfs`] says which is missing.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

/// A loop-mounted XFS with reflink; unmounted and removed when dropped.
#[derive(Debug)]
pub struct CowMount {
    _tmp: tempfile::TempDir,
    mount: Utf8PathBuf,
}

/// Run `program args`; `Err` with its words when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl CowMount {
    /// An XFS of `bytes` (a sparse image) with reflink, mounted; `Err`
    /// says why it cannot be made here (no mkfs.xfs, not root, no XFS).
    pub fn xfs(bytes: u64) -> Result<Self, String> {
        let tmp = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
        let root = crate::utf8(tmp.path()).map_err(|e| e.to_string())?;
        let image = root.join("xfs.img");
        let mount = root.join("mnt");
        fs_err::File::create(&image)
            .and_then(|f| f.set_len(bytes))
            .map_err(|e| e.to_string())?;
        fs_err::create_dir(&mount).map_err(|e| e.to_string())?;
        run("mkfs.xfs", &["-q", "-m", "reflink=1", image.as_str()])?;
        run("mount", &["-o", "loop", image.as_str(), mount.as_str()])?;
        Ok(Self { _tmp: tmp, mount })
    }

    /// The mounted folder.
    pub fn path(&self) -> &Utf8Path {
        &self.mount
    }
}

impl Drop for CowMount {
    fn drop(&mut self) {
        if let Err(e) = run("umount", &[self.mount.as_str()]) {
            eprintln!("{e}; detaching it instead");
            let _ = run("umount", &["-l", self.mount.as_str()]);
        }
    }
}
