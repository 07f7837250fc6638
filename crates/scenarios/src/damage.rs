//! Real damage to the bytes DuckDB wrote.

use camino::Utf8Path;

use crate::{Error, Result};

/// Where the pages [`flip_a_byte_until`] tries begin: past DuckDB's file
/// headers (three 4 KiB headers).
const FIRST_PAGE: u64 = 12_288;
/// The pages tried are this far apart.
const PAGE: u64 = 4096;
/// The byte flipped within a page.
const IN_PAGE: u64 = 100;

/// Flip every bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Utf8Path, offset: u64) -> Result<()> {
    let mut bytes = fs_err::read(path).map_err(Error::io("reading", path))?;
    let byte = usize::try_from(offset)
        .ok()
        .and_then(|at| bytes.get_mut(at))
        .ok_or_else(|| Error::Offset {
            path: path.to_owned(),
            offset,
        })?;
    *byte ^= 0xFF;
    fs_err::write(path, bytes).map_err(Error::io("writing", path))
}

/// Cut `path` to `len` bytes.
pub fn truncate(path: &Utf8Path, len: u64) -> Result<()> {
    fs_err::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .map_err(Error::io("truncating", path))
}

/// Flip a byte in one 4 KiB page after another (past the headers; from
/// the end of the file when `from_the_end`) until `damaged` says the file
/// is damaged as wanted; each flip that is not is undone. Returns the
/// offset of the byte left flipped.
pub fn flip_a_byte_until(
    path: &Utf8Path,
    from_the_end: bool,
    damaged: impl Fn(&Utf8Path) -> bool,
) -> Result<u64> {
    let original = fs_err::read(path).map_err(Error::io("reading", path))?;
    let len = original.len() as u64;
    let mut pages: Vec<u64> = (FIRST_PAGE..len)
        .step_by(PAGE as usize)
        .filter(|page| page + IN_PAGE < len)
        .collect();
    if from_the_end {
        pages.reverse();
    }
    for page in pages {
        let offset = page + IN_PAGE;
        flip_byte(path, offset)?;
        if damaged(path) {
            return Ok(offset);
        }
        fs_err::write(path, &original).map_err(Error::io("restoring", path))?;
    }
    Err(Error::Undamaged {
        path: path.to_owned(),
    })
}

/// Flip a byte in successive pages until DuckDB refuses to open the
/// database (a checksum error in a block the open reads); returns the
/// offset flipped.
pub fn corrupt_a_block(db: &Utf8Path) -> Result<u64> {
    flip_a_byte_until(db, false, |db| crate::connect(db).is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flip_is_undone_unless_it_damages_and_the_offset_is_returned() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = crate::utf8(tmp.path()).expect("utf-8").join("file");
        fs_err::write(&path, vec![0u8; 5 * 4096]).expect("write");
        // Damaged as wanted once the second page tried is flipped.
        let offset = flip_a_byte_until(&path, false, |p| {
            fs_err::read(p).expect("read")[16_384 + 100] == 0xFF
        })
        .expect("damaged");
        assert_eq!(offset, 16_384 + 100);
        let bytes = fs_err::read(&path).expect("read");
        assert_eq!(
            bytes.iter().filter(|b| **b != 0).count(),
            1,
            "only one byte left flipped"
        );

        let err = flip_a_byte_until(&path, true, |_| false).expect_err("never damaged");
        assert!(matches!(err, Error::Undamaged { .. }), "{err}");
        assert_eq!(
            fs_err::read(&path).expect("read"),
            bytes,
            "every try undone"
        );

        let err = flip_byte(&path, 1 << 20).expect_err("past the end");
        assert_eq!(
            err.to_string(),
            format!("{path} has no byte at offset 1048576")
        );
    }
}
