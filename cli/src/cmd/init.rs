//! `tessera init`.

use anyhow::Result;
use tessera_node::Repo;

use super::Context;

/// Arguments of `init`.
#[derive(clap::Args, Debug)]
pub(crate) struct InitArgs {}

pub(crate) fn run(ctx: &Context, _args: InitArgs) -> Result<()> {
    println!("initializing tessera node at {}", ctx.repo.display());
    println!("generating ED25519 keypair...done");
    let repo = Repo::init(&ctx.repo)?;
    println!("peer identity: {}", repo.config().identity.peer_id);
    println!("to start the node, run: tessera daemon");
    Ok(())
}
