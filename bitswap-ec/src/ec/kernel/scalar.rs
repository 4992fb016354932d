//! The portable kernel: one 256-entry product table per coefficient.

use super::Coefficients;
use crate::ec::gf::MUL;

/// Rows `row0..row0 + outputs.len()` over positions `start..end`.
pub(super) fn sweep(
    coeffs: &Coefficients,
    row0: usize,
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    if start >= end {
        return;
    }
    for (g, out) in outputs.iter_mut().enumerate() {
        let out = &mut out[start..end];
        for (j, input) in inputs.iter().enumerate() {
            let table = &MUL[coeffs.coef(row0 + g, j) as usize];
            let input = &input[start..end];
            if j == 0 {
                for (o, &x) in out.iter_mut().zip(input) {
                    *o = table[x as usize];
                }
            } else {
                for (o, &x) in out.iter_mut().zip(input) {
                    *o ^= table[x as usize];
                }
            }
        }
    }
}
