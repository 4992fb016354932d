//! `kubo-rpc-client`, the JS client written for Kubo, works against tessera unchanged.

#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use std::process::Command;

use anyhow::Result;
use tessera_tests::{Node, setup_peers, workspace_root};

#[test]
fn kubo_rpc_client_works_unchanged() -> Result<()> {
    tessera_tests::use_built_binary!();
    setup_peers()?;
    let node = Node::start()?;
    let base = node.api_url()?.trim_end_matches("/api/v0").to_string();
    let out = Command::new("node")
        .arg(workspace_root().join("tests/js/kubo-rpc-client-check.mjs"))
        .arg(&base)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubo-rpc-client checks failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        node.log()
    );
    assert!(
        stdout.contains("all kubo-rpc-client checks passed"),
        "{stdout}"
    );
    Ok(())
}
