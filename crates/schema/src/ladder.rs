//! The ladder of steps and its validation.

use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One migration step: a version, a name and the SQL that takes the database
/// from the previous version to this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    version: u32,
    name: String,
    sql: String,
    checksum: String,
    origin: Option<Utf8PathBuf>,
}

impl Step {
    /// The version this step brings the database to.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The step's name (an identifier: `add_owner`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step's SQL, as written.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The hex SHA-256 of the SQL with line endings and trailing whitespace
    /// normalised, as recorded in `schema_version.checksum`.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// The file the step was read from, for steps read from a folder.
    pub fn origin(&self) -> Option<&Utf8Path> {
        self.origin.as_deref()
    }
}

/// The checksum of a step's SQL: line endings (`\r\n`, `\r`) and trailing
/// whitespace (of each line and of the whole text) do not change it; any
/// other difference does.
///
/// ```
/// use sysdb_schema::checksum;
///
/// assert_eq!(checksum("CREATE TABLE t(x INT);\n"), checksum("CREATE TABLE t(x INT);  \r\n\r\n"));
/// assert_ne!(checksum("CREATE TABLE t(x INT);"), checksum("CREATE TABLE t (x INT);"));
/// ```
pub fn checksum(sql: &str) -> String {
    let unified = sql.replace("\r\n", "\n").replace('\r', "\n");
    let normalised: Vec<&str> = unified.lines().map(str::trim_end).collect();
    let normalised = normalised.join("\n");
    let digest = Sha256::digest(normalised.trim_end().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A validated ladder of migration steps: versions 1, 2, … in order, each
/// with an identifier name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ladder {
    steps: Vec<Step>,
}

impl Ladder {
    /// A ladder from `(version, name, sql)` steps, in any order.
    ///
    /// ```
    /// use sysdb_schema::Ladder;
    ///
    /// let ladder = Ladder::new([
    ///     (1, "create_jobs", "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state VARCHAR);"),
    ///     (2, "add_owner", "ALTER TABLE jobs ADD COLUMN owner VARCHAR;"),
    /// ])
    /// .unwrap();
    /// assert_eq!(ladder.top(), 2);
    ///
    /// let gap = Ladder::new([(1, "a", "SELECT 1"), (3, "c", "SELECT 3")]).unwrap_err();
    /// assert_eq!(gap.to_string(), "invalid migration ladder: step 3 c: follows version 1; versions must rise by exactly 1");
    /// ```
    pub fn new<I, N, S>(steps: I) -> Result<Self>
    where
        I: IntoIterator<Item = (u32, N, S)>,
        N: Into<String>,
        S: Into<String>,
    {
        let steps = steps
            .into_iter()
            .map(|(version, name, sql)| make_step(version, name.into(), sql.into(), None))
            .collect();
        Self::validated(steps)
    }

    /// A ladder from a folder of `NNNN_name.sql` files (`0001_create_jobs.sql`,
    /// `0002_add_owner.sql`, …). Files not ending in `.sql` are ignored; a
    /// `.sql` file with another name, a duplicate version or a gap is an error
    /// that names the file.
    pub fn from_dir(dir: impl AsRef<Utf8Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read_dir_error = |source| Error::ReadDir {
            dir: dir.to_owned(),
            cause: source,
        };
        let mut steps = Vec::new();
        for entry in fs_err::read_dir(dir).map_err(read_dir_error)? {
            let entry = entry.map_err(read_dir_error)?;
            let os_name = entry.file_name();
            let path = dir.join(os_name.to_string_lossy().as_ref());
            let read = || {
                fs_err::read_to_string(&path).map_err(|source| Error::ReadFile {
                    path: path.clone(),
                    cause: source,
                })
            };
            steps.extend(step_from_file(&path, read)?);
        }
        Self::validated(steps)
    }

    /// A ladder from a folder embedded in the binary at compile time, with
    /// the same rules as [`from_dir`](Self::from_dir); errors name the file
    /// by its path inside the folder. [`embed_migrations!`](crate::embed_migrations)
    /// embeds the folder and calls this.
    pub fn from_embedded(dir: &include_dir::Dir<'_>) -> Result<Self> {
        let mut steps = Vec::new();
        for file in dir.files() {
            let Some(path) = Utf8Path::from_path(file.path()) else {
                continue; // not UTF-8, so not `NNNN_name.sql`
            };
            let read = || {
                file.contents_utf8()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::ReadFile {
                        path: path.to_owned(),
                        cause: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "stream did not contain valid UTF-8",
                        ),
                    })
            };
            steps.extend(step_from_file(path, read)?);
        }
        Self::validated(steps)
    }

    fn validated(mut steps: Vec<Step>) -> Result<Self> {
        steps.sort_by_key(|s| s.version);
        for step in &steps {
            if !is_identifier(&step.name) {
                return Err(Error::Invalid {
                    at: describe(step),
                    problem: "the name must be a non-empty identifier (letters, digits, _)".into(),
                });
            }
        }
        for (i, step) in steps.iter().enumerate() {
            // Versions must be 1, 2, 3, … in order.
            let expected = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if i > 0 && step.version == steps[i - 1].version {
                return Err(Error::Invalid {
                    at: describe(step),
                    problem: format!(
                        "version {} is also {}",
                        step.version,
                        describe(&steps[i - 1])
                    ),
                });
            }
            if step.version != expected {
                let problem = if expected == 1 {
                    "the first version must be 1".to_owned()
                } else {
                    format!(
                        "follows version {}; versions must rise by exactly 1",
                        expected - 1
                    )
                };
                return Err(Error::Invalid {
                    at: describe(step),
                    problem,
                });
            }
        }
        Ok(Self { steps })
    }

    /// The file name of the step after the top, named `name`
    /// (`0028_add_owner.sql`), with as many digits as the ladder's files
    /// have (4 for a ladder with none). An error if `name` is not an
    /// identifier.
    ///
    /// ```
    /// use sysdb_schema::Ladder;
    ///
    /// let ladder = Ladder::new([(1, "create_jobs", "CREATE TABLE jobs (id INTEGER);")]).unwrap();
    /// assert_eq!(ladder.next_file_name("add_owner").unwrap(), "0002_add_owner.sql");
    /// assert!(ladder.next_file_name("add owner").is_err());
    /// ```
    pub fn next_file_name(&self, name: &str) -> Result<String> {
        let version = self.top() + 1;
        if !is_identifier(name) {
            return Err(Error::Invalid {
                at: format!("step {version} {name}"),
                problem: "the name must be a non-empty identifier (letters, digits, _)".into(),
            });
        }
        let width = self
            .steps
            .iter()
            .filter_map(|s| s.origin()?.file_name()?.split_once('_'))
            .map(|(digits, _)| digits.len())
            .max()
            .unwrap_or(4);
        Ok(format!("{version:0width$}_{name}.sql"))
    }

    /// The highest version, 0 for an empty ladder.
    pub fn top(&self) -> u32 {
        self.steps.last().map_or(0, |s| s.version)
    }

    /// The steps, in version order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The step that brings the database to `version`.
    pub fn step(&self, version: u32) -> Option<&Step> {
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        self.steps.get(index)
    }
}

/// The step a migration file at `path` holds: `None` for a file whose name
/// does not end in `.sql`, an error naming the file for another name.
fn step_from_file(path: &Utf8Path, read: impl FnOnce() -> Result<String>) -> Result<Option<Step>> {
    let Some(file_name) = path.file_name().filter(|n| n.ends_with(".sql")) else {
        return Ok(None);
    };
    let (version, name) = parse_file_name(file_name).ok_or_else(|| Error::FileName {
        path: path.to_owned(),
    })?;
    Ok(Some(make_step(
        version,
        name.to_owned(),
        read()?,
        Some(path.to_owned()),
    )))
}

fn make_step(version: u32, name: String, sql: String, origin: Option<Utf8PathBuf>) -> Step {
    Step {
        version,
        checksum: checksum(&sql),
        name,
        sql,
        origin,
    }
}

/// `step 3 add_owner` or the file it came from.
fn describe(step: &Step) -> String {
    match &step.origin {
        Some(path) => format!("{path}"),
        None => format!("step {} {}", step.version, step.name),
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `0027_add_owner.sql` → `(27, "add_owner")`.
fn parse_file_name(file_name: &str) -> Option<(u32, &str)> {
    let stem = file_name.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !is_identifier(name) {
        return None;
    }
    Some((digits.parse().ok()?, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_strictly() {
        assert_eq!(
            parse_file_name("0027_add_owner.sql"),
            Some((27, "add_owner"))
        );
        assert_eq!(parse_file_name("1_x.sql"), Some((1, "x")));
        for bad in [
            "add_owner.sql",
            "0027.sql",
            "0027_.sql",
            "0027_add-owner.sql",
            "x1_a.sql",
            "0027_a.sql.bak",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn checksums_ignore_only_line_endings_and_trailing_whitespace() {
        let base = checksum("CREATE TABLE t (x INT);\nINSERT INTO t VALUES (1);");
        assert_eq!(
            base,
            checksum("CREATE TABLE t (x INT);\r\nINSERT INTO t VALUES (1);\r\n")
        );
        assert_eq!(
            base,
            checksum("CREATE TABLE t (x INT); \t\nINSERT INTO t VALUES (1);\n\n\n")
        );
        assert_ne!(
            base,
            checksum(" CREATE TABLE t (x INT);\nINSERT INTO t VALUES (1);")
        );
        assert_ne!(
            base,
            checksum("CREATE TABLE t (x INT);\n\nINSERT INTO t VALUES (1);")
        );
        assert_ne!(
            base,
            checksum("create table t (x INT);\nINSERT INTO t VALUES (1);")
        );
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn the_ladder_is_validated() {
        let err =
            |steps: Vec<(u32, &str, &str)>| Ladder::new(steps).expect_err("invalid").to_string();
        assert_eq!(
            err(vec![(2, "b", "")]),
            "invalid migration ladder: step 2 b: the first version must be 1"
        );
        assert_eq!(
            err(vec![(1, "a", ""), (1, "b", "")]),
            "invalid migration ladder: step 1 b: version 1 is also step 1 a"
        );
        assert_eq!(
            err(vec![(1, "", "")]),
            "invalid migration ladder: step 1 : the name must be a non-empty identifier (letters, digits, _)"
        );
        let ladder = Ladder::new(vec![(2, "b", "B"), (1, "a", "A")]).expect("valid");
        assert_eq!(ladder.top(), 2);
        assert_eq!(ladder.step(1).map(Step::name), Some("a"));
        assert_eq!(ladder.step(0), None);
        assert_eq!(ladder.step(3), None);
        assert_eq!(Ladder::default().top(), 0);
    }
}
