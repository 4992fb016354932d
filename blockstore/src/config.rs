//! Tuning knobs of a [`Blockstore`](crate::Blockstore), checked once at open.

/// How a [`Blockstore`](crate::Blockstore) stores and checks blocks.
///
/// Every field has a default chosen for Kubo-sized blocks (256 KiB leaves,
/// small directory nodes) on one local disk; [`Config::validate`] runs at open
/// and names the first field that is out of range.
///
/// Build one with struct update syntax, `Config { verify_on_read: false,
/// ..Config::default() }`; that is why it is not `#[non_exhaustive]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Blocks strictly smaller than this many bytes live inside the redb index
    /// instead of a pack file. Directory nodes, manifest pieces and other tiny
    /// blocks then cost one B-tree entry rather than a pack record, and a read
    /// of them is one index lookup. 0 sends every block to the packs.
    ///
    /// Defaults to 4096 bytes. At most 65 536.
    pub inline_threshold: usize,
    /// A pack file stops taking new blocks once it holds this many bytes; the
    /// next batch starts a new pack. A single block larger than the limit
    /// gets a pack of its own.
    ///
    /// Defaults to 1 GiB (1 073 741 824 bytes). At least 4096.
    pub pack_size_limit: u64,
    /// Whether [`get`](crate::Blockstore::get) hashes every block it returns
    /// and refuses one whose bytes do not match its CID.
    ///
    /// It costs about 0.7 ms per MiB here (SHA-256 at 1.5 GB/s), which is
    /// small next to a network hop, and it is the only thing that keeps a
    /// rotten disk sector from reaching a user's `cat`.
    /// [`get_verified`](crate::Blockstore::get_verified) always verifies.
    ///
    /// Defaults to `true`.
    pub verify_on_read: bool,
    /// Compaction rewrites a pack once this share of its bytes is dead
    /// (deleted or garbage-collected blocks). A pack with no live bytes left
    /// is always deleted.
    ///
    /// Defaults to 0.5 (half of the pack). Must be in (0, 1].
    pub compact_threshold: f64,
    /// The writer thread coalesces concurrent writes into one append, one
    /// fdatasync and one index transaction until a batch holds this many
    /// bytes of blocks. Larger batches amortise the two syncs; smaller ones
    /// bound the latency of a single put behind a busy queue.
    ///
    /// Defaults to 64 MiB (67 108 864 bytes). At least 1.
    pub max_batch_bytes: usize,
    /// How many write requests may wait for the writer thread before callers
    /// block: the back-pressure bound of the write queue.
    ///
    /// Defaults to 64 requests. At least 1.
    pub write_queue_depth: usize,
    /// Memory that redb may use to cache index pages.
    ///
    /// Defaults to 64 MiB (67 108 864 bytes), enough for the hot part of an
    /// index of millions of blocks. At least 1 MiB.
    pub index_cache_bytes: usize,
    /// How many pack files are kept open for reads at once. Past this many,
    /// the read handles are closed and reopened as needed.
    ///
    /// Defaults to 256 files. At least 1.
    pub max_open_packs: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            inline_threshold: 4096,
            pack_size_limit: 1 << 30,
            verify_on_read: true,
            compact_threshold: 0.5,
            max_batch_bytes: 64 << 20,
            write_queue_depth: 64,
            index_cache_bytes: 64 << 20,
            max_open_packs: 256,
        }
    }
}

/// A [`Config`] field holds a value the store cannot work with.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("blockstore config: `{key}` {reason}; fix it in the config and restart")]
#[non_exhaustive]
pub struct ConfigError {
    /// The name of the offending field.
    pub key: &'static str,
    /// What range it must be in.
    pub reason: String,
}

impl Config {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, reason: String) -> Result<(), ConfigError> {
            Err(ConfigError { key, reason })
        }
        if self.inline_threshold > 65_536 {
            return bad(
                "inline_threshold",
                format!("is {} bytes, at most 65536 allowed", self.inline_threshold),
            );
        }
        if self.pack_size_limit < 4096 {
            return bad(
                "pack_size_limit",
                format!("is {} bytes, at least 4096 required", self.pack_size_limit),
            );
        }
        if !(self.compact_threshold > 0.0 && self.compact_threshold <= 1.0) {
            return bad(
                "compact_threshold",
                format!("is {}, must be in (0, 1]", self.compact_threshold),
            );
        }
        if self.max_batch_bytes == 0 {
            return bad("max_batch_bytes", "is 0, at least 1 required".into());
        }
        if self.write_queue_depth == 0 {
            return bad("write_queue_depth", "is 0, at least 1 required".into());
        }
        if self.index_cache_bytes < 1 << 20 {
            return bad(
                "index_cache_bytes",
                format!(
                    "is {} bytes, at least 1 MiB required",
                    self.index_cache_bytes
                ),
            );
        }
        if self.max_open_packs == 0 {
            return bad("max_open_packs", "is 0, at least 1 required".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn each_out_of_range_field_is_named() {
        let cases: Vec<(&str, Config)> = vec![
            (
                "inline_threshold",
                Config {
                    inline_threshold: 65_537,
                    ..Config::default()
                },
            ),
            (
                "pack_size_limit",
                Config {
                    pack_size_limit: 4095,
                    ..Config::default()
                },
            ),
            (
                "compact_threshold",
                Config {
                    compact_threshold: 0.0,
                    ..Config::default()
                },
            ),
            (
                "compact_threshold",
                Config {
                    compact_threshold: f64::NAN,
                    ..Config::default()
                },
            ),
            (
                "max_batch_bytes",
                Config {
                    max_batch_bytes: 0,
                    ..Config::default()
                },
            ),
            (
                "write_queue_depth",
                Config {
                    write_queue_depth: 0,
                    ..Config::default()
                },
            ),
            (
                "index_cache_bytes",
                Config {
                    index_cache_bytes: 1000,
                    ..Config::default()
                },
            ),
            (
                "max_open_packs",
                Config {
                    max_open_packs: 0,
                    ..Config::default()
                },
            ),
        ];
        for (key, config) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn boundary_values_are_accepted() {
        let config = Config {
            inline_threshold: 65_536,
            pack_size_limit: 4096,
            compact_threshold: 1.0,
            max_batch_bytes: 1,
            write_queue_depth: 1,
            index_cache_bytes: 1 << 20,
            max_open_packs: 1,
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }
}
