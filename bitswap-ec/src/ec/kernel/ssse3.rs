//! The SSSE3 kernel: the AVX2 method on 16-byte registers, for x86-64 CPUs
//! without AVX2.

use std::arch::x86_64::{
    __m128i, _MM_HINT_T0, _mm_and_si128, _mm_load_si128, _mm_loadu_si128, _mm_prefetch,
    _mm_set1_epi8, _mm_setzero_si128, _mm_shuffle_epi8, _mm_srli_epi64, _mm_storeu_si128,
    _mm_xor_si128,
};

use super::{Coefficients, MAX_ROWS_PER_SWEEP, PREFETCH};

/// Rows `row0..row0 + outputs.len()` over as much of `start..end` as whole
/// 32-byte steps cover; returns where it stopped.
///
/// # Safety
///
/// The CPU must support SSSE3, `outputs.len() <= MAX_ROWS_PER_SWEEP`, and
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

#[target_feature(enable = "ssse3")]
unsafe fn rows<const G: usize>(
    coeffs: &Coefficients,
    row0: usize,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) -> usize {
    let mask = _mm_set1_epi8(0x0f);
    let cols = inputs.len();
    let out: [*mut u8; G] = std::array::from_fn(|g| outputs[g].as_mut_ptr());
    let tables = coeffs.sweep_tables(row0, G);
    debug_assert_eq!(tables.len(), cols * G);
    let mut pos = start;
    while pos + 32 <= end {
        let mut acc0 = [_mm_setzero_si128(); G];
        let mut acc1 = [_mm_setzero_si128(); G];
        let mut t = tables.as_ptr();
        for input in inputs {
            // SAFETY: pos + 32 <= end <= input.len(); unaligned loads.
            // The prefetch address may pass the end: prefetches never fault.
            let (x0, x1) = unsafe {
                let p = input.as_ptr().add(pos);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH).cast::<i8>());
                (
                    _mm_loadu_si128(p.cast::<__m128i>()),
                    _mm_loadu_si128(p.add(16).cast::<__m128i>()),
                )
            };
            let lo0 = _mm_and_si128(x0, mask);
            let hi0 = _mm_and_si128(_mm_srli_epi64::<4>(x0), mask);
            let lo1 = _mm_and_si128(x1, mask);
            let hi1 = _mm_and_si128(_mm_srli_epi64::<4>(x1), mask);
            for g in 0..G {
                // SAFETY: `t` walks `tables`, which holds `G` tables per input;
                // NibbleTable is 32-byte aligned, the first 16 bytes of each
                // half are the table.
                let (tlo, thi) = unsafe {
                    (
                        _mm_load_si128((*t.add(g)).lo.as_ptr().cast::<__m128i>()),
                        _mm_load_si128((*t.add(g)).hi.as_ptr().cast::<__m128i>()),
                    )
                };
                acc0[g] = _mm_xor_si128(
                    acc0[g],
                    _mm_xor_si128(_mm_shuffle_epi8(tlo, lo0), _mm_shuffle_epi8(thi, hi0)),
                );
                acc1[g] = _mm_xor_si128(
                    acc1[g],
                    _mm_xor_si128(_mm_shuffle_epi8(tlo, lo1), _mm_shuffle_epi8(thi, hi1)),
                );
            }
            // SAFETY: one past the last input's tables at most.
            t = unsafe { t.add(G) };
        }
        for g in 0..G {
            // SAFETY: pos + 32 <= end <= output length; distinct outputs.
            unsafe {
                _mm_storeu_si128(out[g].add(pos).cast::<__m128i>(), acc0[g]);
                _mm_storeu_si128(out[g].add(pos + 16).cast::<__m128i>(), acc1[g]);
            }
        }
        pos += 32;
    }
    pos
}
