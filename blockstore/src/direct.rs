//! Appends that bypass the page cache (`O_DIRECT`), for blocks that nobody is about to read.
//!
//! Copying block bytes into the page cache was the largest single cost of a 9-peer erasure-coded
//! add on the VMs this runs on: a third of all CPU went to `copy_folio_from_iter_atomic`, because
//! page-cache pages freshly taken from the free lists are first touched by that copy (and a VM
//! whose host reclaims free guest memory pays for every such first touch). Cells pushed by an
//! erasure-coded add, rebuilt columns and blocks fetched for a pin are rarely read back soon, so
//! for batches made only of such blocks ([`Blockstore::put_many_cold`]) the writer copies into
//! one reused, aligned buffer and hands it straight to the disk. A local `add` stays buffered:
//! its user is likely to `cat` it next, from memory.
//!
//! Direct I/O wants offsets and lengths aligned to the device block. An append therefore starts
//! at the aligned offset at or below the pack's end, writing the partial block found there again
//! with the same bytes (read back first), and ends padded with zeros to the next boundary. The
//! padding lies past the committed length: the next append writes over it, and a crash leaves it
//! as an uncommitted tail that the next open cuts, as it cuts any other. The fdatasync after the
//! batch is still what makes the bytes and the file's new size durable.
//!
//! [`Blockstore::put_many_cold`]: crate::Blockstore::put_many_cold

use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Alignment of direct writes: the largest logical block size of common disks.
pub(crate) const ALIGN: usize = 4096;
/// Bytes written per direct `pwrite`; the staging buffer's size.
const STAGE: usize = 4 << 20;

/// The writer thread's one staging buffer, aligned to [`ALIGN`] and reused for every direct
/// append so that its pages are touched once.
pub(crate) struct Stage {
    buf: Vec<u8>,
    start: usize,
}

impl Stage {
    pub(crate) fn new() -> Self {
        let buf = vec![0u8; STAGE + ALIGN];
        // A Vec's heap buffer never moves while the Vec lives, so the offset stays valid.
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self { buf, start }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + STAGE]
    }
}

/// Opens `path` for direct writes; `None` where the platform or the filesystem does not do
/// direct I/O (tmpfs before Linux 6.6, for one): the caller then writes through the page cache.
pub(crate) fn open(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no direct I/O; writing through the page cache");
                None
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Why a direct append did not happen.
#[derive(Debug)]
pub(crate) enum DirectError {
    /// The filesystem refused direct I/O for these offsets or buffers (`EINVAL`): nothing is
    /// wrong with the data, write it through the page cache instead.
    Unsupported,
    /// Any other I/O error.
    Io(std::io::Error),
}

/// Writes `slices` at `len`, the pack's current end, through `direct`; `buffered` (the same file,
/// opened without `O_DIRECT`) supplies the partial block below `len`.
pub(crate) fn append(
    direct: &File,
    buffered: &File,
    len: u64,
    slices: &[IoSlice<'_>],
    stage: &mut Stage,
) -> Result<(), DirectError> {
    let buf = stage.bytes();
    let mut at = len - len % ALIGN as u64;
    // Below ALIGN by construction.
    let mut fill = (len - at) as usize;
    if fill > 0 {
        buffered
            .read_exact_at(&mut buf[..fill], at)
            .map_err(DirectError::Io)?;
    }
    for slice in slices {
        let mut rest: &[u8] = slice;
        while !rest.is_empty() {
            let n = rest.len().min(STAGE - fill);
            buf[fill..fill + n].copy_from_slice(&rest[..n]);
            fill += n;
            rest = &rest[n..];
            if fill == STAGE {
                write_all_at(direct, buf, at)?;
                at += STAGE as u64;
                fill = 0;
            }
        }
    }
    if fill > 0 {
        let padded = fill.next_multiple_of(ALIGN);
        buf[fill..padded].fill(0);
        write_all_at(direct, &buf[..padded], at)?;
    }
    Ok(())
}

fn write_all_at(file: &File, mut buf: &[u8], mut at: u64) -> Result<(), DirectError> {
    while !buf.is_empty() {
        match file.write_at(buf, at) {
            Ok(0) => return Err(DirectError::Io(std::io::ErrorKind::WriteZero.into())),
            // A short direct write ends on a block boundary, so the rest stays aligned.
            Ok(n) => {
                buf = &buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(DirectError::Unsupported);
            }
            Err(e) => return Err(DirectError::Io(e)),
        }
    }
    Ok(())
}
