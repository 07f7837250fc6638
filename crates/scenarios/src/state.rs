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
        for entry in fs_err::read_dir(self.state()).expect("list the state folder") {
            let entry = entry.expect("a folder entry");
            let to = copy.state().as_std_path().join(entry.file_name());
            fs_err::copy(entry.path(), to).expect("copy a file");
        }
        copy
    }
}

impl Default for StateDir {
    fn default() -> Self {
        Self::new()
    }
}
