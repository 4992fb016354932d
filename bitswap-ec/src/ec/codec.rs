//! The codec contract: what any erasure code must do for the stripe layer,
//! and the id that names a code in a manifest.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::reed_solomon::ReedSolomon;

/// An erasure code of `k` data cells and `m` parity cells, all of one
/// length, that rebuilds any cells from any `k` others.
///
/// # To ensure correctness
///
/// - **Deterministic.** The same data always gives the same parity bytes, on
///   every CPU and with every kernel: parity blocks are content-addressed and
///   may be computed by one peer and rebuilt by another.
/// - **Bytewise.** Byte `p` of every output depends only on byte `p` of the
///   inputs. Callers rely on this to split long cells into ranges and code
///   the ranges on different threads.
/// - **MDS.** `reconstruct` succeeds from any `k` present cells and returns
///   exactly the bytes `encode` produced; with fewer it returns
///   [`CodecError::TooFewCells`] and writes nothing meaningful.
/// - The parity of one codec is meaningless to another: [`Codec::id`] is
///   recorded in every manifest, and a reader must build the codec that id
///   names.
pub trait Codec: Send + Sync + fmt::Debug {
    /// Which code this is, as recorded in manifests.
    fn id(&self) -> CodecId;

    /// `k`: data cells per stripe.
    fn data_cells(&self) -> usize;

    /// `m`: parity cells per stripe.
    fn parity_cells(&self) -> usize;

    /// Computes the `m` parity cells of `k` data cells.
    ///
    /// `data` holds exactly `k` cells and `parity` exactly `m`, all of the
    /// same length; the parity cells are overwritten.
    fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError>;

    /// Rebuilds the cells listed in `wanted` (indices in `0..k + m`, data
    /// first) from the present ones.
    ///
    /// `cells` holds `k + m` entries, `None` for the missing ones; present
    /// cells and `out` (one buffer per wanted index, same order) all have one
    /// length. Present cells are trusted: checking them against their CIDs
    /// is the stripe layer's job.
    fn reconstruct(
        &self,
        cells: &[Option<&[u8]>],
        wanted: &[usize],
        out: &mut [&mut [u8]],
    ) -> Result<(), CodecError>;
}

/// The name of an erasure code, as written in the manifest's `codec` field.
///
/// New codes get new ids; an id never changes meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecId {
    /// Systematic Reed-Solomon over GF(2^8) (polynomial 0x11d) with the
    /// Cauchy parity rows `1 / ((k + i) xor j)`; see `docs/erasure-coding.md`.
    /// Written `"rs-cauchy-gf256"`.
    ReedSolomonCauchy,
}

impl CodecId {
    /// The id as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            CodecId::ReedSolomonCauchy => "rs-cauchy-gf256",
        }
    }

    /// Builds this codec for `k` data and `m` parity cells.
    pub fn build(self, k: usize, m: usize) -> Result<Arc<dyn Codec>, CodecError> {
        match self {
            CodecId::ReedSolomonCauchy => Ok(Arc::new(ReedSolomon::new(k, m)?)),
        }
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CodecId {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rs-cauchy-gf256" => Ok(CodecId::ReedSolomonCauchy),
            other => Err(CodecError::UnknownCodec {
                name: other.to_owned(),
            }),
        }
    }
}

/// Why a codec call failed. Apart from `TooFewCells`, these are caller bugs
/// or manifests from another program, never data-dependent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// `k` and `m` are outside what GF(2^8) Reed-Solomon can do.
    #[error(
        "invalid code {data}+{parity}: need at least 1 data and 1 parity cell and at most 256 cells in all"
    )]
    InvalidShape {
        /// Requested data cells.
        data: usize,
        /// Requested parity cells.
        parity: usize,
    },
    /// Fewer than `k` cells are present: the stripe cannot be rebuilt.
    #[error("only {have} of the {need} cells needed are present: fetch more cells of this stripe")]
    TooFewCells {
        /// Cells present.
        have: usize,
        /// Cells needed.
        need: usize,
    },
    /// A slice of cells has the wrong number of entries.
    #[error("expected {expected} cells, got {got}")]
    CellCount {
        /// Entries the call needs.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// Cells of one call differ in length.
    #[error("cells of one stripe must have one length; pad short cells with zeros first")]
    UnequalLengths,
    /// A wanted index is not a cell of this code.
    #[error("cell index {index} is outside this code's {cells} cells")]
    BadIndex {
        /// The index given.
        index: usize,
        /// `k + m`.
        cells: usize,
    },
    /// A manifest names a codec this build does not know.
    #[error(
        "unknown erasure codec {name:?}: this tessera knows only \"rs-cauchy-gf256\"; upgrade tessera"
    )]
    UnknownCodec {
        /// The name found.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_id_round_trips_through_its_name() {
        let id = CodecId::ReedSolomonCauchy;
        assert_eq!(id.as_str().parse::<CodecId>(), Ok(id));
        assert!(matches!(
            "rs-vandermonde".parse::<CodecId>(),
            Err(CodecError::UnknownCodec { .. })
        ));
        let codec = id.build(6, 3).unwrap();
        assert_eq!(
            (codec.id(), codec.data_cells(), codec.parity_cells()),
            (id, 6, 3)
        );
    }
}
