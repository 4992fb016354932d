//! `tessera`: one binary that is both an IPFS node and an IPFS Cluster peer.
//!
//! `init` and `daemon` act on the repo folder (`$TESSERA_PATH`, else `~/.tessera`); every other
//! command talks to the running daemon over its Kubo RPC API, as `ipfs` does. `config` also works
//! without a daemon, editing the file directly. Errors go to stderr and exit with code 1.

mod client;
mod cluster_client;
mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tessera: an IPFS node and IPFS Cluster peer that stores pinned content erasure-coded.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, about, long_about = None)]
struct Cli {
    /// Repo folder. Defaults to $TESSERA_PATH, else ~/.tessera.
    #[arg(long, global = true)]
    repo_dir: Option<PathBuf>,
    /// Multiaddr of the daemon's API (defaults to the one the running daemon recorded in the repo).
    #[arg(long, global = true)]
    api: Option<String>,
    /// Multiaddr of the daemon's IPFS Cluster REST API (defaults to the one the running daemon
    /// recorded in the repo).
    #[arg(long, global = true)]
    cluster_api: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a repo: config, ed25519 identity, empty blockstore.
    Init(cmd::init::InitArgs),
    /// Run the node: Kubo RPC API and gateway, until Ctrl-C.
    Daemon(cmd::daemon::DaemonArgs),
    /// Add files or directories (prints the same CIDs as `ipfs add`).
    Add(cmd::add::AddArgs),
    /// Print a file's content.
    Cat(cmd::files::CatArgs),
    /// Download a file or directory.
    Get(cmd::files::GetArgs),
    /// List a directory's links.
    Ls(cmd::files::LsArgs),
    /// Pin or unpin content, list pins.
    #[command(subcommand)]
    Pin(cmd::pin::PinCommand),
    /// Raw blocks.
    #[command(subcommand)]
    Block(cmd::block::BlockCommand),
    /// IPLD DAGs and CAR archives.
    #[command(subcommand)]
    Dag(cmd::dag::DagCommand),
    /// List the links of a block (and below, with -r).
    Refs(cmd::refs::RefsArgs),
    /// Repo size and garbage collection.
    #[command(subcommand)]
    Repo(cmd::repo::RepoCommand),
    /// Connections to other peers.
    #[command(subcommand)]
    Swarm(cmd::swarm::SwarmCommand),
    /// Bitswap status.
    #[command(subcommand)]
    Bitswap(cmd::swarm::BitswapCommand),
    /// Content routing over the DHT (with `Routing.Type dht`): find and announce providers.
    #[command(subcommand)]
    Routing(cmd::routing::RoutingCommand),
    /// Show this node's identity and addresses.
    Id(cmd::info::IdArgs),
    /// Show the version.
    Version(cmd::info::VersionArgs),
    /// Read or set a config key (`tessera config Addresses.API`), or `config show`.
    Config(cmd::config::ConfigArgs),
    /// Cluster members.
    #[command(subcommand)]
    Peers(cmd::cluster::PeersCommand),
    /// Every peer's status of a pin (or of all pins).
    Status(cmd::cluster::StatusArgs),
    /// Retry pins in error.
    Recover(cmd::cluster::RecoverArgs),
    /// Restore an erasure-coded pin's full redundancy now (it also happens by itself).
    Repair(cmd::cluster::RepairArgs),
    /// Cluster connectivity and metrics.
    #[command(subcommand)]
    Health(cmd::cluster::HealthCommand),
    /// Export or import the cluster's pinset.
    #[command(subcommand)]
    State(cmd::cluster::StateCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let repo = cli
        .repo_dir
        .clone()
        .unwrap_or_else(tessera_node::default_repo_path);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = cmd::Context {
        repo,
        api: cli.api.clone(),
        cluster_api: cli.cluster_api.clone(),
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Init(a) => cmd::init::run(&ctx, a),
            Command::Daemon(a) => cmd::daemon::run(&ctx, a).await,
            Command::Add(a) => cmd::add::run(&ctx, a).await,
            Command::Cat(a) => cmd::files::cat(&ctx, a).await,
            Command::Get(a) => cmd::files::get(&ctx, a).await,
            Command::Ls(a) => cmd::files::ls(&ctx, a).await,
            Command::Pin(c) => cmd::pin::run(&ctx, c).await,
            Command::Block(c) => cmd::block::run(&ctx, c).await,
            Command::Dag(c) => cmd::dag::run(&ctx, c).await,
            Command::Refs(a) => cmd::refs::run(&ctx, a).await,
            Command::Repo(c) => cmd::repo::run(&ctx, c).await,
            Command::Swarm(c) => cmd::swarm::run(&ctx, c).await,
            Command::Bitswap(c) => cmd::swarm::bitswap(&ctx, c).await,
            Command::Routing(c) => cmd::routing::run(&ctx, c).await,
            Command::Id(a) => cmd::info::id(&ctx, a).await,
            Command::Version(a) => cmd::info::version(&ctx, a).await,
            Command::Config(a) => cmd::config::run(&ctx, a).await,
            Command::Peers(c) => cmd::cluster::peers(&ctx, c).await,
            Command::Status(a) => cmd::cluster::status(&ctx, a).await,
            Command::Recover(a) => cmd::cluster::recover(&ctx, a).await,
            Command::Repair(a) => cmd::cluster::repair(&ctx, a).await,
            Command::Health(c) => cmd::cluster::health(&ctx, c).await,
            Command::State(c) => cmd::cluster::state(&ctx, c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Broken pipes (`tessera cat X | head`) are not errors worth reporting.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
