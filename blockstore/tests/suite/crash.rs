//! kill -9 at random moments, then reopen: every acknowledged block is there
//! and verifies, and no index entry points at lost bytes.
//!
//! The test binary re-runs itself as the child (`crash::child_process`, an
//! ignored test that only does something when asked through the
//! environment). The child writes DAGs from three threads (blocks, a root
//! node, then a recursive pin, under a GC guard) and prints `ACK <cid>` for
//! every block once its pin returned; a fourth thread writes junk and runs
//! GC, deletes and compaction, so that kills land in every phase.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tessera_blockstore::{Block, Blockstore, Cid, Config, PinMode};

use crate::dag::{leaf, links, node};

const DIR_VAR: &str = "TESSERA_CRASH_TEST_DIR";
const ROUND_VAR: &str = "TESSERA_CRASH_TEST_ROUND";

fn config() -> Config {
    Config {
        inline_threshold: 1024,
        // Small packs: rollovers and compactions happen every few batches.
        pack_size_limit: 512 * 1024,
        compact_threshold: 0.3,
        ..Config::default()
    }
}

#[test]
#[ignore = "child process of kill_9_at_random_moments; does nothing on its own"]
fn child_process() {
    let (Ok(dir), Ok(round)) = (std::env::var(DIR_VAR), std::env::var(ROUND_VAR)) else {
        return;
    };
    let round: u64 = round.parse().expect("round number");
    let store = Blockstore::open(std::path::Path::new(&dir), config()).expect("child open");
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let store = &store;
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(round * 1000 + t);
                for batch in 0u64.. {
                    let n = rng.gen_range(1..8);
                    let blocks: Vec<Block> = (0..n)
                        .map(|i| {
                            let len = match rng.gen_range(0..4) {
                                0 => rng.gen_range(0..1024),
                                1 => 256 * 1024,
                                _ => rng.gen_range(1024..200_000),
                            };
                            leaf(len, (round << 40) | (t << 32) | (batch << 8) | i)
                        })
                        .collect();
                    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
                    let root = node(&cids, &batch.to_le_bytes());
                    {
                        let _guard = store.gc_guard();
                        // One thread's blocks go past the page cache (direct I/O), so that
                        // cold and ordinary appends share packs when the kill comes.
                        if t == 1 {
                            store.put_many_cold(&blocks).expect("put_many_cold");
                        } else {
                            store.put_many(&blocks).expect("put_many");
                        }
                        store.put(&root).expect("put root");
                        store.pin(root.cid(), PinMode::Recursive).expect("pin");
                    }
                    let mut out = std::io::stdout().lock();
                    for cid in cids.iter().chain([root.cid()]) {
                        writeln!(out, "ACK {cid}").expect("stdout");
                    }
                    out.flush().expect("stdout");
                }
            });
        }
        let store = &store;
        s.spawn(move || {
            let mut rng = StdRng::seed_from_u64(round * 1000 + 99);
            for i in 0u64.. {
                let junk: Vec<Block> = (0..4)
                    .map(|j| {
                        leaf(
                            rng.gen_range(2000..100_000),
                            (1 << 63) | (round << 40) | (i << 4) | j,
                        )
                    })
                    .collect();
                store.put_many(&junk).expect("put junk");
                match i % 3 {
                    0 => {
                        store.gc(&links).expect("gc");
                    }
                    1 => {
                        for b in &junk {
                            store.delete(b.cid()).expect("delete");
                        }
                        store.compact().expect("compact");
                    }
                    _ => {}
                }
            }
        });
    });
}

/// Runs one child until it has acknowledged at least `min_acks` CIDs, then
/// a random moment more, kills it with SIGKILL and returns its ACKs.
fn run_and_kill(dir: &std::path::Path, round: u64, min_acks: usize, rng: &mut StdRng) -> Vec<Cid> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "crash::child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(ROUND_VAR, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = sync_channel::<Cid>(1 << 16);
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        // Only whole lines count: a line cut by the kill was not acknowledged.
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(cid) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACK ")) {
                let cid: Cid = cid.parse().expect("child prints CIDs");
                if tx.send(cid).is_err() {
                    break;
                }
            }
            line.clear();
        }
    });

    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < min_acks {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(cid) => acked.push(cid),
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("child output");
                panic!(
                    "child acknowledged only {} blocks before the deadline or exit; stderr:\n{}",
                    acked.len(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    // A random moment: somewhere in the middle of the next batches.
    let extra = Duration::from_millis(rng.gen_range(0..400));
    let until = Instant::now() + extra;
    while let Ok(cid) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        acked.push(cid);
    }
    if let Ok(Some(status)) = child.try_wait() {
        let out = child.wait_with_output().expect("child output");
        panic!(
            "child exited on its own ({status}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");
    reader.join().expect("reader thread");
    acked.extend(rx.try_iter());
    acked
}

#[test]
fn kill_9_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(rand::random());
    let mut all_acked: Vec<Cid> = Vec::new();
    for round in 0..10 {
        let min_acks = rng.gen_range(1..60);
        let acked = run_and_kill(dir.path(), round, min_acks, &mut rng);
        assert!(acked.len() >= min_acks);
        all_acked.extend(acked);

        let store = Blockstore::open(dir.path(), config()).expect("store opens after kill -9");
        let check = store.check_index().unwrap();
        assert!(
            check.problems.is_empty(),
            "round {round}: {:#?}",
            check.problems
        );
        for cid in &all_acked {
            match store.get_verified(cid) {
                Ok(Some(_)) => {}
                other => panic!("round {round}: acknowledged {cid} reads back as {other:?}"),
            }
        }
        // No index entry points at lost bytes: every block reads and verifies.
        for cid in store.cids() {
            let cid = cid.unwrap();
            assert!(
                store.get_verified(&cid).unwrap().is_some(),
                "round {round}: {cid}"
            );
        }
        assert!(store.corrupt_blocks().unwrap().is_empty());
        eprintln!(
            "round {round}: {} acknowledged so far, {} blocks, {:?}",
            all_acked.len(),
            check.blocks,
            store.stat().unwrap()
        );
    }
}
