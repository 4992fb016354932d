//! `tessera swarm connect|disconnect|peers|addrs` and `tessera bitswap stat|wantlist`.

use anyhow::Result;
use serde_json::Value;

use super::Context;

/// Swarm subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum SwarmCommand {
    /// Connect to peers (`/ip4/.../tcp/.../p2p/ID`).
    Connect {
        /// Multiaddrs with a /p2p/ part.
        #[arg(required = true)]
        addrs: Vec<String>,
    },
    /// Close connections to peers.
    Disconnect {
        /// Multiaddrs with a /p2p/ part, or peer ids.
        #[arg(required = true)]
        addrs: Vec<String>,
    },
    /// List connected peers.
    Peers {
        /// Show ping latency.
        #[arg(long)]
        latency: bool,
    },
    /// Addresses.
    #[command(subcommand)]
    Addrs(AddrsCommand),
}

/// `swarm addrs` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AddrsCommand {
    /// Addresses this node listens on.
    Listen,
    /// Local addresses, with `--id` appended `/p2p/ID`.
    Local {
        /// Append /p2p/ID.
        #[arg(long)]
        id: bool,
    },
}

/// Bitswap subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum BitswapCommand {
    /// Wantlist, traffic and partners.
    Stat,
    /// Blocks this node (or a peer, with --peer) wants.
    Wantlist {
        /// A peer's wantlist instead of ours.
        #[arg(short, long)]
        peer: Option<String>,
    },
}

fn strings(v: &Value) {
    for s in v["Strings"].as_array().into_iter().flatten() {
        println!("{}", s.as_str().unwrap_or_default());
    }
}

pub(crate) async fn run(ctx: &Context, cmd: SwarmCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        SwarmCommand::Connect { addrs } => {
            let q: Vec<(&str, String)> = addrs.into_iter().map(|a| ("arg", a)).collect();
            strings(&client.json("swarm/connect", &q).await?);
        }
        SwarmCommand::Disconnect { addrs } => {
            let q: Vec<(&str, String)> = addrs.into_iter().map(|a| ("arg", a)).collect();
            strings(&client.json("swarm/disconnect", &q).await?);
        }
        SwarmCommand::Peers { latency } => {
            let v: Value = client
                .json("swarm/peers", &[("latency", latency.to_string())])
                .await?;
            for p in v["Peers"].as_array().into_iter().flatten() {
                let addr = p["Addr"].as_str().unwrap_or_default();
                let peer = p["Peer"].as_str().unwrap_or_default();
                match p["Latency"].as_str().filter(|l| !l.is_empty()) {
                    Some(l) => println!("{addr}/p2p/{peer} {l}"),
                    None => println!("{addr}/p2p/{peer}"),
                }
            }
        }
        SwarmCommand::Addrs(AddrsCommand::Listen) => {
            strings(&client.json("swarm/addrs/listen", &[]).await?)
        }
        SwarmCommand::Addrs(AddrsCommand::Local { id }) => strings(
            &client
                .json("swarm/addrs/local", &[("id", id.to_string())])
                .await?,
        ),
    }
    Ok(())
}

pub(crate) async fn bitswap(ctx: &Context, cmd: BitswapCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        BitswapCommand::Stat => {
            let v: Value = client.json("bitswap/stat", &[]).await?;
            let wl: Vec<&str> = v["Wantlist"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["/"].as_str())
                .collect();
            let peers: Vec<&str> = v["Peers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .collect();
            println!("bitswap status");
            println!("\tblocks received: {}", v["BlocksReceived"]);
            println!("\tblocks sent: {}", v["BlocksSent"]);
            println!("\tdata received: {}", v["DataReceived"]);
            println!("\tdata sent: {}", v["DataSent"]);
            println!("\tdup blocks received: {}", v["DupBlksReceived"]);
            println!("\tdup data received: {}", v["DupDataReceived"]);
            println!("\twantlist [{} keys]", wl.len());
            for c in wl {
                println!("\t\t{c}");
            }
            println!("\tpartners [{}]", peers.len());
            for p in peers {
                println!("\t\t{p}");
            }
        }
        BitswapCommand::Wantlist { peer } => {
            let q: Vec<(&str, String)> = peer.into_iter().map(|p| ("peer", p)).collect();
            let v: Value = client.json("bitswap/wantlist", &q).await?;
            for c in v["Keys"].as_array().into_iter().flatten() {
                println!("{}", c["/"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}
