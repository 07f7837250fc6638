//! The framing of DuckDB's write-ahead log, read without DuckDB: where
//! each commit ends, and which entry is damaged.
//!
//! As DuckDB 2.0 writes it (`src/storage/write_ahead_log.cpp`) and replays
//! it (`src/storage/wal_replay.cpp`), a version-2 log is a header — the
//! `WAL_VERSION` entry, serialized without a frame — followed by framed
//! entries `[u64 size][u64 checksum][payload]` (little-endian), each
//! payload a serialized object whose first field (id 100) is the entry's
//! type. A `WAL_FLUSH` entry ends a commit. DuckDB replays every complete
//! commit and ignores what follows the last one (a torn tail), but refuses
//! the whole log when an entry's checksum does not match.

use std::io::{self, Read as _, Seek as _};

use camino::Utf8Path;

use serde::Serialize;

/// The entry type that ends a commit.
const WAL_FLUSH: u64 = 100;
/// The entry type of a `CREATE TYPE`.
const CREATE_TYPE: u64 = 13;
/// The entry types that write data: a sequence's value, rows inserted,
/// deleted, updated, a row group written (`WALType` in DuckDB's source).
const DATA: [u64; 5] = [10, 26, 27, 28, 29];
/// The entry type of the header.
const WAL_VERSION: u64 = 98;
/// The field id of an entry's type.
const FIELD_TYPE: u16 = 100;
/// The field id of the header's version.
const FIELD_VERSION: u16 = 101;
/// The field id of the header's database identifier (a list of bytes).
const FIELD_DB_IDENTIFIER: u16 = 102;
/// The field id of the header's checkpoint iteration.
const FIELD_CHECKPOINT_ITERATION: u16 = 103;
/// The end of a serialized object.
const OBJECT_END: u16 = 0xFFFF;

/// The commits of a version-2 write-ahead log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalLayout {
    /// The log's size in bytes.
    pub len: u64,
    /// Where the header ends: a log cut here holds no commit.
    pub header_end: u64,
    /// Where the complete commits end (just after each `WAL_FLUSH`): a log
    /// cut at one of these replays exactly the commits up to it.
    pub commits: Commits,
    /// The first commit (counted from 1) that creates a type, if one
    /// does: a later commit that casts to it replays only from a DuckDB
    /// that holds it.
    pub first_type_commit: Option<usize>,
    /// The last commit (counted from 1) that writes data (rows inserted,
    /// deleted or updated, a sequence drawn), 0 if none does: the commits
    /// after it change the catalog only.
    pub last_data_commit: usize,
    /// What follows the last complete commit.
    pub tail: Tail,
}

/// What follows the last complete commit of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Tail {
    /// Nothing: the log ends with a commit.
    Clean,
    /// Entries of a transaction that never committed, or an entry cut
    /// short: DuckDB ignores them.
    Uncommitted {
        /// Where they start.
        at: u64,
    },
    /// An entry whose checksum does not match, or that is empty: DuckDB
    /// refuses the whole log. The framing after it cannot be trusted.
    Damaged {
        /// Where the entry's frame starts.
        at: u64,
        /// What is wrong with it.
        problem: String,
    },
}

impl WalLayout {
    /// Read the framing of the log `bytes`. `None` when it is not a
    /// version-2 log this reader knows (an older unframed log, an
    /// encrypted one, or a damaged header).
    #[cfg(test)]
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        Self::read(bytes, bytes.len() as u64).unwrap_or(None)
    }

    /// Read the framing of a log of `len` bytes from `log`, as a stream:
    /// what this holds is a buffer of [`CHUNK`] bytes and the commits' ends,
    /// whatever the log's size, and an entry's claimed size is never
    /// allocated. `None` when it is not a version-2 log this reader knows
    /// (an older unframed log, an encrypted one, or a damaged header).
    pub fn read(log: impl io::Read, len: u64) -> io::Result<Option<Self>> {
        Self::read_marking(log, len, MARKS)
    }

    /// [`read`](Self::read), holding at most `2 * marks` commit ends.
    fn read_marking(log: impl io::Read, len: u64, marks: usize) -> io::Result<Option<Self>> {
        let mut log = io::BufReader::with_capacity(CHUNK, log);
        // The header is a few dozen bytes; it is parsed from the start.
        let mut start = Vec::with_capacity(HEADER_MAX);
        (&mut log).take(HEADER_MAX as u64).read_to_end(&mut start)?;
        let mut r = Reader {
            bytes: &start,
            at: 0,
        };
        let Some(header_end) = r.header() else {
            return Ok(None);
        };
        let mut stream = Stream {
            log: io::Read::chain(&start[header_end..], log),
            at: header_end as u64,
            chunk: vec![0; CHUNK],
        };
        let mut commits = Commits::new(marks);
        let (mut creates_type, mut first_type_commit) = (false, None);
        let (mut writes_data, mut last_data_commit) = (false, 0);
        let tail = loop {
            let frame = stream.at;
            if frame == len {
                break Tail::Clean;
            }
            let Some(head) = stream.exact(16)? else {
                break Tail::Uncommitted { at: frame };
            };
            let size = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
            let checksum = u64::from_le_bytes(head[8..].try_into().unwrap_or_default());
            // A size beyond the end is a torn entry (or garbage): DuckDB
            // ignores it, and it is never allocated here.
            if size > len.saturating_sub(stream.at) {
                break Tail::Uncommitted { at: frame };
            }
            let Some((computed, kind)) = stream.payload(size)? else {
                break Tail::Uncommitted { at: frame };
            };
            if size == 0 {
                break Tail::Damaged {
                    at: frame,
                    problem: "an empty entry".to_owned(),
                };
            }
            if computed != checksum {
                break Tail::Damaged {
                    at: frame,
                    problem: format!(
                        "computed checksum {computed} does not match stored checksum {checksum}"
                    ),
                };
            }
            creates_type |= kind == Some(CREATE_TYPE);
            writes_data |= kind.is_some_and(|k| DATA.contains(&k));
            if kind == Some(WAL_FLUSH) {
                commits.push(stream.at);
                if writes_data {
                    last_data_commit = commits.len();
                }
                writes_data = false;
                if creates_type && first_type_commit.is_none() {
                    first_type_commit = Some(commits.len());
                }
                creates_type = false;
            }
        };
        // A damaged or torn entry counts from the end of the last commit:
        // the entries between belong to the transaction it is part of.
        let header_end = header_end as u64;
        let uncommitted_from = commits.last.unwrap_or(header_end);
        let tail = match tail {
            Tail::Clean if uncommitted_from < len => Tail::Uncommitted {
                at: uncommitted_from,
            },
            Tail::Uncommitted { .. } => Tail::Uncommitted {
                at: uncommitted_from,
            },
            other => other,
        };
        Ok(Some(Self {
            len,
            header_end,
            commits,
            first_type_commit,
            last_data_commit,
            tail,
        }))
    }

    /// Where a log keeping the first `kept` commits is cut: from the
    /// nearest commit end held, the framing of `log` (this log) is read
    /// again up to it.
    pub fn cut(&self, kept: usize, log: &Utf8Path) -> io::Result<u64> {
        let (mut counted, from) = self.commits.mark(kept);
        let mut at = from.unwrap_or(self.header_end);
        if counted == kept {
            return Ok(at);
        }
        let mut log = io::BufReader::with_capacity(4096, fs_err::File::open(log)?);
        log.seek(io::SeekFrom::Start(at))?;
        let mut head = [0u8; 16 + 3];
        while counted < kept {
            log.read_exact(&mut head)?;
            let size = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
            if entry_type(&head[16..]) == Some(WAL_FLUSH) {
                counted += 1;
            }
            at += 16 + size;
            log.seek(io::SeekFrom::Start(at))?;
        }
        Ok(at)
    }
}

/// How many commit ends a [`Commits`] holds at most, twice over: 64 KiB.
const MARKS: usize = 4096;

/// Where a log's commits end, in memory that does not grow with the log:
/// every commit's end while there are fewer than `2 * marks`, then every
/// `stride`-th (the stride doubling each time the marks fill up); the rest
/// are found again by reading the framing from the nearest mark
/// ([`WalLayout::cut`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commits {
    /// How many there are.
    count: usize,
    /// The end of every commit this far apart is held.
    stride: usize,
    /// `marks[i]`: the end of commit `(i + 1) * stride`.
    marks: Vec<u64>,
    /// The end of the last commit.
    last: Option<u64>,
    /// The most marks held before they are thinned.
    most: usize,
}

impl Commits {
    fn new(marks: usize) -> Self {
        Self {
            count: 0,
            stride: 1,
            marks: Vec::new(),
            last: None,
            most: 2 * marks.max(1),
        }
    }

    /// The next commit ends at `end`.
    fn push(&mut self, end: u64) {
        self.count += 1;
        self.last = Some(end);
        if self.count % self.stride == 0 {
            self.marks.push(end);
            if self.marks.len() == self.most {
                // Keep the end of every (2 * stride)-th commit.
                self.marks = self.marks.iter().skip(1).step_by(2).copied().collect();
                self.stride *= 2;
            }
        }
    }

    /// How many complete commits the log holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The largest number of commits, at most `k`, whose end is held, and
    /// that end (`None` for none: the header's end).
    fn mark(&self, k: usize) -> (usize, Option<u64>) {
        let k = k.min(self.count);
        if k == self.count && self.last.is_some() {
            return (k, self.last);
        }
        match (k / self.stride)
            .checked_sub(1)
            .and_then(|i| self.marks.get(i))
        {
            Some(end) => (k / self.stride * self.stride, Some(*end)),
            None => (0, None),
        }
    }
}

/// Where a salvage may cut a log: after any of its commits when its
/// framing reads, else after any byte (DuckDB ignores an entry cut short,
/// so a byte prefix replays the commits it holds whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cuts<'a> {
    /// After the first `k` commits of the log at this path.
    Commits(&'a WalLayout, &'a Utf8Path),
    /// After the first `k` bytes of a log of this many.
    Bytes(u64),
}

impl Cuts<'_> {
    /// The largest `k`: the whole log.
    pub fn count(&self) -> usize {
        match self {
            Cuts::Commits(layout, _) => layout.commits.len(),
            Cuts::Bytes(len) => usize::try_from(*len).unwrap_or(usize::MAX),
        }
    }

    /// Where the log keeping `k` is cut.
    pub fn cut(&self, k: usize) -> io::Result<u64> {
        match self {
            Cuts::Commits(layout, log) => layout.cut(k, log),
            Cuts::Bytes(_) => Ok(k as u64),
        }
    }

    /// The commits a log keeping `k` holds, where that is known.
    pub fn commits(&self, k: usize) -> Option<u64> {
        match self {
            Cuts::Commits(..) => Some(k as u64),
            Cuts::Bytes(_) => None,
        }
    }
}

/// How much of the log the reader holds at once.
const CHUNK: usize = 64 * 1024;
/// The most the header can take: its type, its version, a database
/// identifier of 16 bytes as varints and a checkpoint iteration.
const HEADER_MAX: usize = 256;

/// The framed entries of a log, read in chunks.
struct Stream<R> {
    log: R,
    /// The offset in the log of the next byte.
    at: u64,
    /// The buffer, [`CHUNK`] bytes, a multiple of the checksum's word.
    chunk: Vec<u8>,
}

impl<R: io::Read> Stream<R> {
    /// The next `n` (at most [`CHUNK`]) bytes, or `None` where the log ends
    /// first.
    fn exact(&mut self, n: usize) -> io::Result<Option<&[u8]>> {
        let mut got = 0;
        while got < n {
            match self.log.read(&mut self.chunk[got..n]) {
                Ok(0) => return Ok(None),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.at += n as u64;
        Ok(Some(&self.chunk[..n]))
    }

    /// Read a payload of `size` bytes, returning DuckDB's checksum of it and
    /// its entry type, or `None` where the log ends first.
    fn payload(&mut self, size: u64) -> io::Result<Option<(u64, Option<u64>)>> {
        let mut checksum = Checksum::new();
        let mut kind = None;
        let mut left = size;
        let mut first = true;
        while left > 0 {
            let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let Some(bytes) = self.exact(n)? else {
                return Ok(None);
            };
            if first {
                kind = entry_type(bytes);
                first = false;
            }
            checksum.update(bytes);
            left -= n as u64;
        }
        Ok(Some((checksum.finish(), kind)))
    }
}

/// DuckDB's checksum of an entry (`src/common/checksum.cpp`): each whole
/// 8-byte word multiplied and folded in by xor, the remainder hashed as a
/// string; fed in pieces whose lengths are multiples of 8 but for the last.
struct Checksum {
    result: u64,
    rest: Vec<u8>,
}

impl Checksum {
    fn new() -> Self {
        Self {
            result: 5381,
            rest: Vec::new(),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
            self.result ^= x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        }
        self.rest = words.remainder().to_vec();
    }

    fn finish(self) -> u64 {
        if self.rest.is_empty() {
            self.result
        } else {
            self.result ^ checksum_remainder(&self.rest)
        }
    }
}

/// The type of a framed entry: field 100, the first of its object.
fn entry_type(payload: &[u8]) -> Option<u64> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    (r.u16()? == FIELD_TYPE).then(|| r.varint()).flatten()
}

/// DuckDB's checksum of `bytes` in one piece.
#[cfg(test)]
fn duckdb_checksum(bytes: &[u8]) -> u64 {
    let mut checksum = Checksum::new();
    checksum.update(bytes);
    checksum.finish()
}

/// The string hash DuckDB applies to the last 1–7 bytes (robin-hood
/// hashing's murmur variant, whole words first, of which there are none).
fn checksum_remainder(rest: &[u8]) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const SEED: u64 = 0xe17a_1465;
    const R: u32 = 47;
    let mut h = SEED ^ (rest.len() as u64).wrapping_mul(M);
    let mut tail = 0u64;
    for (i, b) in rest.iter().enumerate() {
        tail |= u64::from(*b) << (8 * i);
    }
    h ^= tail;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// A cursor over bytes in DuckDB's binary serialization.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    /// An unsigned LEB128 value, as `VarIntEncode` writes it.
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// The header, unframed: type `WAL_VERSION`, version 2, then the
    /// optional database identifier and checkpoint iteration. Returns
    /// where it ends.
    fn header(&mut self) -> Option<usize> {
        if self.u16()? != FIELD_TYPE || self.varint()? != WAL_VERSION {
            return None;
        }
        if self.u16()? != FIELD_VERSION || self.varint()? != 2 {
            return None;
        }
        loop {
            match self.u16()? {
                OBJECT_END => return Some(self.at),
                FIELD_DB_IDENTIFIER => {
                    let count = self.varint()?;
                    for _ in 0..count {
                        self.varint()?;
                    }
                }
                FIELD_CHECKPOINT_ITERATION => {
                    self.varint()?;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u64).to_le_bytes().to_vec();
        out.extend(duckdb_checksum(payload).to_le_bytes());
        out.extend(payload);
        out
    }

    /// An entry of `kind` with a few bytes of body.
    fn entry(kind: u8) -> Vec<u8> {
        let mut payload = FIELD_TYPE.to_le_bytes().to_vec();
        payload.push(kind);
        payload.extend([0x65, 0, 1, 2, 3, 0xff, 0xff]);
        frame(&payload)
    }

    fn flush() -> Vec<u8> {
        let mut payload = FIELD_TYPE.to_le_bytes().to_vec();
        payload.push(100);
        payload.extend(OBJECT_END.to_le_bytes());
        frame(&payload)
    }

    fn header() -> Vec<u8> {
        let mut h = FIELD_TYPE.to_le_bytes().to_vec();
        h.push(98);
        h.extend(FIELD_VERSION.to_le_bytes());
        h.push(2);
        h.extend(FIELD_DB_IDENTIFIER.to_le_bytes());
        h.push(16);
        h.extend([0x81, 0x01].repeat(8));
        h.extend([7u8; 8]);
        h.extend(FIELD_CHECKPOINT_ITERATION.to_le_bytes());
        h.extend([0x96, 0x01]);
        h.extend(OBJECT_END.to_le_bytes());
        h
    }

    /// Where each commit of the log `bytes` ends, as [`WalLayout::cut`]
    /// finds it in a file holding them.
    fn ends(layout: &WalLayout, bytes: &[u8]) -> Vec<u64> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = camino::Utf8PathBuf::try_from(dir.path().join("log")).expect("utf8");
        fs_err::write(&path, bytes).expect("write");
        (1..=layout.commits.len())
            .map(|k| layout.cut(k, &path).expect("cut"))
            .collect()
    }

    /// However many commits a log holds, the reader holds at most `2 *
    /// marks` of their ends, and every cut is found again exactly.
    #[test]
    fn the_commit_ends_held_do_not_grow_with_the_log() {
        let mut log = header();
        let mut want = Vec::new();
        for i in 0..1000 {
            log.extend(entry(26));
            if i % 3 == 0 {
                log.extend(entry(20));
            }
            log.extend(flush());
            want.push(log.len() as u64);
        }
        let header_end = header().len() as u64;
        for marks in [1, 2, 3, 16, MARKS] {
            let layout = WalLayout::read_marking(log.as_slice(), log.len() as u64, marks)
                .expect("read")
                .expect("parsed");
            assert!(
                layout.commits.marks.len() < 2 * marks,
                "{marks}: {:?}",
                layout.commits
            );
            assert_eq!(layout.commits.len(), 1000, "{marks}");
            assert_eq!(ends(&layout, &log), want, "{marks}");
            let dir = tempfile::tempdir().expect("tempdir");
            let path = camino::Utf8PathBuf::try_from(dir.path().join("log")).expect("utf8");
            fs_err::write(&path, &log).expect("write");
            assert_eq!(layout.cut(0, &path).expect("cut"), header_end);
        }
    }

    #[test]
    fn the_checksum_is_duckdbs() {
        // The empty input and one word, by hand from checksum.cpp; the
        // scenario tests check whole logs DuckDB wrote.
        assert_eq!(duckdb_checksum(b""), 5381);
        assert_eq!(
            duckdb_checksum(&1u64.to_le_bytes()),
            5381 ^ 0xbf58_476d_1ce4_e5b9
        );
    }

    #[test]
    fn framing_table() {
        let h = header();
        let one = [h.clone(), entry(26), flush()].concat();
        let two = [one.clone(), entry(20), entry(26), flush()].concat();
        let last_flush = two.len() - flush().len();
        let mut flipped = two.clone();
        flipped[last_flush + 16] ^= 1;
        let n = |v: usize| v as u64;
        let cases: Vec<(&str, Vec<u8>, Vec<usize>, Tail)> = vec![
            ("header only", h.clone(), vec![], Tail::Clean),
            ("one commit", one.clone(), vec![one.len()], Tail::Clean),
            (
                "two commits",
                two.clone(),
                vec![one.len(), two.len()],
                Tail::Clean,
            ),
            (
                "uncommitted entries after",
                [two.clone(), entry(26)].concat(),
                vec![one.len(), two.len()],
                Tail::Uncommitted { at: n(two.len()) },
            ),
            (
                "a torn frame",
                two[..two.len() - 4].to_vec(),
                vec![one.len()],
                Tail::Uncommitted { at: n(one.len()) },
            ),
            (
                "a torn size field",
                [one.clone(), vec![1, 2, 3]].concat(),
                vec![one.len()],
                Tail::Uncommitted { at: n(one.len()) },
            ),
            (
                "a flipped byte in the last",
                flipped,
                vec![one.len()],
                Tail::Damaged {
                    at: n(last_flush),
                    problem: String::new(),
                },
            ),
            (
                "an empty entry",
                [one.clone(), frame(&[])].concat(),
                vec![one.len()],
                Tail::Damaged {
                    at: n(one.len()),
                    problem: "an empty entry".to_owned(),
                },
            ),
        ];
        for (name, bytes, commits, tail) in cases {
            let layout = WalLayout::parse(&bytes).unwrap_or_else(|| panic!("{name}: unparsed"));
            let commits: Vec<u64> = commits.into_iter().map(n).collect();
            assert_eq!(ends(&layout, &bytes), commits, "{name}");
            assert_eq!(layout.header_end, n(h.len()), "{name}");
            assert_eq!(layout.len, n(bytes.len()), "{name}");
            match (&layout.tail, &tail) {
                (Tail::Damaged { at, problem }, Tail::Damaged { at: want, .. }) => {
                    assert_eq!(at, want, "{name}");
                    assert!(!problem.is_empty(), "{name}");
                }
                (got, want) => assert_eq!(got, want, "{name}"),
            }
        }
    }

    /// DuckDB's checksum in one piece, as `checksum.cpp` computes it.
    fn one_shot(bytes: &[u8]) -> u64 {
        let mut words = bytes.chunks_exact(8);
        let mut result: u64 = 5381;
        for word in &mut words {
            let x = u64::from_le_bytes(word.try_into().expect("a word"));
            result ^= x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        }
        if !words.remainder().is_empty() {
            result ^= checksum_remainder(words.remainder());
        }
        result
    }

    /// An entry larger than the reader's buffer is checked chunk by chunk
    /// to the same checksum; a size that runs past the end is a torn entry,
    /// not an allocation.
    #[test]
    fn entries_larger_than_the_buffer_are_read_in_chunks() {
        let big = |len: usize| -> Vec<u8> {
            let mut payload = FIELD_TYPE.to_le_bytes().to_vec();
            payload.push(26);
            payload.extend((0..len).map(|i| (i * 7 % 251) as u8));
            payload
        };
        for len in [0, 5, CHUNK - 3, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let payload = big(len);
            let mut stream = Stream {
                log: payload.as_slice(),
                at: 0,
                chunk: vec![0; CHUNK],
            };
            let (checksum, kind) = stream
                .payload(payload.len() as u64)
                .expect("read")
                .expect("whole");
            assert_eq!(checksum, one_shot(&payload), "{len}");
            assert_eq!(kind, Some(26), "{len}");
        }
        let h = header();
        let log = [h.clone(), frame(&big(3 * CHUNK + 5)), flush()].concat();
        let layout = WalLayout::parse(&log).expect("parsed");
        assert_eq!(ends(&layout, &log), [log.len() as u64]);
        assert_eq!(layout.tail, Tail::Clean);
        let torn = &log[..h.len() + CHUNK];
        let layout = WalLayout::parse(torn).expect("parsed");
        assert_eq!(ends(&layout, torn), Vec::<u64>::new());
        assert_eq!(layout.tail, Tail::Uncommitted { at: h.len() as u64 });
        let mut huge = h.clone();
        huge.extend(u64::MAX.to_le_bytes());
        huge.extend(0u64.to_le_bytes());
        huge.extend([0u8; 64]);
        let layout = WalLayout::parse(&huge).expect("parsed");
        assert_eq!(layout.tail, Tail::Uncommitted { at: h.len() as u64 });
    }

    /// A real log whose commit is larger than the reader's buffer: read
    /// from the file, its commit ends where a cut log still replays it.
    #[test]
    fn a_real_log_with_large_entries_is_read_as_a_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = camino::Utf8PathBuf::try_from(dir.path().join("x.duckdb")).expect("utf8");
        let conn = duckdb::Connection::open(&db).expect("open");
        conn.execute_batch("CREATE TABLE t (id BIGINT, s VARCHAR); CHECKPOINT;")
            .expect("table");
        conn.execute_batch(sysdb_scenarios::child::CHECKPOINTS_OFF)
            .expect("checkpoints off");
        conn.execute_batch(
            "INSERT INTO t SELECT i, repeat('x', 60) || i FROM range(100000) r(i); INSERT INTO t VALUES (-1, 'last');",
        )
        .expect("two commits");
        drop(conn);
        let wal = format!("{db}.wal");
        let file = fs_err::File::open(&wal).expect("wal");
        let len = file.metadata().expect("size").len();
        assert!(len > 4 * CHUNK as u64, "{len} bytes");
        let layout = WalLayout::read(file, len).expect("read").expect("parsed");
        assert_eq!(layout.commits.len(), 2, "{layout:?}");
        assert_eq!(layout.tail, Tail::Clean);
        let bytes = fs_err::read(&wal).expect("read the log");
        let mut at = usize::try_from(layout.header_end).expect("fits");
        let mut largest = 0;
        while at < bytes.len() {
            let size = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("a size"));
            largest = largest.max(size);
            at += 16 + usize::try_from(size).expect("fits");
        }
        assert!(largest > CHUNK as u64, "the largest entry: {largest} bytes");
        // Cut after the first commit, DuckDB replays exactly its rows.
        let cut = usize::try_from(layout.cut(1, Utf8Path::new(&wal)).expect("cut")).expect("fits");
        fs_err::write(&wal, &bytes[..cut]).expect("cut");
        let conn = duckdb::Connection::open(&db).expect("replays");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 100_000);
    }

    #[test]
    fn what_is_not_a_version_2_log_is_not_parsed() {
        let mut v1 = header();
        v1[3] = 1;
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("version 1", v1),
            ("garbage", b"SQLite format 3\0".to_vec()),
            ("cut header", header()[..5].to_vec()),
        ] {
            assert_eq!(WalLayout::parse(&bytes), None, "{name}");
        }
    }
}
