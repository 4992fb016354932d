//! Arithmetic in GF(2^8) and the small matrices Reed-Solomon needs.
//!
//! The field is GF(2)[x] / (x^8 + x^4 + x^3 + x^2 + 1), polynomial 0x11d,
//! the one ISA-L, klauspost/reedsolomon and most storage systems use. The
//! polynomial is part of the codec's identity: parity computed in another
//! field is not compatible.

/// The reducing polynomial, with the x^8 term.
const POLY: u16 = 0x11d;

/// exp[i] = 2^i; doubled in length so that `exp[log a + log b]` needs no
/// modulo.
static EXP: [u8; 512] = build_exp();
/// log[a] for a != 0; log[0] is never read.
static LOG: [u8; 256] = build_log();
/// MUL[a][b] = a * b: 64 KiB, read by the scalar kernel one row at a time.
pub(crate) static MUL: [[u8; 256]; 256] = build_mul();

const fn build_exp() -> [u8; 512] {
    let mut exp = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 512 {
        exp[i] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    exp
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

const fn build_mul() -> [[u8; 256]; 256] {
    let exp = build_exp();
    let log = build_log();
    let mut table = [[0u8; 256]; 256];
    let mut a = 1;
    while a < 256 {
        let mut b = 1;
        while b < 256 {
            table[a][b] = exp[log[a] as usize + log[b] as usize];
            b += 1;
        }
        a += 1;
    }
    table
}

/// a * b in the field.
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
    }
}

/// The multiplicative inverse of a non-zero element.
///
/// Zero has no inverse; callers only pass values they know to be non-zero
/// (distinct Cauchy points, pivots found non-zero). For 0 this returns 0 so
/// that a logic error shows up as a failed CID check, not a panic.
pub(crate) fn inv(a: u8) -> u8 {
    if a == 0 {
        0
    } else {
        EXP[255 - LOG[a as usize] as usize]
    }
}

/// A dense row-major matrix over GF(2^8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Matrix {
    rows: usize,
    cols: usize,
    cells: Vec<u8>,
}

impl Matrix {
    pub(crate) fn zero(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            cells: vec![0; rows * cols],
        }
    }

    pub(crate) fn identity(n: usize) -> Self {
        let mut m = Self::zero(n, n);
        for i in 0..n {
            m.set(i, i, 1);
        }
        m
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    pub(crate) fn get(&self, r: usize, c: usize) -> u8 {
        self.cells[r * self.cols + c]
    }

    pub(crate) fn set(&mut self, r: usize, c: usize, v: u8) {
        self.cells[r * self.cols + c] = v;
    }

    pub(crate) fn row(&self, r: usize) -> &[u8] {
        &self.cells[r * self.cols..(r + 1) * self.cols]
    }

    /// The systematic Cauchy encoding matrix of a `k + m` code: identity on
    /// top, then `m` rows with `1 / (x_i + y_j)` for `x_i = k + i`,
    /// `y_j = j`. Every square submatrix of a Cauchy matrix is invertible,
    /// so any `k` rows of the whole matrix are: this is what makes any `k`
    /// surviving cells enough. The points stay distinct while `k + m <= 256`.
    pub(crate) fn cauchy_systematic(k: usize, m: usize) -> Self {
        let mut e = Self::zero(k + m, k);
        for j in 0..k {
            e.set(j, j, 1);
        }
        for i in 0..m {
            for j in 0..k {
                // k + i and j are distinct bytes, so their sum (xor) is non-zero.
                e.set(k + i, j, inv(((k + i) ^ j) as u8));
            }
        }
        e
    }

    /// The matrix made of the given rows of `self`, in that order.
    pub(crate) fn select_rows(&self, rows: &[usize]) -> Self {
        let mut out = Self::zero(rows.len(), self.cols);
        for (i, &r) in rows.iter().enumerate() {
            out.cells[i * self.cols..(i + 1) * self.cols].copy_from_slice(self.row(r));
        }
        out
    }

    /// `self * rhs`.
    pub(crate) fn mul(&self, rhs: &Matrix) -> Matrix {
        debug_assert_eq!(self.cols, rhs.rows);
        let mut out = Self::zero(self.rows, rhs.cols);
        for r in 0..self.rows {
            for c in 0..rhs.cols {
                let mut acc = 0u8;
                for i in 0..self.cols {
                    acc ^= mul(self.get(r, i), rhs.get(i, c));
                }
                out.set(r, c, acc);
            }
        }
        out
    }

    /// The inverse by Gauss-Jordan elimination, or `None` if the matrix is
    /// singular (never for a square selection of Cauchy-systematic rows).
    pub(crate) fn invert(&self) -> Option<Matrix> {
        let n = self.rows;
        if n != self.cols {
            return None;
        }
        let mut a = self.clone();
        let mut inv_m = Self::identity(n);
        for col in 0..n {
            let pivot = (col..n).find(|&r| a.get(r, col) != 0)?;
            if pivot != col {
                a.swap_rows(pivot, col);
                inv_m.swap_rows(pivot, col);
            }
            let p = inv(a.get(col, col));
            a.scale_row(col, p);
            inv_m.scale_row(col, p);
            for r in 0..n {
                let f = a.get(r, col);
                if r != col && f != 0 {
                    a.add_scaled_row(r, col, f);
                    inv_m.add_scaled_row(r, col, f);
                }
            }
        }
        Some(inv_m)
    }

    fn swap_rows(&mut self, a: usize, b: usize) {
        for c in 0..self.cols {
            self.cells.swap(a * self.cols + c, b * self.cols + c);
        }
    }

    fn scale_row(&mut self, r: usize, f: u8) {
        for c in 0..self.cols {
            let v = self.get(r, c);
            self.set(r, c, mul(v, f));
        }
    }

    /// row[dst] += f * row[src]
    fn add_scaled_row(&mut self, dst: usize, src: usize, f: u8) {
        for c in 0..self.cols {
            let v = self.get(dst, c) ^ mul(f, self.get(src, c));
            self.set(dst, c, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_axioms_hold_for_every_pair() {
        for a in 0..=255u8 {
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
            if a != 0 {
                assert_eq!(mul(a, inv(a)), 1, "inverse of {a}");
            }
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), mul(b, a));
                assert_eq!(MUL[a as usize][b as usize], mul(a, b));
            }
        }
        // Distributivity on a sample, checked against carry-less multiplication.
        for a in [3u8, 29, 128, 255] {
            for b in [7u8, 64, 200] {
                let mut r: u16 = 0;
                for bit in 0..8 {
                    if b >> bit & 1 == 1 {
                        r ^= (a as u16) << bit;
                    }
                }
                for bit in (8..16).rev() {
                    if r >> bit & 1 == 1 {
                        r ^= POLY << (bit - 8);
                    }
                }
                assert_eq!(mul(a, b), r as u8);
            }
        }
    }

    #[test]
    fn every_k_rows_of_small_codes_are_invertible() {
        // Exhaustive over all k-subsets for a few small codes.
        for (k, m) in [(1, 1), (2, 2), (3, 3), (4, 2), (2, 5)] {
            let e = Matrix::cauchy_systematic(k, m);
            let n = k + m;
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize != k {
                    continue;
                }
                let rows: Vec<usize> = (0..n).filter(|r| mask >> r & 1 == 1).collect();
                let sub = e.select_rows(&rows);
                let inv_m = sub.invert().expect("invertible");
                assert_eq!(sub.mul(&inv_m), Matrix::identity(k));
            }
        }
    }

    #[test]
    fn largest_code_inverts_with_all_data_rows_lost() {
        // 128 + 128: drop the first 128 rows (all data), keep all parity.
        let e = Matrix::cauchy_systematic(128, 128);
        let rows: Vec<usize> = (128..256).collect();
        let sub = e.select_rows(&rows);
        let inv_m = sub.invert().expect("invertible");
        assert_eq!(sub.mul(&inv_m), Matrix::identity(128));
    }
}
