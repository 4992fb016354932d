//! Splitting one codec call over all cores.
//!
//! Codecs are bytewise (see the [`Codec`] contract): byte `p` of the
//! outputs depends only on byte `p` of the inputs. So a stripe with long
//! cells is cut into position ranges, each coded by a rayon task into its
//! own disjoint part of the output buffers.

use std::ops::Range;

use rayon::prelude::*;

use super::codec::{Codec, CodecError};

/// Below this many bytes per range, splitting costs more than it saves.
const MIN_RANGE: usize = 32 * 1024;

/// Runs `f(range, outputs[range])` over ranges of `0..len` in parallel.
fn split<F>(len: usize, outputs: &mut [Vec<u8>], f: F) -> Result<(), CodecError>
where
    F: Fn(Range<usize>, &mut [&mut [u8]]) -> Result<(), CodecError> + Sync,
{
    let pieces = (len / MIN_RANGE).min(rayon::current_num_threads());
    if pieces <= 1 {
        let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        return f(0..len, &mut outs);
    }
    // Ranges start on 64-byte boundaries so every kernel step is whole.
    let step = len.div_ceil(pieces).next_multiple_of(64);
    let ranges: Vec<Range<usize>> = (0..len)
        .step_by(step)
        .map(|s| s..(s + step).min(len))
        .collect();
    let mut per_range: Vec<Vec<&mut [u8]>> = ranges
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for out in outputs.iter_mut() {
        let mut rest = out.as_mut_slice();
        for (r, outs) in ranges.iter().zip(per_range.iter_mut()) {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(r.len());
            outs.push(head);
            rest = tail;
        }
    }
    ranges
        .into_par_iter()
        .zip(per_range)
        .try_for_each(|(r, mut outs)| f(r, &mut outs))
}

/// [`Codec::encode`] on all cores; `parity` buffers must be as long as the
/// data cells.
pub(crate) fn encode(
    codec: &dyn Codec,
    data: &[&[u8]],
    parity: &mut [Vec<u8>],
) -> Result<(), CodecError> {
    let len = data.first().map_or(0, |d| d.len());
    if data.iter().any(|d| d.len() != len) || parity.iter().any(|p| p.len() != len) {
        return Err(CodecError::UnequalLengths);
    }
    split(len, parity, |r, outs| {
        let ins: Vec<&[u8]> = data.iter().map(|d| &d[r.clone()]).collect();
        codec.encode(&ins, outs)
    })
}

/// [`Codec::reconstruct`] on all cores; `out` buffers must be as long as the
/// present cells.
pub(crate) fn reconstruct(
    codec: &dyn Codec,
    cells: &[Option<&[u8]>],
    wanted: &[usize],
    out: &mut [Vec<u8>],
) -> Result<(), CodecError> {
    let len = cells.iter().flatten().next().map_or(0, |c| c.len());
    if cells.iter().flatten().any(|c| c.len() != len) || out.iter().any(|o| o.len() != len) {
        return Err(CodecError::UnequalLengths);
    }
    split(len, out, |r, outs| {
        let ins: Vec<Option<&[u8]>> = cells.iter().map(|c| c.map(|c| &c[r.clone()])).collect();
        codec.reconstruct(&ins, wanted, outs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec::reed_solomon::ReedSolomon;

    #[test]
    fn split_coding_equals_one_call() {
        let rs = ReedSolomon::new(3, 2).unwrap();
        // Long enough to split on any machine with 2+ threads, and not a
        // multiple of 64, so the last range is ragged.
        let len = 5 * MIN_RANGE + 77;
        let data: Vec<Vec<u8>> = (0..3)
            .map(|j| (0..len).map(|p| (p * 7 + j) as u8).collect())
            .collect();
        let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut whole = vec![vec![0u8; len]; 2];
        {
            let mut outs: Vec<&mut [u8]> = whole.iter_mut().map(Vec::as_mut_slice).collect();
            rs.encode(&ins, &mut outs).unwrap();
        }
        let mut split_out = vec![vec![0u8; len]; 2];
        encode(&rs, &ins, &mut split_out).unwrap();
        assert_eq!(whole, split_out);

        let cells = [
            None,
            Some(ins[1]),
            None,
            Some(whole[0].as_slice()),
            Some(whole[1].as_slice()),
        ];
        let mut rebuilt = vec![vec![0u8; len]; 2];
        reconstruct(&rs, &cells, &[0, 2], &mut rebuilt).unwrap();
        assert_eq!(rebuilt, vec![data[0].clone(), data[2].clone()]);
    }
}
