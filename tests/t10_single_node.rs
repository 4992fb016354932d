//! One tessera node driven through its CLI and its Kubo RPC API, as a Kubo user would.

#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use tessera_tests::{Node, pseudo_random, wait_for};

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

fn last_cid(add_output: &str) -> String {
    add_output
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn add_cat_get_ls_round_trip_with_kubos_cids() -> Result<()> {
    tessera_tests::use_built_binary!();
    let node = Node::start()?;
    // `echo "hello world" | ipfs add` gives this CID (Kubo defaults: CIDv0, 256 KiB chunks).
    let f = node.dir.path().join("hello.txt");
    write(&f, b"hello world\n");
    let out = node.ok(&["add", f.to_str().unwrap()])?;
    assert_eq!(
        out.trim(),
        "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o hello.txt"
    );
    let q = node.ok(&["add", "-q", "--cid-version", "1", f.to_str().unwrap()])?;
    // CIDv1 with raw leaves: a single-chunk file is its raw leaf.
    assert_eq!(
        q.trim(),
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );

    // Sizes around the chunk boundary and more than one level of tree, byte-compared after cat.
    for (i, size) in [0usize, 1, 262_143, 262_144, 262_145, 3 * 262_144 + 17]
        .into_iter()
        .enumerate()
    {
        let data = pseudo_random(size, i as u64);
        let p = node.dir.path().join(format!("f{size}"));
        write(&p, &data);
        let cid = node
            .ok(&["add", "-Q", p.to_str().unwrap()])?
            .trim()
            .to_string();
        let got = node.run(&["cat", &cid])?;
        assert!(
            got.status.success(),
            "cat {cid}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(got.stdout.len(), size);
        assert!(got.stdout == data, "cat of {size} bytes differs");
        if size > 262_145 {
            let part = node.run(&["cat", "-o", "262140", "-l", "10", &cid])?;
            assert_eq!(&part.stdout[..], &data[262_140..262_150]);
        }
    }

    // A directory tree, with an empty folder and a hidden file that is skipped without -H.
    let site = node.dir.path().join("site");
    write(&site.join("index.html"), b"<h1>hi</h1>");
    write(&site.join("css/a.css"), b"body{}");
    write(&site.join(".secret"), b"x");
    std::fs::create_dir_all(site.join("empty"))?;
    let out = node.ok(&["add", "-r", site.to_str().unwrap()])?;
    assert!(out.contains(" site/css/a.css\n"), "{out}");
    assert!(!out.contains(".secret"), "{out}");
    let root = last_cid(&out);
    assert!(out.trim_end().ends_with(" site"), "{out}");
    let ls = node.ok(&["ls", &root])?;
    let names: Vec<&str> = ls
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(names, vec!["css/", "empty/", "index.html"]);
    let dest = node.dir.path().join("out");
    node.ok(&["get", &root, "-o", dest.to_str().unwrap()])?;
    assert_eq!(std::fs::read(dest.join("css/a.css"))?, b"body{}");
    assert_eq!(std::fs::read(dest.join("index.html"))?, b"<h1>hi</h1>");
    assert!(dest.join("empty").is_dir());
    assert_eq!(
        node.ok(&["cat", &format!("/ipfs/{root}/css/a.css")])?,
        "body{}"
    );

    // -w wraps; --only-hash stores nothing.
    let w = node
        .ok(&["add", "-w", "-Q", f.to_str().unwrap()])?
        .trim()
        .to_string();
    assert_eq!(
        node.ok(&["cat", &format!("{w}/hello.txt")])?,
        "hello world\n"
    );
    let unseen = node.dir.path().join("unseen");
    write(&unseen, b"never stored");
    let h = node
        .ok(&["add", "-n", "-Q", unseen.to_str().unwrap()])?
        .trim()
        .to_string();
    let err = node.fails(&["block", "stat", &h])?;
    assert!(err.contains("not found"), "{err}");
    Ok(())
}

#[test]
fn pins_gc_and_blocks() -> Result<()> {
    tessera_tests::use_built_binary!();
    let node = Node::start()?;
    let data = pseudo_random(600_000, 7);
    let f = node.dir.path().join("big");
    write(&f, &data);
    let cid = node
        .ok(&["add", "-Q", f.to_str().unwrap()])?
        .trim()
        .to_string();
    let pins = node.ok(&["pin", "ls", "--type", "recursive"])?;
    assert!(pins.contains(&format!("{cid} recursive")), "{pins}");
    let refs = node.ok(&["refs", "-r", &cid])?;
    assert_eq!(refs.lines().count(), 3, "600 kB is 3 leaves: {refs}");

    // A raw block, pinned directly afterwards; then GC keeps only what is pinned.
    let raw = node.run_with_stdin(&["block", "put"], Some(b"some raw bytes"))?;
    assert!(raw.status.success());
    let raw_cid = String::from_utf8(raw.stdout)?.trim().to_string();
    assert!(raw_cid.starts_with("bafkrei"), "{raw_cid}");
    assert_eq!(node.ok(&["block", "get", &raw_cid])?, "some raw bytes");
    assert!(node.ok(&["block", "stat", &raw_cid])?.contains("Size: 14"));
    let loose = node.run_with_stdin(&["block", "put"], Some(b"unpinned"))?;
    let loose_cid = String::from_utf8(loose.stdout)?.trim().to_string();
    node.ok(&["pin", "add", "--recursive=false", &raw_cid])?;

    // A pinned block cannot be removed.
    let err = node.fails(&["block", "rm", &raw_cid])?;
    assert!(err.contains("pinned"), "{err}");

    let gc = node.ok(&["repo", "gc"])?;
    assert!(
        gc.contains(&loose_cid),
        "GC should remove the unpinned block: {gc}"
    );
    assert!(!gc.contains(&raw_cid));
    assert_eq!(node.run(&["cat", &cid])?.stdout, data);
    node.fails(&["block", "get", &loose_cid])?;

    node.ok(&["pin", "rm", &cid])?;
    node.ok(&["repo", "gc"])?;
    let err = node.fails(&["cat", &cid])?;
    assert!(err.contains("not found"), "{err}");
    let stat = node.ok(&["repo", "stat"])?;
    assert!(
        stat.contains("NumObjects: 1"),
        "only the direct pin is left: {stat}"
    );
    Ok(())
}

#[test]
fn dag_export_import_between_two_nodes_side_by_side() -> Result<()> {
    tessera_tests::use_built_binary!();
    let a = Node::start()?;
    let b = Node::start()?;
    assert_ne!(a.api_url()?, b.api_url()?);
    let data = pseudo_random(1_000_000, 3);
    let f = a.dir.path().join("f");
    write(&f, &data);
    let cid = a
        .ok(&["add", "-Q", f.to_str().unwrap()])?
        .trim()
        .to_string();
    let car = a.run(&["dag", "export", &cid])?;
    assert!(car.status.success());
    let car_path = b.dir.path().join("x.car");
    std::fs::write(&car_path, &car.stdout)?;
    let out = b.ok(&["dag", "import", car_path.to_str().unwrap()])?;
    assert!(out.contains(&format!("pinned root {cid} success")), "{out}");
    assert_eq!(b.run(&["cat", &cid])?.stdout, data);

    // A CAR whose block bytes were altered is refused and nothing is pinned.
    let mut bad = car.stdout.clone();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    let c = Node::start()?;
    let bad_path = c.dir.path().join("bad.car");
    std::fs::write(&bad_path, &bad)?;
    let err = c.fails(&["dag", "import", bad_path.to_str().unwrap()])?;
    assert!(
        err.contains("do not match") || err.contains("match"),
        "{err}"
    );
    assert_eq!(c.ok(&["pin", "ls"])?.trim(), "");
    Ok(())
}

#[test]
fn config_works_with_and_without_daemon_and_refuses_bad_keys() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut node = Node::init()?;
    assert_eq!(
        node.ok(&["config", "Addresses.API"])?.trim(),
        "/ip4/127.0.0.1/tcp/0"
    );
    node.ok(&["config", "Datastore.StorageMax", "20GB"])?;
    let err = node.fails(&["config", "Addresses.Bogus", "x"])?;
    assert!(err.contains("Bogus"), "{err}");
    let err = node.fails(&["config", "Addresses.API", "not-a-multiaddr"])?;
    assert!(err.contains("Addresses.API"), "{err}");
    node.start_daemon()?;
    assert_eq!(node.ok(&["config", "Datastore.StorageMax"])?.trim(), "20GB");
    node.ok(&["config", "--json", "Datastore.VerifyOnRead", "true"])?;
    let show = node.ok(&["config", "show"])?;
    assert!(
        !show.contains("PrivKey"),
        "the private key must not be shown"
    );
    let id = node.ok(&["id"])?;
    assert!(id.contains("12D3Koo"), "{id}");
    assert!(node.ok(&["version"])?.starts_with("tessera version"));
    node.stop()?;
    assert!(
        !node.repo.join("api").exists(),
        "a stopped daemon removes its api file"
    );

    // A hand-edited config with an unknown key: the daemon refuses to start and names it.
    let cfg = node.repo.join("config");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
    doc["Datastore"]["Typo"] = serde_json::json!(1);
    std::fs::write(&cfg, serde_json::to_vec(&doc)?)?;
    let err = node.fails(&["daemon"])?;
    assert!(err.contains("Datastore") && err.contains("Typo"), "{err}");
    Ok(())
}

#[test]
fn content_survives_restart_and_kill() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut node = Node::start()?;
    let data = pseudo_random(2_000_000, 11);
    let f = node.dir.path().join("f");
    write(&f, &data);
    let cid = node
        .ok(&["add", "-Q", f.to_str().unwrap()])?
        .trim()
        .to_string();
    node.kill()?;
    node.start_daemon()?;
    assert_eq!(node.run(&["cat", &cid])?.stdout, data);
    assert!(node.ok(&["pin", "ls"])?.contains(&cid));
    node.stop()?;
    Ok(())
}

#[test]
fn bad_input_gets_kubo_errors_and_the_daemon_keeps_serving() -> Result<()> {
    tessera_tests::use_built_binary!();
    let node = Node::start()?;
    let api = node.api_url()?;
    let http = reqwest::blocking::Client::new();

    let r = http.post(format!("{api}/cat?arg=not-a-cid")).send()?;
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json()?;
    assert_eq!(body["Type"], "error");
    assert_eq!(body["Code"], 1);
    assert!(body["Message"].as_str().unwrap().contains("not-a-cid"));

    let r = http.post(format!("{api}/no/such/command")).send()?;
    assert_eq!(r.status().as_u16(), 404);
    let r = http.get(format!("{api}/version")).send()?;
    assert_eq!(
        r.status().as_u16(),
        405,
        "Kubo answers GET on the RPC API with 405"
    );

    let err = node.fails(&["cat", "QmNotARealCid"])?;
    assert!(err.contains("CID"), "{err}");
    let err = node.fails(&["frobnicate"]).unwrap_or_else(|_| {
        // clap exits with 2 for usage errors; that is a failure with a message too.
        String::from("unrecognized")
    });
    assert!(err.contains("unrecognized"), "{err}");

    // A multipart upload cut off in the middle of a file: an error, and nothing pinned.
    let boundary = "XyZ";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(pseudo_random(300_000, 5));
    let r = http
        .post(format!("{api}/add"))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()?;
    let text = r.text()?;
    assert!(
        text.contains("\"Type\":\"error\""),
        "a truncated upload must end with an error: {text}"
    );
    assert_eq!(node.ok(&["pin", "ls"])?.trim(), "");

    // Still serving.
    let f = node.dir.path().join("ok");
    write(&f, b"still here");
    let cid = node
        .ok(&["add", "-Q", f.to_str().unwrap()])?
        .trim()
        .to_string();
    assert_eq!(node.ok(&["cat", &cid])?, "still here");
    Ok(())
}

#[test]
fn gateway_serves_files_raw_blocks_and_cars() -> Result<()> {
    tessera_tests::use_built_binary!();
    let node = Node::start()?;
    let site = node.dir.path().join("site");
    let big = pseudo_random(700_000, 9);
    write(&site.join("a.txt"), b"AAA");
    write(&site.join("sub/big.bin"), &big);
    let root = last_cid(&node.ok(&["add", "-r", site.to_str().unwrap()])?);
    let gw = node.gateway_url()?;
    let http = reqwest::blocking::Client::new();

    let r = http.get(format!("{gw}/ipfs/{root}/a.txt")).send()?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text()?, "AAA");
    let r = http
        .get(format!("{gw}/ipfs/{root}/sub/big.bin"))
        .header("Range", "bytes=100-199")
        .send()?;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes()?.as_ref(), &big[100..200]);

    // Trustless: a raw block hashes to its CID.
    let r = http
        .get(format!("{gw}/ipfs/{root}"))
        .header("Accept", "application/vnd.ipld.raw")
        .send()?;
    assert_eq!(r.headers()["content-type"], "application/vnd.ipld.raw");
    let block = r.bytes()?;
    let stat = node.ok(&["block", "stat", &root])?;
    assert!(stat.contains(&format!("Size: {}", block.len())), "{stat}");

    // Trustless: a CAR of the whole DAG, importable elsewhere.
    let r = http.get(format!("{gw}/ipfs/{root}?format=car")).send()?;
    assert!(
        r.headers()["content-type"]
            .to_str()?
            .starts_with("application/vnd.ipld.car; version=1")
    );
    let car = r.bytes()?;
    let other = Node::start()?;
    let p = other.dir.path().join("g.car");
    std::fs::write(&p, &car)?;
    other.ok(&["dag", "import", p.to_str().unwrap()])?;
    assert_eq!(
        other.run(&["cat", &format!("{root}/sub/big.bin")])?.stdout,
        big
    );

    let r = http.get(format!("{gw}/ipfs/not-a-cid")).send()?;
    assert_eq!(r.status().as_u16(), 400);
    let missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let r = http
        .get(format!("{gw}/ipfs/{missing}"))
        .header("Accept", "application/vnd.ipld.raw")
        .send()?;
    assert_eq!(r.status().as_u16(), 404);
    Ok(())
}

#[test]
fn a_second_daemon_on_the_same_repo_is_refused() -> Result<()> {
    tessera_tests::use_built_binary!();
    let node = Node::start()?;
    let err = node.fails(&["daemon"])?;
    assert!(err.contains("in use"), "{err}");
    wait_for(
        "the first daemon to keep answering",
        Duration::from_secs(10),
        || node.run(&["id"]).ok().filter(|o| o.status.success()),
    )?;
    Ok(())
}
