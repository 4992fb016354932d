//! Throughput of durable batched puts and of cached gets.
//!
//! `put_many/16MiB`: 64 fresh blocks of 256 KiB (Kubo's leaf size) per call,
//! each call durable (pack fdatasync + redb commit) before it returns.
//! `get/256KiB`: reads of blocks that are in the page cache, with and
//! without verification against the CID.
//!
//! Run: `cargo bench -p tessera-blockstore --bench put_get`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tessera_blockstore::{Block, Blockstore, Config, RAW};

const BLOCK: usize = 256 * 1024;
const BATCH_BLOCKS: usize = 64;

fn random_blocks(rng: &mut StdRng, n: usize) -> Vec<Block> {
    (0..n)
        .map(|_| {
            let mut data = vec![0u8; BLOCK];
            rng.fill(&mut data[..]);
            Block::from_data_v1(RAW, Bytes::from(data))
        })
        .collect()
}

fn put_many(c: &mut Criterion) {
    // RUST_LOG=tessera_blockstore=trace shows each batch's append, sync and
    // commit times.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Blockstore::open(dir.path(), Config::default()).expect("open");
    let mut rng = StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group("put_many");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes((BLOCK * BATCH_BLOCKS) as u64));
    group.bench_function("16MiB_of_256KiB_blocks", |b| {
        b.iter_batched(
            || random_blocks(&mut rng, BATCH_BLOCKS),
            |blocks| store.put_many(&blocks).expect("put_many"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let m = store.metrics();
    eprintln!(
        "put_many: {} batches for {} requests, {} MiB appended",
        m.write_batches,
        m.write_requests,
        m.pack_bytes_written >> 20
    );
}

fn get(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(2);
    let blocks = random_blocks(&mut rng, 256);
    let cids: Vec<_> = blocks.iter().map(|b| *b.cid()).collect();
    {
        let store = Blockstore::open(dir.path(), Config::default()).expect("open");
        store.put_many(&blocks).expect("put_many");
    }
    drop(blocks);
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    for verify in [true, false] {
        let config = Config {
            verify_on_read: verify,
            ..Config::default()
        };
        let store = Blockstore::open(dir.path(), config).expect("open");
        let mut i = 0usize;
        let name = if verify {
            "256KiB_verified"
        } else {
            "256KiB_unverified"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % cids.len();
                black_box(store.get(&cids[i]).expect("get").expect("present"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, put_many, get);
criterion_main!(benches);
