//! Columns and groups: how the cells of a DAG's stripes are dealt out to
//! peers.
//!
//! Cell `j` of every stripe in a group belongs to column `j`: columns
//! `0..k` hold data, `k..k + m` parity. A group is a run of consecutive
//! stripes whose columns stay within `shard_size` bytes, so that one peer
//! can hold one column of a group, and the `k + m` columns of a group live on
//! distinct peers.

use serde::{Deserialize, Serialize};

/// Longest cell (block) a stripe may hold: 16 MiB, eight times the largest
/// block Bitswap carries. Part of format version 1: it bounds what a
/// manifest read from the network can make a reader allocate.
pub(crate) const MAX_CELL_LEN: u64 = 16 << 20;

/// The shape of an erasure-coded pin: `data_shards + parity_shards` cells
/// per stripe, groups cut at `shard_size` bytes per column.
///
/// The names follow IPFS Cluster's `data-shards`, `parity-shards` and
/// `shard-size` pin options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// `k`: data cells per stripe, 1 or more. Defaults to 6.
    pub data_shards: usize,
    /// `m`: parity cells per stripe, 1 or more, with
    /// `data_shards + parity_shards <= 256`. The pin survives the loss of
    /// any `m` columns of each group. Defaults to 3.
    pub parity_shards: usize,
    /// Most bytes one column of a group holds, counting every cell at its
    /// stripe's padded length (a stripe larger than this forms a group on
    /// its own). Defaults to 100 MiB (104 857 600 bytes), IPFS Cluster's
    /// default shard size.
    pub shard_size: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            data_shards: 6,
            parity_shards: 3,
            shard_size: 100 << 20,
        }
    }
}

/// A layout that cannot be used, naming the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// `data_shards` is 0.
    #[error("data_shards must be at least 1")]
    NoDataShards,
    /// `parity_shards` is 0.
    #[error("parity_shards must be at least 1 (with 0, use a replicated pin instead)")]
    NoParityShards,
    /// More than 256 cells per stripe.
    #[error(
        "data_shards + parity_shards is {total}, but GF(2^8) Reed-Solomon allows at most 256; lower one of them"
    )]
    TooManyShards {
        /// `data_shards + parity_shards`.
        total: usize,
    },
    /// `shard_size` is 0.
    #[error("shard_size must be at least 1 byte")]
    NoShardSize,
}

impl Layout {
    /// A layout with the default shard size.
    pub fn new(data_shards: usize, parity_shards: usize) -> Self {
        Self {
            data_shards,
            parity_shards,
            ..Self::default()
        }
    }

    /// Checks every key; call once when the layout is loaded.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.data_shards == 0 {
            return Err(LayoutError::NoDataShards);
        }
        if self.parity_shards == 0 {
            return Err(LayoutError::NoParityShards);
        }
        let total = self.data_shards + self.parity_shards;
        if total > 256 {
            return Err(LayoutError::TooManyShards { total });
        }
        if self.shard_size == 0 {
            return Err(LayoutError::NoShardSize);
        }
        Ok(())
    }

    /// `k + m`: columns per group, cells per full stripe.
    pub fn columns(&self) -> usize {
        self.data_shards + self.parity_shards
    }

    /// Whether column `column` holds parity cells.
    pub fn is_parity(&self, column: usize) -> bool {
        column >= self.data_shards
    }
}

/// Cuts the stream of stripes into groups, deciding each stripe's group when
/// the stripe is complete (its padded cell length is known only then).
#[derive(Debug)]
pub(crate) struct GroupCutter {
    shard_size: u64,
    /// Index of the open group.
    group: u64,
    /// First stripe of the open group.
    first_stripe: u64,
    /// Stripes in the open group.
    stripes: u64,
    /// Bytes per column of the open group (padded cell lengths).
    column_bytes: u64,
}

/// A finished group: stripes `first_stripe..first_stripe + stripes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClosedGroup {
    pub(crate) index: u64,
    pub(crate) first_stripe: u64,
    pub(crate) stripes: u64,
    pub(crate) column_bytes: u64,
}

impl GroupCutter {
    pub(crate) fn new(shard_size: u64) -> Self {
        Self {
            shard_size,
            group: 0,
            first_stripe: 0,
            stripes: 0,
            column_bytes: 0,
        }
    }

    /// Places stripe `stripe` with padded cell length `cell_len`; returns
    /// its group, and the group it closed, if it did not fit the open one.
    pub(crate) fn place(&mut self, stripe: u64, cell_len: u64) -> (u64, Option<ClosedGroup>) {
        let mut closed = None;
        if self.stripes > 0 && self.column_bytes.saturating_add(cell_len) > self.shard_size {
            closed = self.close();
        }
        if self.stripes == 0 {
            self.first_stripe = stripe;
        }
        self.stripes += 1;
        self.column_bytes = self.column_bytes.saturating_add(cell_len);
        (self.group, closed)
    }

    /// Closes the open group, if it has stripes.
    pub(crate) fn close(&mut self) -> Option<ClosedGroup> {
        if self.stripes == 0 {
            return None;
        }
        let closed = ClosedGroup {
            index: self.group,
            first_stripe: self.first_stripe,
            stripes: self.stripes,
            column_bytes: self.column_bytes,
        };
        self.group += 1;
        self.stripes = 0;
        self.column_bytes = 0;
        Some(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_key_is_named() {
        assert_eq!(Layout::default().validate(), Ok(()));
        let bad = |f: fn(&mut Layout)| {
            let mut l = Layout::default();
            f(&mut l);
            l.validate().unwrap_err()
        };
        assert_eq!(bad(|l| l.data_shards = 0), LayoutError::NoDataShards);
        assert_eq!(bad(|l| l.parity_shards = 0), LayoutError::NoParityShards);
        assert_eq!(
            bad(|l| l.data_shards = 254),
            LayoutError::TooManyShards { total: 257 }
        );
        assert_eq!(bad(|l| l.shard_size = 0), LayoutError::NoShardSize);
        assert!(Layout::new(6, 3).is_parity(6) && !Layout::new(6, 3).is_parity(5));
    }

    #[test]
    fn groups_close_before_a_stripe_that_would_overflow() {
        let mut cut = GroupCutter::new(10);
        assert_eq!(cut.place(0, 4), (0, None));
        assert_eq!(cut.place(1, 6), (0, None)); // exactly 10: still fits
        let (g, closed) = cut.place(2, 1);
        assert_eq!(g, 1);
        assert_eq!(
            closed,
            Some(ClosedGroup {
                index: 0,
                first_stripe: 0,
                stripes: 2,
                column_bytes: 10
            })
        );
        // A stripe larger than the shard size gets a group of its own.
        let (g, closed) = cut.place(3, 50);
        assert_eq!((g, closed.map(|c| c.stripes)), (2, Some(1)));
        assert_eq!(cut.close().map(|c| (c.index, c.first_stripe)), Some((2, 3)));
        assert_eq!(cut.close(), None);
    }
}
