//! UnixFS import and cat throughput, in memory.
//!
//! Import of 256 MiB with Kubo's defaults (dag-pb leaves, CIDv0) and with
//! CIDv1 raw leaves, against SHA-256 of the same bytes in 256 KiB pieces:
//! the importer's cost beyond hashing is what this measures. Blocks are
//! dropped as they come out, as in the add pipeline; a third run keeps all
//! of them, paying for 256 MiB of fresh memory. Then `cat` of the imported
//! file from an in-memory block source (no hashing: the source is trusted).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use multihash_codetable::{Code, MultihashDigest};
use tessera_node::ipld::MemoryBlocks;
use tessera_node::unixfs::{FileImporter, ImportOptions, cat};

const SIZE: usize = 256 << 20;

fn data() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..SIZE / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// Keeps every block: what `cat` needs to read the file back.
fn import(data: &[u8], options: ImportOptions) -> (cid::Cid, Vec<tessera_blockstore::Block>) {
    let mut importer = FileImporter::new(options).expect("valid options");
    let mut blocks = Vec::with_capacity(SIZE / 262_144 + 16);
    for piece in data.chunks(1 << 20) {
        importer.push(piece, &mut blocks);
    }
    let root = importer.finish(&mut blocks);
    (root.cid, blocks)
}

/// Hands blocks on as they come, as the add pipeline does (it writes them
/// out and drops them), so memory is reused instead of faulted in afresh.
fn import_streaming(data: &[u8], options: ImportOptions) -> (cid::Cid, usize) {
    let mut importer = FileImporter::new(options).expect("valid options");
    let mut out = Vec::new();
    let mut count = 0;
    // 1 MiB pushes, as an HTTP body or a file read would arrive.
    for piece in data.chunks(1 << 20) {
        importer.push(piece, &mut out);
        count += out.len();
        black_box(out.drain(..).count());
    }
    let root = importer.finish(&mut out);
    (root.cid, count + out.len())
}

fn bench(c: &mut Criterion) {
    let data = data();
    let mut g = c.benchmark_group("unixfs-256MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("sha256-only", |b| {
        b.iter(|| {
            for piece in data.chunks(262_144) {
                black_box(Code::Sha2_256.digest(piece));
            }
        })
    });
    g.bench_function("import-kubo-default", |b| {
        b.iter(|| black_box(import_streaming(&data, ImportOptions::default())))
    });
    g.bench_function("import-cidv1-raw", |b| {
        b.iter(|| black_box(import_streaming(&data, ImportOptions::v1())))
    });
    let (root, blocks) = import(&data, ImportOptions::default());
    let source: MemoryBlocks = blocks.into_iter().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    g.bench_function("import-kubo-default-keep-blocks", |b| {
        b.iter(|| black_box(import(&data, ImportOptions::default())))
    });
    g.bench_function("cat-memory", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut total = 0usize;
                let mut s = std::pin::pin!(cat(&source, root, 0, None));
                while let Some(piece) = s.next().await {
                    total += piece.expect("cat").len();
                }
                assert_eq!(total, SIZE);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
