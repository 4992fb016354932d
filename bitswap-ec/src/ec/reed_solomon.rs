//! Systematic Cauchy Reed-Solomon over GF(2^8), the codec tessera writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::codec::{Codec, CodecError, CodecId};
use super::gf::Matrix;
use super::kernel::{self, Coefficients, Kernel};

/// Decode maps kept per codec, in bytes of tables. A map is `wanted x k`
/// tables of 64 bytes: 1 KiB for 6+3, up to 4 MiB for 128+128. Repairs
/// reuse a handful of erasure patterns, so a small cache hits nearly always.
const CACHE_BYTES: usize = 32 << 20;

/// Reed-Solomon with the parity rows of a Cauchy matrix: cell `k + i` is
/// `sum_j data[j] / ((k + i) xor j)`. Any `k + m <= 256` works.
///
/// Decode matrices (one per pattern of used and wanted cells) are inverted
/// once and cached, so rebuilding a column stripe after stripe costs only
/// the kernel pass.
#[derive(Debug)]
pub struct ReedSolomon {
    k: usize,
    m: usize,
    kernel: Kernel,
    /// The full `(k + m) x k` encoding matrix: identity, then Cauchy rows.
    matrix: Matrix,
    /// Its parity rows, ready for the kernel.
    parity: Coefficients,
    cache: Mutex<DecodeCache>,
}

#[derive(Debug, Default)]
struct DecodeCache {
    maps: HashMap<DecodeKey, Arc<Coefficients>>,
    bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecodeKey {
    /// Bit `i` set: cell `i` is one of the `k` inputs.
    used: [u64; 4],
    wanted: Box<[u8]>,
}

impl ReedSolomon {
    /// A `k + m` code using the fastest kernel this CPU supports.
    pub fn new(k: usize, m: usize) -> Result<Self, CodecError> {
        Self::with_kernel(k, m, Kernel::detect())
    }

    /// A `k + m` code using `kernel`; if the CPU lacks its features the
    /// scalar kernel runs instead. Meant for tests and benchmarks.
    pub fn with_kernel(k: usize, m: usize, kernel: Kernel) -> Result<Self, CodecError> {
        if k == 0 || m == 0 || k + m > 256 {
            return Err(CodecError::InvalidShape { data: k, parity: m });
        }
        let matrix = Matrix::cauchy_systematic(k, m);
        let parity_rows: Vec<usize> = (k..k + m).collect();
        let parity = Coefficients::new(&matrix.select_rows(&parity_rows));
        let kernel = if kernel.is_available() {
            kernel
        } else {
            Kernel::Scalar
        };
        Ok(Self {
            k,
            m,
            kernel,
            matrix,
            parity,
            cache: Mutex::new(DecodeCache::default()),
        })
    }

    /// The kernel this codec runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The map from the cells in `used` (exactly `k`, ascending) to the
    /// cells in `wanted`: `E_wanted * inverse(E_used)`.
    fn decode_map(&self, used: &[usize], wanted: &[usize]) -> Arc<Coefficients> {
        let mut key = DecodeKey {
            used: [0; 4],
            wanted: wanted.iter().map(|&w| w as u8).collect(),
        };
        for &u in used {
            key.used[u / 64] |= 1 << (u % 64);
        }
        if let Some(map) = self.lock_cache().maps.get(&key) {
            return Arc::clone(map);
        }
        // Any k rows of the Cauchy-systematic matrix are invertible, so this
        // never fails; the identity fallback only keeps a broken invariant
        // from panicking (the stripe layer's CID check would catch it).
        let inverse = self
            .matrix
            .select_rows(used)
            .invert()
            .unwrap_or_else(|| Matrix::identity(self.k));
        let map = Arc::new(Coefficients::new(
            &self.matrix.select_rows(wanted).mul(&inverse),
        ));
        let size = map.rows() * map.cols() * 64;
        let mut cache = self.lock_cache();
        if cache.bytes + size > CACHE_BYTES {
            cache.maps.clear();
            cache.bytes = 0;
        }
        cache.bytes += size;
        cache.maps.insert(key, Arc::clone(&map));
        map
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, DecodeCache> {
        // The cache holds only derived data; a panic elsewhere cannot leave
        // it inconsistent, so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Codec for ReedSolomon {
    fn id(&self) -> CodecId {
        CodecId::ReedSolomonCauchy
    }

    fn data_cells(&self) -> usize {
        self.k
    }

    fn parity_cells(&self) -> usize {
        self.m
    }

    fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError> {
        if data.len() != self.k {
            return Err(CodecError::CellCount {
                expected: self.k,
                got: data.len(),
            });
        }
        if parity.len() != self.m {
            return Err(CodecError::CellCount {
                expected: self.m,
                got: parity.len(),
            });
        }
        let len = data[0].len();
        if data.iter().any(|d| d.len() != len) || parity.iter().any(|p| p.len() != len) {
            return Err(CodecError::UnequalLengths);
        }
        kernel::apply(self.kernel, &self.parity, data, parity);
        Ok(())
    }

    fn reconstruct(
        &self,
        cells: &[Option<&[u8]>],
        wanted: &[usize],
        out: &mut [&mut [u8]],
    ) -> Result<(), CodecError> {
        let n = self.k + self.m;
        if cells.len() != n {
            return Err(CodecError::CellCount {
                expected: n,
                got: cells.len(),
            });
        }
        if out.len() != wanted.len() {
            return Err(CodecError::CellCount {
                expected: wanted.len(),
                got: out.len(),
            });
        }
        if let Some(&index) = wanted.iter().find(|&&w| w >= n) {
            return Err(CodecError::BadIndex { index, cells: n });
        }
        // Data cells first: with all data present, the map is the parity
        // rows themselves and nothing needs inverting.
        let used: Vec<usize> = (0..n)
            .filter(|&i| cells[i].is_some())
            .take(self.k)
            .collect();
        if used.len() < self.k {
            return Err(CodecError::TooFewCells {
                have: used.len(),
                need: self.k,
            });
        }
        let inputs: Vec<&[u8]> = used.iter().filter_map(|&i| cells[i]).collect();
        let len = inputs[0].len();
        if inputs.iter().any(|c| c.len() != len) || out.iter().any(|o| o.len() != len) {
            return Err(CodecError::UnequalLengths);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let map = self.decode_map(&used, wanted);
        kernel::apply(self.kernel, &map, &inputs, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cells(k: usize, len: usize, seed: u8) -> Vec<Vec<u8>> {
        (0..k)
            .map(|j| {
                (0..len)
                    .map(|p| (p as u8).wrapping_mul(31).wrapping_add(seed ^ j as u8))
                    .collect()
            })
            .collect()
    }

    fn encode_all(rs: &ReedSolomon, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let len = data[0].len();
        let mut parity = vec![vec![0u8; len]; rs.parity_cells()];
        let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
        rs.encode(&ins, &mut outs).unwrap();
        data.iter().cloned().chain(parity).collect()
    }

    #[test]
    fn parity_matches_the_documented_test_vectors() {
        // docs/erasure-coding.md, computed independently of this code:
        // parity i = sum_j data[j] / ((k + i) xor j) over GF(2^8)/0x11d.
        let vectors: [(usize, usize, &[u8], &[u8]); 3] = [
            (2, 1, &[0x01, 0x02], &[0x7b]),
            (4, 2, &[0x01, 0x02, 0x03, 0x04], &[0x48, 0x0f]),
            (
                6,
                3,
                &[0x10, 0x20, 0x30, 0x40, 0x50, 0x60],
                &[0x9b, 0x7f, 0x4f],
            ),
        ];
        for (k, m, data, parity) in vectors {
            for kernel in Kernel::available() {
                let rs = ReedSolomon::with_kernel(k, m, kernel).unwrap();
                // 100 equal bytes per cell: SIMD steps and the scalar tail.
                let cells: Vec<Vec<u8>> = data.iter().map(|&b| vec![b; 100]).collect();
                let all = encode_all(&rs, &cells);
                for (i, &p) in parity.iter().enumerate() {
                    assert_eq!(
                        all[k + i],
                        vec![p; 100],
                        "{k}+{m} parity {i}, {}",
                        kernel.name()
                    );
                }
            }
        }
    }

    #[test]
    fn shapes_outside_gf256_are_refused() {
        for (k, m) in [(0, 1), (1, 0), (200, 57), (256, 1)] {
            assert_eq!(
                ReedSolomon::new(k, m).unwrap_err(),
                CodecError::InvalidShape { data: k, parity: m }
            );
        }
        assert!(ReedSolomon::new(255, 1).is_ok());
        assert!(ReedSolomon::new(1, 255).is_ok());
    }

    #[test]
    fn one_data_cell_makes_parity_of_scaled_copies() {
        // 1+m: each parity cell is the data times 1/(1 xor 0)... = the data
        // times a non-zero constant; any single cell rebuilds the rest.
        let rs = ReedSolomon::new(1, 3).unwrap();
        let all = encode_all(&rs, &cells(1, 100, 9));
        for keep in 0..4 {
            let present: Vec<Option<&[u8]>> = (0..4)
                .map(|i| (i == keep).then_some(all[i].as_slice()))
                .collect();
            let wanted: Vec<usize> = (0..4).filter(|&i| i != keep).collect();
            let mut out = vec![vec![0u8; 100]; 3];
            let mut outs: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
            rs.reconstruct(&present, &wanted, &mut outs).unwrap();
            for (w, o) in wanted.iter().zip(&out) {
                assert_eq!(o, &all[*w]);
            }
        }
    }

    #[test]
    fn too_few_cells_is_an_error_not_garbage() {
        let rs = ReedSolomon::new(4, 2).unwrap();
        let all = encode_all(&rs, &cells(4, 64, 1));
        let present: Vec<Option<&[u8]>> = (0..6)
            .map(|i| (i >= 3).then_some(all[i].as_slice()))
            .collect();
        let mut out = vec![0u8; 64];
        let err = rs.reconstruct(&present, &[0], &mut [&mut out]).unwrap_err();
        assert_eq!(err, CodecError::TooFewCells { have: 3, need: 4 });
    }

    #[test]
    fn unequal_lengths_and_bad_indices_are_refused() {
        let rs = ReedSolomon::new(2, 1).unwrap();
        let (a, b) = (vec![1u8; 10], vec![2u8; 11]);
        let mut p = vec![0u8; 10];
        assert_eq!(
            rs.encode(&[&a, &b], &mut [&mut p]),
            Err(CodecError::UnequalLengths)
        );
        let present = [Some(a.as_slice()), Some(a.as_slice()), None];
        assert_eq!(
            rs.reconstruct(&present, &[3], &mut [&mut p]),
            Err(CodecError::BadIndex { index: 3, cells: 3 })
        );
    }

    #[test]
    fn largest_codes_rebuild_from_parity_only() {
        // k + m = 256 in both extreme shapes: the last Cauchy point is 255.
        for (k, m) in [(128, 128), (255, 1), (1, 255)] {
            let rs = ReedSolomon::new(k, m).unwrap();
            let all = encode_all(&rs, &cells(k, 96, 7));
            // Lose the first min(k, m) cells (data first).
            let lost: Vec<usize> = (0..m.min(k)).collect();
            let present: Vec<Option<&[u8]>> = (0..k + m)
                .map(|i| (!lost.contains(&i)).then_some(all[i].as_slice()))
                .collect();
            let mut out = vec![vec![0u8; 96]; lost.len()];
            let mut outs: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
            rs.reconstruct(&present, &lost, &mut outs).unwrap();
            for (w, o) in lost.iter().zip(&out) {
                assert_eq!(o, &all[*w], "{k}+{m} cell {w}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_k_cells_rebuild_the_others(
            (k, m) in (1usize..12, 1usize..8),
            len in 0usize..300,
            seed in any::<u8>(),
            order in proptest::collection::vec(any::<u16>(), 20),
        ) {
            let n = k + m;
            let data = cells(k, len, seed);
            for kernel in Kernel::available() {
                let rs = ReedSolomon::with_kernel(k, m, kernel).unwrap();
                let all = encode_all(&rs, &data);
                // A random set of exactly m lost cells.
                let mut idx: Vec<usize> = (0..n).collect();
                idx.sort_by_key(|&i| order[i % order.len()] ^ (i as u16).wrapping_mul(40503));
                let lost: Vec<usize> = idx[..m].to_vec();
                let present: Vec<Option<&[u8]>> = (0..n)
                    .map(|i| (!lost.contains(&i)).then_some(all[i].as_slice()))
                    .collect();
                let mut out = vec![vec![0u8; len]; m];
                let mut outs: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
                rs.reconstruct(&present, &lost, &mut outs).unwrap();
                for (w, o) in lost.iter().zip(&out) {
                    prop_assert_eq!(o, &all[*w]);
                }
            }
        }
    }
}
