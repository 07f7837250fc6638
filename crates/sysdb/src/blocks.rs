//! One pass over a closed database file: the XXH3-128 digest the intent
//! marker records, and DuckDB's own block checksums checked on the way.
//!
//! DuckDB keeps a main header and two database headers of 4 KiB each at the
//! start of the file, then blocks of the size the active database header
//! gives (256 KiB unless the file was made with another `BLOCK_SIZE`). Each
//! header and each block starts with the 8-byte checksum of the rest of it
//! (`src/common/checksum.cpp`: the XOR of every 8-byte word times
//! `0xbf58476d1ce4e5b9`, seeded with 5381), which DuckDB checks whenever it
//! reads the block. Checking them all here finds the damage a migration
//! window must not copy over the last good snapshot without asking DuckDB
//! to decompress every column; a block that does not match (damage, or a
//! free block DuckDB trimmed to zeros) only says the file must be read
//! whole through DuckDB to know.

use std::io::{self, Read};

use camino::Utf8Path;

/// The size of each of the three headers at the start of a database file.
const HEADER: usize = 4096;
/// Where the first block starts: after the main and the two database headers.
const BLOCK_START: usize = 3 * HEADER;
/// The block size of a database header that records none (made before
/// DuckDB wrote it).
const DEFAULT_BLOCK_ALLOC_SIZE: u64 = 256 * 1024;
/// The block sizes DuckDB accepts (`Storage::VerifyBlockAllocSize`).
const BLOCK_SIZES: std::ops::RangeInclusive<u64> = 16 * 1024..=256 * 1024;
/// Bytes read at a time (a whole number of blocks of every size).
const CHUNK: usize = 8 << 20;

/// What one pass over a database file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// The bytes read: the whole file.
    pub bytes: u64,
    /// The XXH3-128 of those bytes, in lowercase hex.
    pub digest: String,
    /// What the block checksums said.
    pub blocks: Blocks,
}

/// What DuckDB's block checksums said of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Blocks {
    /// Every block the active header counts matched its checksum.
    Matched {
        /// The blocks checked.
        blocks: u64,
        /// Their size in bytes.
        block_size: u64,
    },
    /// Some blocks the active header counts did not match, or lie past the
    /// end of the file: damage, or free blocks (trimmed, or truncated
    /// away). Only DuckDB's own reads can tell which.
    Mismatched {
        /// The first of them.
        first: u64,
        /// How many.
        count: u64,
        /// The blocks the header counts.
        blocks: u64,
    },
    /// The file is not laid out as this pass reads it (encrypted, headers
    /// that do not match their checksums, a block size DuckDB does not
    /// make): it says nothing about the blocks.
    Unchecked {
        /// Why.
        why: &'static str,
    },
}

impl Blocks {
    /// Whether these checksums show that every block in use is as DuckDB
    /// wrote it; otherwise only reading every table whole through DuckDB
    /// can tell damage from free blocks.
    pub(crate) fn all_match(&self) -> bool {
        matches!(self, Blocks::Matched { .. })
    }
}

/// Where the blocks are, from the three headers at the start of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    block_size: u64,
    block_count: u64,
}

/// DuckDB's block checksum (`Checksum(buffer, size)`) of `data`, whose
/// length is a multiple of 8 (every header and block is).
fn checksum(data: &[u8]) -> u64 {
    data.chunks_exact(8).fold(5381, |sum, word| {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        sum ^ u64::from_le_bytes(le).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    })
}

/// Whether `block` (a header or a block) starts with the checksum of the
/// rest of it.
fn matches_checksum(block: &[u8]) -> bool {
    let (stored, rest) = block.split_at(8);
    word(stored, 0) == checksum(rest)
}

/// The little-endian `u64` at `at` in `bytes`.
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(le)
}

/// The layout the first [`BLOCK_START`] bytes of a file give, as DuckDB
/// reads it (`SingleFileBlockManager::LoadExistingDatabase`): the magic
/// bytes after the main header's checksum, the encryption flag, both
/// database headers matching their checksums, the one with the higher
/// iteration active.
fn layout(head: &[u8]) -> Result<Layout, &'static str> {
    if head.len() < BLOCK_START {
        return Err("the file is shorter than DuckDB's three headers");
    }
    if &head[8..12] != b"DUCK" {
        return Err("the file does not start as a DuckDB database does");
    }
    // Checksum, magic bytes, version number, then the first of the flags.
    if word(head, 20) & 1 == 1 {
        return Err("the database is encrypted");
    }
    if !matches_checksum(&head[..HEADER]) {
        return Err("the main header does not match its checksum");
    }
    let header = |n: usize| -> Result<(u64, Layout), &'static str> {
        let h = &head[n * HEADER..(n + 1) * HEADER];
        if !matches_checksum(h) {
            return Err("a database header does not match its checksum");
        }
        // iteration, meta block, free list, block count, block size
        let block_size = match word(h, 40) {
            0 => DEFAULT_BLOCK_ALLOC_SIZE,
            size => size,
        };
        if !BLOCK_SIZES.contains(&block_size) || !block_size.is_power_of_two() {
            return Err("the database header gives a block size DuckDB does not make");
        }
        Ok((
            word(h, 8),
            Layout {
                block_size,
                block_count: word(h, 32),
            },
        ))
    };
    let (first, second) = (header(1)?, header(2)?);
    Ok(if first.0 > second.0 {
        first.1
    } else {
        second.1
    })
}

/// Read the closed database file at `path` once: its digest, and every
/// block the active header counts checked against its checksum, but none
/// from `in_use` on where that is given: the blocks DuckDB had while the
/// database was open (`pragma_database_size()`'s `total_blocks`). DuckDB
/// writes a header before it truncates the free blocks at the end of the
/// file, so the header may count blocks the file no longer has.
/// `progress` is told the bytes read so far.
pub(crate) fn scan(
    path: &Utf8Path,
    in_use: Option<u64>,
    progress: &dyn Fn(u64),
) -> io::Result<Scanned> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = twox_hash::XxHash3_128::new();
    let mut buf = vec![0u8; CHUNK];

    let head_len = fill(&mut file, &mut buf[..BLOCK_START])?;
    let head = &buf[..head_len];
    hasher.write(head);
    let mut read = head_len as u64;
    progress(read);
    let layout = layout(head).map(|layout| Layout {
        block_count: layout.block_count.min(in_use.unwrap_or(u64::MAX)),
        ..layout
    });

    let mut bad: Option<(u64, u64)> = None;
    let mut seen = 0u64;
    loop {
        let n = fill(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        hasher.write(chunk);
        read += n as u64;
        progress(read);
        let Ok(layout) = layout else { continue };
        // CHUNK is a whole number of blocks, so every chunk but the last
        // starts and ends at a block's boundary.
        for block in chunk.chunks(layout.block_size as usize) {
            if seen >= layout.block_count {
                break;
            }
            if block.len() as u64 != layout.block_size || !matches_checksum(block) {
                let (first, count) = bad.unwrap_or((seen, 0));
                bad = Some((first, count + 1));
            }
            seen += 1;
        }
    }
    let blocks = match layout {
        Err(why) => Blocks::Unchecked { why },
        Ok(layout) => {
            // Blocks past the end of the file: truncated away as free, or lost.
            let missing = layout.block_count.saturating_sub(seen);
            match bad {
                None if missing == 0 => Blocks::Matched {
                    blocks: layout.block_count,
                    block_size: layout.block_size,
                },
                None => Blocks::Mismatched {
                    first: seen,
                    count: missing,
                    blocks: layout.block_count,
                },
                Some((first, count)) => Blocks::Mismatched {
                    first,
                    count: count + missing,
                    blocks: layout.block_count,
                },
            }
        }
    };
    Ok(Scanned {
        bytes: read,
        digest: hex(&hasher),
        blocks,
    })
}

/// The XXH3-128 of the file at `path`, as [`scan`] gives it, with no block
/// checked: what a marker's digest is compared with.
pub(crate) fn digest(path: &Utf8Path) -> io::Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = twox_hash::XxHash3_128::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match fill(&mut file, &mut buf)? {
            0 => return Ok(hex(&hasher)),
            n => hasher.write(&buf[..n]),
        }
    }
}

fn hex(hasher: &twox_hash::XxHash3_128) -> String {
    format!("{:032x}", hasher.finish_128())
}

/// Read until `buf` is full or the file ends; the bytes read.
fn fill(file: &mut fs_err::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;
    use duckdb::Connection;

    fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = Utf8PathBuf::try_from(dir.path().join("system.duckdb")).expect("utf-8");
        (dir, path)
    }

    /// A database made by this DuckDB with `options` for its ATTACH, two
    /// tables of rows, checkpointed and closed.
    fn made(path: &Utf8Path, options: &str) {
        let conn = Connection::open_in_memory().expect("in-memory DuckDB");
        conn.execute_batch(&format!(
            "ATTACH '{path}' AS db ({options});
             CREATE TABLE db.items AS SELECT range AS id, md5(range::VARCHAR) AS body FROM range(60000);
             CREATE TABLE db.more AS SELECT range AS n FROM range(1000);
             CHECKPOINT db;
             DETACH db;"
        ))
        .expect("a database");
    }

    /// `PRAGMA database_size` of the file: its total blocks and block size.
    fn duckdb_blocks(path: &Utf8Path) -> (u64, u64) {
        let conn = Connection::open(path).expect("open");
        conn.query_row(
            "SELECT total_blocks, block_size FROM pragma_database_size() WHERE database_name = current_database()",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .expect("database_size")
    }

    #[test]
    fn every_block_duckdb_writes_matches_its_checksum() {
        for options in [
            "STORAGE_VERSION 'v1.0.0'",
            "STORAGE_VERSION 'v1.4.0'",
            "STORAGE_VERSION 'v1.4.0', BLOCK_SIZE 16384",
            "STORAGE_VERSION 'latest'",
        ] {
            let (_dir, path) = temp();
            made(&path, options);
            let scanned = scan(&path, None, &|_| {}).expect("scan");
            let (total, block_size) = duckdb_blocks(&path);
            assert!(total > 1, "{options}: {total} blocks");
            assert_eq!(
                scanned.blocks,
                Blocks::Matched {
                    blocks: total,
                    block_size
                },
                "{options}"
            );
            let bytes = fs_err::read(&path).expect("read");
            assert_eq!(scanned.bytes, bytes.len() as u64);
            let oneshot = format!("{:032x}", twox_hash::XxHash3_128::oneshot(&bytes));
            assert_eq!(scanned.digest, oneshot, "{options}");
            assert_eq!(digest(&path).expect("digest"), oneshot, "{options}");
        }
    }

    #[test]
    fn a_flipped_byte_in_a_block_duckdb_reads_is_a_mismatch() {
        let (_dir, path) = temp();
        made(&path, "STORAGE_VERSION 'v1.4.0'");
        let (block, block_size) = {
            let conn = Connection::open(&path).expect("open");
            let block: i64 = conn
                .query_row(
                    "SELECT max(block_id) FROM pragma_storage_info('items') WHERE column_name = 'body' AND persistent",
                    [],
                    |r| r.get(0),
                )
                .expect("a block of the table");
            (block as u64, duckdb_blocks(&path).1)
        };
        let mut bytes = fs_err::read(&path).expect("read");
        let at = BLOCK_START + (block * block_size) as usize + 1000;
        bytes[at] ^= 0x40;
        fs_err::write(&path, &bytes).expect("write");

        let scanned = scan(&path, None, &|_| {}).expect("scan");
        assert!(
            matches!(scanned.blocks, Blocks::Mismatched { first, count: 1, .. } if first == block),
            "{:?}",
            scanned.blocks
        );
        assert!(!scanned.blocks.all_match());
        // DuckDB agrees.
        let conn = Connection::open(&path).expect("the catalog still reads");
        let read = conn.query_row("SELECT bit_xor(hash(body)) FROM items", [], |r| {
            r.get::<_, u64>(0)
        });
        assert!(read
            .expect_err("DuckDB's checksum fails too")
            .to_string()
            .contains("checksum"),);
    }

    #[test]
    fn blocks_past_the_end_of_the_file_are_counted_as_mismatched() {
        let (_dir, path) = temp();
        made(&path, "STORAGE_VERSION 'v1.4.0'");
        let (total, block_size) = duckdb_blocks(&path);
        let file = fs_err::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(BLOCK_START as u64 + (total - 1) * block_size)
            .expect("truncate");
        let scanned = scan(&path, None, &|_| {}).expect("scan");
        assert_eq!(
            scanned.blocks,
            Blocks::Mismatched {
                first: total - 1,
                count: 1,
                blocks: total
            }
        );
    }

    #[test]
    fn free_blocks_duckdb_truncated_away_are_not_in_use() {
        let (_dir, path) = temp();
        made(&path, "STORAGE_VERSION 'v1.4.0'");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE last AS SELECT range AS id, md5(range::VARCHAR) AS body FROM range(200000);
             CHECKPOINT;
             DROP TABLE last;
             CHECKPOINT;",
        )
        .expect("blocks freed at the end");
        let in_use: i64 = conn
            .query_row(
                "SELECT total_blocks FROM pragma_database_size() WHERE database_name = current_database()",
                [],
                |r| r.get(0),
            )
            .expect("database_size");
        drop(conn);
        let header = scan(&path, None, &|_| {}).expect("scan");
        assert!(
            matches!(header.blocks, Blocks::Mismatched { first, .. } if first == in_use as u64),
            "the header counts the truncated blocks: {:?}",
            header.blocks
        );
        let scanned = scan(&path, Some(in_use as u64), &|_| {}).expect("scan");
        assert!(scanned.blocks.all_match(), "{:?}", scanned.blocks);
    }

    #[test]
    fn the_layout_is_read_as_duckdb_reads_it() {
        let (_dir, path) = temp();
        made(&path, "STORAGE_VERSION 'v1.4.0'");
        let bytes = fs_err::read(&path).expect("read");
        let head = &bytes[..BLOCK_START];
        let good = layout(head).expect("a layout");
        assert_eq!(good.block_size, 256 * 1024);

        let changed = |at: usize, value: u8| {
            let mut head = head.to_vec();
            head[at] = value;
            layout(&head)
        };
        let table: [(&str, Result<Layout, &str>); 5] = [
            ("short", layout(&head[..HEADER])),
            ("magic", changed(9, b'X')),
            ("encrypted", changed(20, 1)),
            ("main header damaged", changed(HEADER - 1, 0xff)),
            ("database header damaged", changed(2 * HEADER + 100, 0xff)),
        ];
        let expected = [
            "the file is shorter than DuckDB's three headers",
            "the file does not start as a DuckDB database does",
            "the database is encrypted",
            "the main header does not match its checksum",
            "a database header does not match its checksum",
        ];
        for ((case, got), want) in table.into_iter().zip(expected) {
            assert_eq!(got, Err(want), "{case}");
        }

        // A file that is not a database is hashed whole and not checked.
        let (_other, text) = temp();
        fs_err::write(&text, b"not a database").expect("write");
        let scanned = scan(&text, None, &|_| {}).expect("scan");
        assert_eq!(scanned.bytes, 14);
        assert_eq!(
            scanned.blocks,
            Blocks::Unchecked {
                why: "the file is shorter than DuckDB's three headers"
            }
        );
    }
}
