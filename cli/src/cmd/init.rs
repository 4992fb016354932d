//! `tessera init`: the repo (config, identity, blockstore) and the `Cluster` section (a new secret,
//! or the one given, and the members to join through).

use std::path::Path;

use anyhow::{Context as _, Result};
use tessera_cluster::config::ClusterConfig;
use tessera_node::Repo;

use super::Context;

/// Arguments of `init`.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct InitArgs {
    /// A member of the cluster to join (a multiaddr ending in /p2p/PEER_ID); repeatable. Without
    /// it, the first `daemon` founds a new cluster of one.
    #[arg(long)]
    join: Vec<String>,
    /// The cluster secret (64 hex characters), as the other members have it. A new one is made
    /// when omitted.
    #[arg(long)]
    secret: Option<String>,
}

pub(crate) fn run(ctx: &Context, args: InitArgs) -> Result<()> {
    println!("initializing tessera node at {}", ctx.repo.display());
    println!("generating ED25519 keypair...done");
    let repo = init_repo(&ctx.repo, &args)?;
    println!("peer identity: {}", repo.config().identity.peer_id);
    if args.join.is_empty() {
        println!(
            "cluster secret written to the config (Cluster.Secret): give it to peers that join"
        );
    } else {
        println!("will join the cluster through {}", args.join.join(", "));
    }
    println!("to start the node, run: tessera daemon");
    Ok(())
}

/// Creates the repo and writes its `Cluster` section.
pub(crate) fn init_repo(root: &Path, args: &InitArgs) -> Result<Repo> {
    // Check the cluster options before anything is written.
    let section = ClusterConfig::generate(args.secret.as_deref(), &args.join)?;
    Repo::init(root)?;
    let path = root.join("config");
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    )?;
    let updated = tessera_node::set_config_key(&doc, "Cluster", serde_json::to_value(&section)?)?;
    tessera_node::config::write_json_atomic(&path, &updated)?;
    Ok(Repo::open(root)?)
}
