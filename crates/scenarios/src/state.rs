//! A temporary data folder.

use camino::Utf8PathBuf;

/// A `DATA_DIR` with an empty `state` folder in a temporary directory, as
/// the seed's fixture makes it; removed when dropped. The database is
/// `state/system.duckdb` (`sysdb::Paths::from_data_dir(&dir.data)`).
#[derive(Debug)]
pub struct StateDir {
    tmp: tempfile::TempDir,
    /// The data folder (`DATA_DIR`).
    pub data: Utf8PathBuf,
}

impl StateDir {
    /// A new, empty one.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let data = crate::utf8(&tmp.path().join("data")).expect("a UTF-8 temporary folder");
        fs_err::create_dir_all(data.join("state")).expect("the state folder");
        Self { tmp, data }
    }

    /// `data/state`.
    pub fn state(&self) -> Utf8PathBuf {
        self.data.join("state")
    }

    /// `data/state/system.duckdb`.
    pub fn db(&self) -> Utf8PathBuf {
        self.state().join("system.duckdb")
    }

    /// The temporary folder holding `data`, for redaction.
    pub fn root(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// A new one holding a copy of every file of this one's `state`.
    pub fn copy(&self) -> Self {
        let copy = Self::new();
        copy_tree(self.state().as_std_path(), copy.state().as_std_path());
        copy
    }
}

/// Copy every file of `from` into `to`, subfolders (a replay's scratch
/// folder) included.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in fs_err::read_dir(from).expect("list a folder") {
        let entry = entry.expect("a folder entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            fs_err::create_dir(&dest).expect("make a folder");
            copy_tree(&entry.path(), &dest);
        } else {
            fs_err::copy(entry.path(), dest).expect("copy a file");
        }
    }
}

impl Default for StateDir {
    fn default() -> Self {
        Self::new()
    }
}
