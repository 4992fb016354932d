//! The multiply-accumulate kernels: `out[i] = sum_j c[i][j] * in[j]` over
//! whole cells, the only loop in Reed-Solomon that touches every byte.
//!
//! Three implementations give identical bytes; the fastest one the CPU
//! supports is picked once at run time, so one binary runs everywhere:
//!
//! - AVX2: 64 bytes per step, `vpshufb` on split 4-bit tables (the method of
//!   ISA-L and klauspost/reedsolomon): a product `c * x` is
//!   `lo[x & 15] ^ hi[x >> 4]`, two 16-entry table lookups done 32 bytes at
//!   a time by one shuffle each.
//! - SSSE3: the same with 16-byte registers (every x86-64 CPU since 2006).
//! - Scalar: one 256-entry product table per coefficient, for other CPUs.

use std::sync::OnceLock;

use super::gf::{self, Matrix};

#[cfg(target_arch = "x86_64")]
mod avx2;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod ssse3;

/// One implementation of the GF(2^8) multiply-accumulate loop.
///
/// All kernels produce the same bytes; they differ only in speed and in the
/// CPU features they need. [`Kernel::detect`] picks the best one available.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// 256-bit `vpshufb` kernel; needs AVX2 (x86-64, Haswell and later).
    Avx2,
    /// 128-bit `pshufb` kernel; needs SSSE3 (any x86-64 CPU since 2006).
    Ssse3,
    /// Portable table kernel; runs on every CPU.
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU supports, detected once per process.
    pub fn detect() -> Kernel {
        static DETECTED: OnceLock<Kernel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            [Kernel::Avx2, Kernel::Ssse3]
                .into_iter()
                .find(|k| k.is_available())
                .unwrap_or(Kernel::Scalar)
        })
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Ssse3 => std::arch::is_x86_feature_detected!("ssse3"),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Ssse3 => false,
        }
    }

    /// Every kernel this CPU can run, fastest first.
    pub fn available() -> Vec<Kernel> {
        [Kernel::Avx2, Kernel::Ssse3, Kernel::Scalar]
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// A short lowercase name for logs and benchmark labels.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx2 => "avx2",
            Kernel::Ssse3 => "ssse3",
            Kernel::Scalar => "scalar",
        }
    }
}

/// The split 4-bit product tables of one coefficient `c`: `lo[x] = c * x`
/// and `hi[x] = c * (x << 4)` for `x < 16`, each written twice so that one
/// aligned 32-byte load fills both lanes of an AVX2 register.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
// Only the x86 SIMD kernels read the tables.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct NibbleTable {
    lo: [u8; 32],
    hi: [u8; 32],
}

impl NibbleTable {
    fn new(c: u8) -> Self {
        let mut t = NibbleTable {
            lo: [0; 32],
            hi: [0; 32],
        };
        for x in 0..16u8 {
            let lo = gf::mul(c, x);
            let hi = gf::mul(c, x << 4);
            t.lo[x as usize] = lo;
            t.lo[x as usize + 16] = lo;
            t.hi[x as usize] = hi;
            t.hi[x as usize + 16] = hi;
        }
        t
    }
}

/// A linear map from `cols` input cells to `rows` output cells, with the
/// tables every kernel needs precomputed (a few KiB, built once per code and
/// per erasure pattern, then cached by the codec).
#[derive(Debug)]
pub(crate) struct Coefficients {
    rows: usize,
    cols: usize,
    coef: Vec<u8>,
    tables: Vec<NibbleTable>,
}

impl Coefficients {
    pub(crate) fn new(matrix: &Matrix) -> Self {
        let (rows, cols) = (matrix.rows(), matrix.cols());
        let mut coef = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            coef.extend_from_slice(matrix.row(r));
        }
        // Tables in the order the SIMD kernels read them: rows in batches
        // of MAX_ROWS_PER_SWEEP, and within a batch input-major, so a sweep
        // walks one contiguous run with no index arithmetic.
        let mut tables = Vec::with_capacity(rows * cols);
        for row0 in (0..rows).step_by(MAX_ROWS_PER_SWEEP) {
            let batch = MAX_ROWS_PER_SWEEP.min(rows - row0);
            for c in 0..cols {
                for r in row0..row0 + batch {
                    tables.push(NibbleTable::new(coef[r * cols + c]));
                }
            }
        }
        Self {
            rows,
            cols,
            coef,
            tables,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    fn coef(&self, row: usize, col: usize) -> u8 {
        self.coef[row * self.cols + col]
    }

    /// The tables of the sweep over rows `row0..row0 + g`: `cols * g`
    /// entries, input-major.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn sweep_tables(&self, row0: usize, g: usize) -> &[NibbleTable] {
        &self.tables[row0 * self.cols..(row0 + g) * self.cols]
    }
}

/// How far ahead of the current step each input is prefetched (bytes). With
/// 10 or more input streams the hardware prefetchers fall behind once the
/// cells no longer fit in L3; 512 measured best of 512, 1024 and 2048.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 512;

/// Most outputs computed in one sweep over the inputs: each output keeps two
/// accumulator registers, and x86-64 has 16 vector registers.
const MAX_ROWS_PER_SWEEP: usize = 4;

/// Computes `outputs[i] = sum_j coeffs[i][j] * inputs[j]`, overwriting the
/// outputs.
///
/// The caller guarantees `inputs.len() == coeffs.cols()`,
/// `outputs.len() == coeffs.rows()` and that every slice has the same
/// length; the codec checks this before calling.
pub(crate) fn apply(
    kernel: Kernel,
    coeffs: &Coefficients,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
) {
    assert_eq!(inputs.len(), coeffs.cols(), "kernel input count");
    assert_eq!(outputs.len(), coeffs.rows(), "kernel output count");
    let len = outputs.first().map_or(0, |o| o.len());
    assert!(
        inputs.iter().all(|i| i.len() == len) && outputs.iter().all(|o| o.len() == len),
        "kernel cells of unequal length"
    );
    // A kernel forced by a caller (tests, benchmarks) on a CPU without the
    // feature falls back to scalar rather than executing illegal code.
    let kernel = if kernel.is_available() {
        kernel
    } else {
        Kernel::Scalar
    };
    if coeffs.rows() <= MAX_ROWS_PER_SWEEP {
        sweep(kernel, coeffs, 0, inputs, outputs, 0, len);
        return;
    }
    // More outputs than registers: sweep the inputs once per batch of rows,
    // a chunk of positions at a time so the inputs are re-read from cache,
    // not from memory.
    let chunk = ((192 * 1024 / coeffs.cols()) & !63).clamp(4096, 64 * 1024);
    let mut start = 0;
    while start < len {
        let end = (start + chunk).min(len);
        for (batch, outs) in outputs.chunks_mut(MAX_ROWS_PER_SWEEP).enumerate() {
            sweep(
                kernel,
                coeffs,
                batch * MAX_ROWS_PER_SWEEP,
                inputs,
                outs,
                start,
                end,
            );
        }
        start = end;
    }
}

/// Computes rows `row0..row0 + outputs.len()` (at most
/// [`MAX_ROWS_PER_SWEEP`]) over positions `start..end`.
fn sweep(
    kernel: Kernel,
    coeffs: &Coefficients,
    row0: usize,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    #[cfg(target_arch = "x86_64")]
    let done = match kernel {
        // SAFETY: `apply` only passes Avx2 when the CPU reports AVX2, and
        // checked that all cells are at least `end` bytes long.
        Kernel::Avx2 => unsafe { avx2::sweep(coeffs, row0, inputs, outputs, start, end) },
        // SAFETY: as above, for SSSE3.
        Kernel::Ssse3 => unsafe { ssse3::sweep(coeffs, row0, inputs, outputs, start, end) },
        Kernel::Scalar => start,
    };
    // Elsewhere only the scalar kernel exists.
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = kernel;
        start
    };
    // The SIMD kernels stop at the last whole vector step; the scalar
    // kernel finishes the tail (or does everything).
    scalar::sweep(coeffs, row0, inputs, outputs, done, end);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(kernel: Kernel, matrix: &Matrix, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let coeffs = Coefficients::new(matrix);
        let len = inputs.first().map_or(0, Vec::len);
        let mut outputs = vec![vec![0xAAu8; len]; matrix.rows()];
        let ins: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        apply(kernel, &coeffs, &ins, &mut outs);
        outputs
    }

    /// The definition, byte by byte, with no tables: the reference the
    /// kernels are held to.
    fn reference(matrix: &Matrix, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let len = inputs.first().map_or(0, Vec::len);
        (0..matrix.rows())
            .map(|r| {
                (0..len)
                    .map(|p| {
                        (0..matrix.cols())
                            .fold(0u8, |acc, c| acc ^ gf::mul(matrix.get(r, c), inputs[c][p]))
                    })
                    .collect()
            })
            .collect()
    }

    fn matrix_and_inputs() -> impl Strategy<Value = (Matrix, Vec<Vec<u8>>)> {
        (1usize..12, 1usize..11, 0usize..700).prop_flat_map(|(rows, cols, len)| {
            (
                proptest::collection::vec(any::<u8>(), rows * cols),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), len), cols),
            )
                .prop_map(move |(coef, inputs)| {
                    let mut m = Matrix::zero(rows, cols);
                    for r in 0..rows {
                        for c in 0..cols {
                            m.set(r, c, coef[r * cols + c]);
                        }
                    }
                    (m, inputs)
                })
        })
    }

    proptest! {
        #[test]
        fn every_kernel_matches_the_definition((matrix, inputs) in matrix_and_inputs()) {
            let want = reference(&matrix, &inputs);
            for kernel in Kernel::available() {
                prop_assert_eq!(&run(kernel, &matrix, &inputs), &want, "kernel {}", kernel.name());
            }
        }
    }

    #[test]
    fn chunked_path_matches_for_many_rows_and_long_cells() {
        // 9 rows forces three sweeps per chunk; 70 000 bytes spans several
        // chunks and ends on a tail that is not a multiple of 64.
        let (rows, cols, len) = (9, 5, 70_000);
        let mut m = Matrix::zero(rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                m.set(r, c, (r * 31 + c * 7 + 1) as u8);
            }
        }
        let inputs: Vec<Vec<u8>> = (0..cols)
            .map(|c| (0..len).map(|p| (p * 13 + c * 101) as u8).collect())
            .collect();
        let want = reference(&m, &inputs);
        for kernel in Kernel::available() {
            assert_eq!(run(kernel, &m, &inputs), want, "kernel {}", kernel.name());
        }
    }

    #[test]
    fn detect_picks_an_available_kernel() {
        assert!(Kernel::detect().is_available());
        assert!(Kernel::available().contains(&Kernel::Scalar));
    }
}
