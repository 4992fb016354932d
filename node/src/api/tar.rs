//! A streaming tar writer (ustar, with GNU long names), so that `get` never holds a file in memory.

use bytes::Bytes;

const BLOCK: usize = 512;

/// Tracks the padding owed after each file's content (file bytes pass through untouched).
#[derive(Default)]
pub(crate) struct TarWriter {
    owed_padding: usize,
}

impl TarWriter {
    fn header(&mut self, path: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> Bytes {
        let mut out = Vec::with_capacity(BLOCK * 2);
        out.extend(self.flush_padding());
        let mut h = tar::Header::new_gnu();
        let name_bytes = path.as_bytes();
        if name_bytes.len() >= 100 {
            // GNU long name: a pseudo-entry whose content is the full name.
            let mut long = tar::Header::new_gnu();
            long.set_entry_type(tar::EntryType::GNULongName);
            let _ = long.set_path("././@LongLink");
            long.set_size(name_bytes.len() as u64 + 1);
            long.set_mode(0o644);
            long.set_cksum();
            out.extend_from_slice(long.as_bytes());
            out.extend_from_slice(name_bytes);
            out.push(0);
            pad(&mut out, name_bytes.len() + 1);
            let mut short = name_bytes[..99].to_vec();
            // Keep the header's own name field valid UTF-8 for readers that look at it.
            while std::str::from_utf8(&short).is_err() {
                short.pop();
            }
            set_name_raw(&mut h, &short);
        } else {
            set_name_raw(&mut h, name_bytes);
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(0);
        if let Some(l) = link {
            let _ = h.set_link_name(l);
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        self.owed_padding = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        Bytes::from(out)
    }

    fn flush_padding(&mut self) -> Vec<u8> {
        let p = std::mem::take(&mut self.owed_padding);
        vec![0; p]
    }

    pub(crate) fn directory(&mut self, path: &str) -> Bytes {
        self.header(path, tar::EntryType::Directory, 0, None)
    }

    pub(crate) fn file(&mut self, path: &str, size: u64) -> Bytes {
        self.header(path, tar::EntryType::Regular, size, None)
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> Bytes {
        self.header(path, tar::EntryType::Symlink, 0, Some(target))
    }

    /// The last file's padding and the two zero blocks that end an archive.
    pub(crate) fn finish(&mut self) -> Bytes {
        let mut out = self.flush_padding();
        out.extend_from_slice(&[0u8; BLOCK * 2]);
        Bytes::from(out)
    }
}

fn pad(out: &mut Vec<u8>, len: usize) {
    let p = (BLOCK - len % BLOCK) % BLOCK;
    out.extend(std::iter::repeat_n(0u8, p));
}

fn set_name_raw(h: &mut tar::Header, name: &[u8]) {
    if let Some(gnu) = h.as_gnu_mut() {
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name);
    }
}
