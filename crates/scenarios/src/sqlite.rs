//! A real, empty SQLite database file, written byte by byte from the
//! format's specification (<https://www.sqlite.org/fileformat2.html>): the
//! 100-byte header and page 1, an empty `sqlite_schema` table b-tree leaf.
//! `sqlite3 FILE 'PRAGMA integrity_check'` answers `ok` for it.

/// The page size of the file.
const PAGE: usize = 4096;

/// The bytes of an empty SQLite 3 database with one page.
pub fn empty_database() -> Vec<u8> {
    let mut page = vec![0u8; PAGE];
    page[..16].copy_from_slice(b"SQLite format 3\0");
    put_u16(&mut page, 16, PAGE as u16); // page size
    page[18] = 1; // file format write version: legacy
    page[19] = 1; // file format read version: legacy
    page[20] = 0; // reserved bytes per page
    page[21] = 64; // maximum embedded payload fraction
    page[22] = 32; // minimum embedded payload fraction
    page[23] = 32; // leaf payload fraction
    put_u32(&mut page, 24, 1); // file change counter
    put_u32(&mut page, 28, 1); // database size in pages
    put_u32(&mut page, 44, 4); // schema format number
    put_u32(&mut page, 56, 1); // text encoding: UTF-8
    put_u32(&mut page, 92, 1); // version-valid-for: the change counter
    put_u32(&mut page, 96, 3_045_001); // SQLITE_VERSION_NUMBER that wrote it
                                       // Page 1's b-tree header, after the file header.
    page[100] = 0x0D; // a table b-tree leaf page
    put_u16(&mut page, 103, 0); // no cells
    put_u16(&mut page, 105, PAGE as u16); // cell content area starts at the end
    page
}

fn put_u16(page: &mut [u8], at: usize, value: u16) {
    page[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn put_u32(page: &mut [u8], at: usize, value: u32) {
    page[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
