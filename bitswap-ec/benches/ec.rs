//! Erasure-coding benchmarks: the codec on one core (encode, rebuild of 3
//! lost cells, per kernel), and the streaming encoder over a 1 GiB stream
//! with hashing, against SHA-256 alone over the same bytes.
//!
//! Run with `cargo bench -p tessera-bitswap-ec --bench ec`; a filter such
//! as `-- encode/` picks one group. Figures go to BENCHMARKS.md.
//!
//! The one-core codec groups are timed by the benchmark thread's CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`), not the wall clock: the machine they run on
//! is shared, and a thread that is descheduled for other processes' builds
//! would otherwise be charged for their time. Set `EC_BENCH_CLOCK=wall` to
//! time them by the wall clock instead. The all-core `stream` group is
//! always wall-clock. Throughputs are in decimal GB/s, like the targets.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use tessera_bitswap_ec::{BlockKind, Codec, Kernel, Layout, ReedSolomon, StripeEncoder};
use tessera_blockstore::{Block, RAW};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Deterministic, incompressible-looking bytes (xorshift).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn cells(k: usize, len: usize) -> Vec<Vec<u8>> {
    (0..k).map(|j| bytes(len, j as u64 + 1)).collect()
}

/// CPU time of the calling thread, in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a
    // constant that Linux supports for every thread.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// CPU time of the whole process (all threads), in nanoseconds: the work a
/// multi-threaded benchmark did, whatever share of the machine it got.
struct ProcessCpuTime;

fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `thread_cpu_ns`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ProcessCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        process_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        process_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds of CPU time as criterion formats wall time.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else if ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (bytes, scale, unit) = match *throughput {
            Throughput::Bytes(b) => (b as f64, 1024.0 * 1024.0 * 1024.0, "GiB/s"),
            Throughput::BytesDecimal(b) => (b as f64, 1e9, "GB/s"),
            Throughput::Elements(e) => (e as f64, 1e9, "Gelem/s"),
        };
        values
            .iter_mut()
            .for_each(|v| *v = bytes * 1e9 / *v / scale);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

const SHAPES: [(usize, usize); 2] = [(6, 3), (10, 4)];
const CELLS: [usize; 2] = [256 * KIB, MIB];

fn label(k: usize, m: usize, len: usize) -> String {
    format!("{k}+{m}/{}KiB", len / KIB)
}

/// Parity of `k` cells on one core, counted over the data bytes.
fn encode<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("encode");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (k, m) in SHAPES {
        for len in CELLS {
            let rs = ReedSolomon::new(k, m).expect("valid shape");
            let data = cells(k, len);
            let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut parity = vec![vec![0u8; len]; m];
            g.throughput(Throughput::BytesDecimal((k * len) as u64));
            g.bench_function(
                BenchmarkId::new(rs.kernel().name(), label(k, m, len)),
                |b| {
                    b.iter(|| {
                        let mut outs: Vec<&mut [u8]> =
                            parity.iter_mut().map(Vec::as_mut_slice).collect();
                        rs.encode(black_box(&ins), &mut outs).expect("encode");
                    })
                },
            );
        }
    }
    g.finish();
}

/// Every kernel this CPU has, 6+3 with 256 KiB cells: what a CPU without
/// AVX2 (SSSE3) or without x86 SIMD (scalar) would see.
fn kernels<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("encode-kernel");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let (k, m, len) = (6, 3, 256 * KIB);
    let data = cells(k, len);
    let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut parity = vec![vec![0u8; len]; m];
    g.throughput(Throughput::BytesDecimal((k * len) as u64));
    for kernel in Kernel::available() {
        let rs = ReedSolomon::with_kernel(k, m, kernel).expect("valid shape");
        g.bench_function(BenchmarkId::new(kernel.name(), label(k, m, len)), |b| {
            b.iter(|| {
                let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
                rs.encode(black_box(&ins), &mut outs).expect("encode");
            })
        });
    }
    g.finish();
}

/// Rebuild of 3 lost data cells (the worst case: every output needs the
/// inverted matrix) from `k` survivors on one core, counted over the data
/// bytes of the stripe.
fn rebuild<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("rebuild3");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (k, m) in SHAPES {
        for len in CELLS {
            let rs = ReedSolomon::new(k, m).expect("valid shape");
            let data = cells(k, len);
            let mut parity = vec![vec![0u8; len]; m];
            {
                let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
                rs.encode(&ins, &mut outs).expect("encode");
            }
            let lost = [0usize, 1, 2];
            let present: Vec<Option<&[u8]>> = data
                .iter()
                .chain(&parity)
                .enumerate()
                .map(|(i, c)| (!lost.contains(&i)).then_some(c.as_slice()))
                .collect();
            let mut out = vec![vec![0u8; len]; lost.len()];
            {
                let mut outs: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
                rs.reconstruct(&present, &lost, &mut outs).expect("rebuild");
            }
            assert!(out[..] == data[..3], "rebuild is exact");
            g.throughput(Throughput::BytesDecimal((k * len) as u64));
            g.bench_function(
                BenchmarkId::new(rs.kernel().name(), label(k, m, len)),
                |b| {
                    b.iter(|| {
                        let mut outs: Vec<&mut [u8]> =
                            out.iter_mut().map(Vec::as_mut_slice).collect();
                        rs.reconstruct(black_box(&present), &lost, &mut outs)
                            .expect("rebuild");
                    })
                },
            );
        }
    }
    g.finish();
}

/// 1 GiB of 256 KiB leaves, 6+3, all cores. `encoder` hashes every data
/// block (as the importer would, one stripe ahead, beside the encoder) and
/// runs the stripe encoder, which computes and hashes the parity.
/// `sha256-only` hashes the same number of data and parity bytes, in
/// parallel, and nothing else. Both count the data + parity bytes. Run by
/// the wall clock as group `stream` (with a one-core SHA-256 line for
/// scale), and by process CPU time as group `stream-cpu`.
fn stream<M: Measurement>(c: &mut Criterion<M>, name: &str, one_core_sha: bool) {
    let layout = Layout::new(6, 3);
    let (k, m) = (layout.data_shards, layout.parity_shards);
    let leaf = 256 * KIB;
    let leaves = 1024 * MIB / leaf;
    // 64 distinct chunks reused: 16 MiB resident, not 1 GiB.
    let pool: Vec<Bytes> = (0..64)
        .map(|i| Bytes::from(bytes(leaf, 1000 + i)))
        .collect();
    let stripes = leaves.div_ceil(k);
    let total = (leaves + stripes * m) * leaf;

    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .measurement_time(Duration::from_secs(12))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::BytesDecimal(total as u64));

    let hash_stripe = |s: usize| -> Vec<Block> {
        (s * k..((s + 1) * k).min(leaves))
            .into_par_iter()
            .map(|i| Block::from_data_v1(RAW, pool[i % pool.len()].clone()))
            .collect()
    };
    g.bench_function("encoder/6+3/1GiB", |b| {
        b.iter(|| {
            let mut enc = StripeEncoder::new(layout).expect("valid layout");
            let mut ready = hash_stripe(0);
            let mut parity_blocks = 0usize;
            for s in 0..stripes {
                let current = std::mem::take(&mut ready);
                let (next, emitted) = rayon::join(
                    || {
                        if s + 1 < stripes {
                            hash_stripe(s + 1)
                        } else {
                            Vec::new()
                        }
                    },
                    || {
                        let mut out = Vec::new();
                        for block in current {
                            out.extend(enc.push(block, BlockKind::Leaf).expect("encode"));
                        }
                        out
                    },
                );
                ready = next;
                parity_blocks += emitted.len();
                black_box(emitted);
            }
            let root = *Block::from_data_v1(RAW, Bytes::from_static(b"root")).cid();
            black_box(enc.finish(root).expect("finish"));
            parity_blocks
        })
    });

    g.bench_function("sha256-only/6+3/1GiB", |b| {
        b.iter(|| {
            (0..leaves + stripes * m).into_par_iter().for_each(|i| {
                black_box(Block::from_data_v1(RAW, pool[i % pool.len()].clone()));
            })
        })
    });
    if one_core_sha {
        g.bench_function("sha256-one-core/6+3/1GiB", |b| {
            b.iter(|| {
                (0..leaves + stripes * m).for_each(|i| {
                    black_box(Block::from_data_v1(RAW, pool[i % pool.len()].clone()));
                })
            })
        });
    }
    g.finish();
}

fn one_core() -> Criterion<ThreadCpuTime> {
    Criterion::default().with_measurement(ThreadCpuTime)
}

fn codec_cpu(c: &mut Criterion<ThreadCpuTime>) {
    if std::env::var("EC_BENCH_CLOCK").as_deref() != Ok("wall") {
        encode(c);
        kernels(c);
        rebuild(c);
    }
}

fn codec_wall(c: &mut Criterion<WallTime>) {
    if std::env::var("EC_BENCH_CLOCK").as_deref() == Ok("wall") {
        encode(c);
        kernels(c);
        rebuild(c);
    }
}

criterion_group! {
    name = cpu;
    config = one_core();
    targets = codec_cpu
}
fn stream_wall(c: &mut Criterion<WallTime>) {
    stream(c, "stream", true);
}

fn stream_cpu(c: &mut Criterion<ProcessCpuTime>) {
    stream(c, "stream-cpu", false);
}

criterion_group! {
    name = process;
    config = Criterion::default().with_measurement(ProcessCpuTime);
    targets = stream_cpu
}
criterion_group!(wall, codec_wall, stream_wall);
criterion_main!(cpu, process, wall);
