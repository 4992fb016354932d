//! Pack files: append-only runs of block records.
//!
//! A pack is a 16-byte header (`TESSPACK`, format version u32 LE, pack id
//! u32 LE) followed by records. A record is a 12-byte header (`TR`, CID
//! length u16 LE, data length u64 LE), the CID's bytes, then the block's
//! bytes. The index points at the data itself, so a read is one `pread`; the
//! record header costs about 50 bytes per block (0.02% of a 256 KiB leaf) and
//! lets compaction walk a pack without the index, and a person rebuild an
//! index from the packs alone.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cid::Cid;

use crate::direct::{self, DirectError, Stage};
use crate::error::StorageError;
use crate::tables::FORMAT_VERSION;

/// Magic bytes at the start of every pack file.
const PACK_MAGIC: [u8; 8] = *b"TESSPACK";
/// Length of the pack file header.
pub(crate) const PACK_HEADER_LEN: u64 = 16;
/// Magic bytes at the start of every record.
const RECORD_MAGIC: [u8; 2] = *b"TR";
/// Length of a record header before the CID bytes.
pub(crate) const RECORD_FIXED_LEN: u64 = 12;
/// Appends are written (and their writeback started) in pieces of this many
/// bytes, so that disk writes overlap the copying of the next piece.
const WRITEBACK_CHUNK: u64 = 4 << 20;
/// A CID longer than this is not something this store wrote (a `Cid`
/// encodes to under 100 bytes); scans treat it as a malformed record.
const MAX_CID_LEN: usize = 512;

/// File name of pack `id` inside the packs folder: eight decimal digits, so
/// that `ls` sorts packs by age.
pub(crate) fn pack_path(packs_dir: &Path, id: u32) -> PathBuf {
    packs_dir.join(format!("{id:08}.pack"))
}

/// The pack id a file name stands for, if it is a pack file name.
pub(crate) fn parse_pack_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".pack")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Bytes a record of a block with this CID length and data length takes.
pub(crate) fn record_len(cid_len: usize, data_len: u64) -> u64 {
    RECORD_FIXED_LEN + cid_len as u64 + data_len
}

/// The fixed record header, followed on disk by the CID and the data.
pub(crate) fn record_header(cid_len: usize, data_len: u64) -> [u8; RECORD_FIXED_LEN as usize] {
    let mut h = [0u8; RECORD_FIXED_LEN as usize];
    h[0..2].copy_from_slice(&RECORD_MAGIC);
    // A `Cid` (64-byte digest at most) encodes to under 100 bytes.
    h[2..4].copy_from_slice(&(cid_len.min(u16::MAX as usize) as u16).to_le_bytes());
    h[4..12].copy_from_slice(&data_len.to_le_bytes());
    h
}

fn pack_header(id: u32) -> [u8; PACK_HEADER_LEN as usize] {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&PACK_MAGIC);
    // The format version fits u32 for the foreseeable future.
    h[8..12].copy_from_slice(&(FORMAT_VERSION as u32).to_le_bytes());
    h[12..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// The pack the writer appends to.
#[derive(Debug)]
pub(crate) struct PackFile {
    id: u32,
    path: PathBuf,
    file: File,
    len: u64,
    direct: Direct,
}

/// The pack's handle for direct writes, opened at the first cold append.
#[derive(Debug)]
enum Direct {
    Untried,
    Open(File),
    /// The filesystem does no direct I/O: cold appends go through the page cache too.
    Off,
}

impl PackFile {
    /// Creates pack `id` with its header. The header becomes durable with the
    /// first batch's fdatasync; the caller syncs the folder.
    pub(crate) fn create(packs_dir: &Path, id: u32) -> Result<Self, StorageError> {
        let path = pack_path(packs_dir, id);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io("creating pack file", &path, e))?;
        file.write_all(&pack_header(id))
            .map_err(|e| StorageError::io("writing header of", &path, e))?;
        Ok(Self {
            id,
            path,
            file,
            len: PACK_HEADER_LEN,
            direct: Direct::Untried,
        })
    }

    /// Opens pack `id` to append after `committed_len` (cutting off anything
    /// beyond, which no index entry points at).
    pub(crate) fn open_append(
        packs_dir: &Path,
        id: u32,
        committed_len: u64,
    ) -> Result<Self, StorageError> {
        let path = pack_path(packs_dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("opening pack file", &path, e))?;
        let mut pack = Self {
            id,
            path,
            file,
            len: committed_len,
            direct: Direct::Untried,
        };
        pack.truncate(committed_len)?;
        Ok(pack)
    }

    /// The pack's id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Bytes written so far (durable or not).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Writes `slices` at the end of the pack.
    ///
    /// The bytes go out in `writev` calls of about [`WRITEBACK_CHUNK`], and
    /// after each the kernel is told to start writing that range to disk.
    /// The disk then works while the next chunk is copied into the page
    /// cache, and the fdatasync that follows only waits for the tail.
    pub(crate) fn append(&mut self, slices: &mut [IoSlice<'_>]) -> Result<(), StorageError> {
        let mut rest = slices;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0u64;
            while n < rest.len() && (n == 0 || bytes + rest[n].len() as u64 <= WRITEBACK_CHUNK) {
                bytes += rest[n].len() as u64;
                n += 1;
            }
            let (chunk, tail) = rest.split_at_mut(n);
            self.write_all_vectored(chunk)?;
            start_writeback(&self.file, self.len, bytes);
            self.len += bytes;
            rest = tail;
        }
        Ok(())
    }

    /// Writes `slices` at the end of the pack without going through the page cache where the
    /// filesystem allows it (see [`crate::direct`]): for blocks nobody is about to read.
    pub(crate) fn append_cold(
        &mut self,
        slices: &mut [IoSlice<'_>],
        stage: &mut Stage,
    ) -> Result<(), StorageError> {
        if matches!(self.direct, Direct::Untried) {
            self.direct = direct::open(&self.path).map_or(Direct::Off, Direct::Open);
        }
        if let Direct::Open(file) = &self.direct {
            match direct::append(file, &self.file, self.len, slices, stage) {
                Ok(()) => {
                    self.len += slices.iter().map(|s| s.len() as u64).sum::<u64>();
                    // Later buffered appends write at the file cursor.
                    self.file
                        .seek(SeekFrom::Start(self.len))
                        .map_err(|e| StorageError::io("seeking in", &self.path, e))?;
                    return Ok(());
                }
                // Nothing counted yet: the buffered append below writes every byte again.
                Err(DirectError::Unsupported) => {
                    tracing::debug!(path = %self.path.display(), "direct write refused; writing through the page cache");
                    self.direct = Direct::Off;
                }
                Err(DirectError::Io(e)) => {
                    return Err(StorageError::io("appending to", &self.path, e));
                }
            }
        }
        self.append(slices)
    }

    fn write_all_vectored(&mut self, mut slices: &mut [IoSlice<'_>]) -> Result<(), StorageError> {
        while !slices.is_empty() {
            match self.file.write_vectored(slices) {
                Ok(0) => {
                    return Err(StorageError::io(
                        "appending to",
                        &self.path,
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StorageError::io("appending to", &self.path, e)),
            }
        }
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync).
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io("syncing", &self.path, e))
    }

    /// Cuts the pack back to `len` bytes and appends from there: undoes a
    /// batch whose index transaction failed.
    pub(crate) fn truncate(&mut self, len: u64) -> Result<(), StorageError> {
        let actual = self
            .file
            .metadata()
            .map_err(|e| StorageError::io("reading size of", &self.path, e))?
            .len();
        if actual > len {
            self.file
                .set_len(len)
                .map_err(|e| StorageError::io("truncating", &self.path, e))?;
            self.sync()?;
        }
        self.file
            .seek(SeekFrom::Start(len))
            .map_err(|e| StorageError::io("seeking in", &self.path, e))?;
        self.len = len;
        Ok(())
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk without
/// waiting (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a hint:
/// durability still comes from the fdatasync after the batch.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads no memory of ours; the fd is open for
    // the duration of the call because `file` is borrowed.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range hint failed");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// One record found by [`scan_records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScannedRecord {
    pub(crate) cid: Cid,
    /// Offset of the block's bytes in the pack.
    pub(crate) data_offset: u64,
    pub(crate) data_len: u64,
}

/// Walks the records of pack `id` up to `committed_len`, calling `visit`
/// for each; `visit` returns `false` to stop early.
///
/// Only headers are read (one `pread` each); the data is skipped.
pub(crate) fn scan_records(
    file: &File,
    path: &Path,
    id: u32,
    committed_len: u64,
    mut visit: impl FnMut(ScannedRecord) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    let mut header = [0u8; PACK_HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| StorageError::io("reading header of", path, e))?;
    if header != pack_header(id) {
        return Err(StorageError::inconsistent(format!(
            "{} does not start with the header of pack {id} (format version {FORMAT_VERSION})",
            path.display()
        )));
    }
    let mut pos = PACK_HEADER_LEN;
    let mut buf = vec![0u8; RECORD_FIXED_LEN as usize + MAX_CID_LEN];
    while pos < committed_len {
        let malformed = |what: &str| {
            StorageError::inconsistent(format!("{}: record at offset {pos} {what}", path.display()))
        };
        let want = (committed_len - pos).min(buf.len() as u64) as usize;
        let got = &mut buf[..want];
        file.read_exact_at(got, pos)
            .map_err(|e| StorageError::io("reading record header in", path, e))?;
        if want < RECORD_FIXED_LEN as usize || got[0..2] != RECORD_MAGIC {
            return Err(malformed("has no record header"));
        }
        let cid_len = u16::from_le_bytes([got[2], got[3]]) as usize;
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&got[4..12]);
        let data_len = u64::from_le_bytes(len_bytes);
        let cid_end = RECORD_FIXED_LEN as usize + cid_len;
        if cid_len > MAX_CID_LEN || cid_end > want {
            return Err(malformed("has a CID length past the record"));
        }
        let cid = Cid::try_from(&got[RECORD_FIXED_LEN as usize..cid_end])
            .map_err(|_| malformed("has an unparsable CID"))?;
        let data_offset = pos + cid_end as u64;
        let end = data_offset
            .checked_add(data_len)
            .filter(|&end| end <= committed_len)
            .ok_or_else(|| malformed("runs past the committed end"))?;
        let more = visit(ScannedRecord {
            cid,
            data_offset,
            data_len,
        })?;
        if !more {
            break;
        }
        pos = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Block, RAW};

    fn append_block(pack: &mut PackFile, block: &Block) -> u64 {
        let cid = block.cid().to_bytes();
        let header = record_header(cid.len(), block.data().len() as u64);
        let data_offset = pack.len() + RECORD_FIXED_LEN + cid.len() as u64;
        pack.append(&mut [
            IoSlice::new(&header),
            IoSlice::new(&cid),
            IoSlice::new(block.data()),
        ])
        .unwrap();
        data_offset
    }

    #[test]
    fn pack_names_round_trip_and_reject_strangers() {
        let p = pack_path(Path::new("/s/packs"), 42);
        assert_eq!(p, Path::new("/s/packs/00000042.pack"));
        assert_eq!(parse_pack_name("00000042.pack"), Some(42));
        assert_eq!(parse_pack_name("4294967295.pack"), Some(u32::MAX));
        assert_eq!(parse_pack_name("42.pack"), None);
        assert_eq!(parse_pack_name("0000004x.pack"), None);
        assert_eq!(parse_pack_name("00000042.pack.tmp"), None);
    }

    #[test]
    fn appended_records_scan_back_and_read_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut pack = PackFile::create(dir.path(), 3).unwrap();
        let blocks: Vec<Block> = [0usize, 1, 5000]
            .iter()
            .map(|&n| Block::from_data_v1(RAW, Bytes::from(vec![n as u8; n])))
            .collect();
        let offsets: Vec<u64> = blocks.iter().map(|b| append_block(&mut pack, b)).collect();
        pack.sync().unwrap();
        let expected_len = PACK_HEADER_LEN
            + blocks
                .iter()
                .map(|b| record_len(b.cid().encoded_len(), b.data().len() as u64))
                .sum::<u64>();
        assert_eq!(pack.len(), expected_len);

        let path = pack_path(dir.path(), 3);
        let file = File::open(&path).unwrap();
        let mut seen = Vec::new();
        scan_records(&file, &path, 3, pack.len(), |r| {
            seen.push(r);
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        for ((rec, block), off) in seen.iter().zip(&blocks).zip(&offsets) {
            assert_eq!(rec.cid, *block.cid());
            assert_eq!(rec.data_offset, *off);
            let mut data = vec![0u8; rec.data_len as usize];
            file.read_exact_at(&mut data, rec.data_offset).unwrap();
            assert_eq!(&data[..], &block.data()[..]);
        }
        // A wrong id is refused: the file is not the pack the index means.
        assert!(scan_records(&file, &path, 4, pack.len(), |_| Ok(true)).is_err());
    }

    #[test]
    fn cold_appends_pad_to_the_block_and_read_back_between_ordinary_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut pack = PackFile::create(dir.path(), 5).unwrap();
        let path = pack_path(dir.path(), 5);
        let direct = direct::open(&path).is_some();
        let mut stage = Stage::new();
        let mut written: Vec<(u64, Vec<u8>)> = Vec::new();
        // Sizes straddle the alignment and the 4 MiB staging buffer.
        for (i, n) in [3usize, 4093, 4096, 5_000_000, 10, 8192, 1]
            .into_iter()
            .enumerate()
        {
            let data = vec![i as u8 + 1; n];
            let at = pack.len();
            if i % 3 == 2 {
                pack.append(&mut [IoSlice::new(&data)]).unwrap();
            } else {
                pack.append_cold(
                    &mut [IoSlice::new(&data[..n / 2]), IoSlice::new(&data[n / 2..])],
                    &mut stage,
                )
                .unwrap();
                let on_disk = std::fs::metadata(&path).unwrap().len();
                if direct {
                    assert_eq!(
                        on_disk % direct::ALIGN as u64,
                        0,
                        "a direct append ends on a block"
                    );
                    assert!(on_disk >= pack.len());
                }
            }
            written.push((at, data));
        }
        pack.sync().unwrap();
        let file = File::open(&path).unwrap();
        let mut header = [0u8; PACK_HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).unwrap();
        assert_eq!(header, pack_header(5));
        for (at, data) in &written {
            let mut back = vec![0u8; data.len()];
            file.read_exact_at(&mut back, *at).unwrap();
            assert!(back == *data, "{} bytes at {at}", data.len());
        }
        // Cutting back to the committed length drops the padding.
        let len = pack.len();
        pack.truncate(len).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    }

    #[test]
    fn open_append_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let block = Block::from_data_v1(RAW, Bytes::from_static(b"durable"));
        let committed = {
            let mut pack = PackFile::create(dir.path(), 1).unwrap();
            append_block(&mut pack, &block);
            let committed = pack.len();
            pack.append(&mut [IoSlice::new(b"TR half a record")])
                .unwrap();
            committed
        };
        let pack = PackFile::open_append(dir.path(), 1, committed).unwrap();
        assert_eq!(pack.len(), committed);
        let path = pack_path(dir.path(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed);
        let file = File::open(&path).unwrap();
        let mut n = 0;
        scan_records(&file, &path, 1, committed, |_| {
            n += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn scan_refuses_a_record_running_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut pack = PackFile::create(dir.path(), 1).unwrap();
        let block = Block::from_data_v1(RAW, Bytes::from_static(b"0123456789"));
        append_block(&mut pack, &block);
        let path = pack_path(dir.path(), 1);
        let file = File::open(&path).unwrap();
        let err = scan_records(&file, &path, 1, pack.len() - 1, |_| Ok(true)).unwrap_err();
        assert!(err.to_string().contains("past the committed end"), "{err}");
    }
}
