//! `tessera daemon`.

use anyhow::Result;
use tessera_node::Repo;

use super::Context;

/// Arguments of `daemon`.
#[derive(clap::Args, Debug)]
pub(crate) struct DaemonArgs {
    /// Create the repo first if it does not exist (as `ipfs daemon --init`).
    #[arg(long)]
    init: bool,
}

pub(crate) async fn run(ctx: &Context, args: DaemonArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if args.init && !ctx.repo.join("config").exists() {
        let repo = super::init::init_repo(&ctx.repo, &super::init::InitArgs::default())?;
        println!(
            "initialized repo at {}, peer identity {}",
            ctx.repo.display(),
            repo.config().identity.peer_id
        );
    }
    let repo = Repo::open(&ctx.repo)?;
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("Received interrupt signal, shutting down...");
    };
    let cluster = Box::new(tessera_cluster::peer::ClusterExtension);
    tessera_node::daemon::run(repo, shutdown, Some(cluster), |node, listening| {
        println!("peer identity: {}", node.peer_id());
        println!(
            "RPC API server listening on /ip4/{}/tcp/{}",
            listening.api.ip(),
            listening.api.port()
        );
        println!(
            "Gateway server listening on /ip4/{}/tcp/{}",
            listening.gateway.ip(),
            listening.gateway.port()
        );
        println!("Daemon is ready");
    })
    .await?;
    Ok(())
}
