//! The AVX2 kernel: 64 bytes of every output per step, products by
//! `vpshufb` on split 4-bit tables.

use std::arch::x86_64::{
    __m256i, _MM_HINT_T0, _mm_prefetch, _mm256_and_si256, _mm256_load_si256, _mm256_loadu_si256,
    _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi64,
    _mm256_storeu_si256, _mm256_xor_si256,
};

use super::{Coefficients, MAX_ROWS_PER_SWEEP, PREFETCH};

/// Rows `row0..row0 + outputs.len()` over as much of `start..end` as whole
/// 64-byte steps cover; returns where it stopped.
///
/// # Safety
///
/// The CPU must support AVX2, `outputs.len() <= MAX_ROWS_PER_SWEEP`, and
/// every input and output must be at least `end` bytes long.
pub(super) unsafe fn sweep(
    coeffs: &Coefficients,
    row0: usize,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) -> usize {
    debug_assert!(outputs.len() <= MAX_ROWS_PER_SWEEP);
    // SAFETY: the caller's guarantees are passed on unchanged.
    unsafe {
        match outputs.len() {
            1 => rows::<1>(coeffs, row0, inputs, outputs, start, end),
            2 => rows::<2>(coeffs, row0, inputs, outputs, start, end),
            3 => rows::<3>(coeffs, row0, inputs, outputs, start, end),
            4 => rows::<4>(coeffs, row0, inputs, outputs, start, end),
            _ => start,
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn rows<const G: usize>(
    coeffs: &Coefficients,
    row0: usize,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) -> usize {
    let mask = _mm256_set1_epi8(0x0f);
    let cols = inputs.len();
    let out: [*mut u8; G] = std::array::from_fn(|g| outputs[g].as_mut_ptr());
    let tables = coeffs.sweep_tables(row0, G);
    debug_assert_eq!(tables.len(), cols * G);
    let mut pos = start;
    while pos + 64 <= end {
        let mut acc0 = [_mm256_setzero_si256(); G];
        let mut acc1 = [_mm256_setzero_si256(); G];
        let mut t = tables.as_ptr();
        for input in inputs {
            // SAFETY: pos + 64 <= end <= input.len(); unaligned loads.
            // The prefetch address may pass the end: prefetches never fault.
            let (x0, x1) = unsafe {
                let p = input.as_ptr().add(pos);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH).cast::<i8>());
                (
                    _mm256_loadu_si256(p.cast::<__m256i>()),
                    _mm256_loadu_si256(p.add(32).cast::<__m256i>()),
                )
            };
            let lo0 = _mm256_and_si256(x0, mask);
            let hi0 = _mm256_and_si256(_mm256_srli_epi64::<4>(x0), mask);
            let lo1 = _mm256_and_si256(x1, mask);
            let hi1 = _mm256_and_si256(_mm256_srli_epi64::<4>(x1), mask);
            for g in 0..G {
                // SAFETY: `t` walks `tables`, which holds `G` tables per input;
                // NibbleTable is 32-byte aligned, each half 32 bytes long.
                let (tlo, thi) = unsafe {
                    (
                        _mm256_load_si256((*t.add(g)).lo.as_ptr().cast::<__m256i>()),
                        _mm256_load_si256((*t.add(g)).hi.as_ptr().cast::<__m256i>()),
                    )
                };
                acc0[g] = _mm256_xor_si256(
                    acc0[g],
                    _mm256_xor_si256(_mm256_shuffle_epi8(tlo, lo0), _mm256_shuffle_epi8(thi, hi0)),
                );
                acc1[g] = _mm256_xor_si256(
                    acc1[g],
                    _mm256_xor_si256(_mm256_shuffle_epi8(tlo, lo1), _mm256_shuffle_epi8(thi, hi1)),
                );
            }
            // SAFETY: one past the last input's tables at most.
            t = unsafe { t.add(G) };
        }
        for g in 0..G {
            // SAFETY: pos + 64 <= end <= output length; the outputs are
            // distinct slices, so the pointers do not alias.
            unsafe {
                _mm256_storeu_si256(out[g].add(pos).cast::<__m256i>(), acc0[g]);
                _mm256_storeu_si256(out[g].add(pos + 32).cast::<__m256i>(), acc1[g]);
            }
        }
        pos += 64;
    }
    pos
}
