//! The IPFS Cluster commands: `peers`, `status`, `recover`, `health`, `state`. They print what
//! `ipfs-cluster-ctl` prints, from the daemon's REST API.

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::Context;
use crate::cluster_client::{ClusterClient, NO_QUERY, cid_str};

/// `peers` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum PeersCommand {
    /// List the cluster's members, as each describes itself.
    Ls,
    /// Remove a member from the cluster.
    Rm {
        /// Its peer id.
        peer: String,
    },
}

/// `health` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum HealthCommand {
    /// Which member is connected to which.
    Graph,
    /// The latest metrics of every member (names with no argument).
    Metrics {
        /// `freespace`, `ping`, `pins`, `pinqueue` or `tag:NAME`.
        name: Option<String>,
    },
}

/// `state` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum StateCommand {
    /// Print the pinset as JSON lines (one IPFS Cluster pin per line).
    Export,
    /// Pin every line of a file written by `state export`.
    Import {
        /// The file (`-` for stdin).
        file: String,
    },
}

/// Arguments of `status`.
#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    /// A CID; all pins when omitted.
    cid: Option<String>,
    /// Only this peer's view.
    #[arg(long)]
    local: bool,
    /// Only pins with some peer in one of these statuses (comma-separated; `error`, `queued` too).
    #[arg(long)]
    filter: Option<String>,
}

/// Arguments of `recover`.
#[derive(clap::Args, Debug)]
pub(crate) struct RecoverArgs {
    /// The CID to retry; every pin in error when omitted.
    cid: Option<String>,
    /// Only on this peer.
    #[arg(long)]
    local: bool,
}

/// Arguments of `repair`.
#[derive(clap::Args, Debug)]
pub(crate) struct RepairArgs {
    /// The erasure-coded pin; every one when omitted.
    cid: Option<String>,
}

fn client(ctx: &Context) -> Result<ClusterClient> {
    ClusterClient::connect(&ctx.repo, ctx.cluster_api.as_deref())
}

pub(crate) async fn peers(ctx: &Context, cmd: PeersCommand) -> Result<()> {
    let c = client(ctx)?;
    match cmd {
        PeersCommand::Ls => {
            let mut s = Box::pin(c.ndjson("/peers", &[]).await?);
            while let Some(p) = s.next().await {
                let p = p?;
                let id = p["id"].as_str().unwrap_or_default();
                let err = p["error"].as_str().unwrap_or_default();
                if !err.is_empty() {
                    println!("{id} | ERROR: {err}");
                    continue;
                }
                let others = p["cluster_peers"]
                    .as_array()
                    .map_or(0, |a| a.len().saturating_sub(1));
                println!(
                    "{id} | {} | Sees {others} other peers",
                    p["peername"].as_str().unwrap_or_default()
                );
                for a in p["addresses"].as_array().into_iter().flatten() {
                    println!("  > {}", a.as_str().unwrap_or_default());
                }
            }
        }
        PeersCommand::Rm { peer } => {
            c.json(Method::DELETE, &format!("/peers/{peer}"), NO_QUERY)
                .await?;
            println!("removed {peer}");
        }
    }
    Ok(())
}

/// Prints one GlobalPinInfo as `ipfs-cluster-ctl status` does.
pub(crate) fn print_status(g: &Value) {
    println!(
        "{} | {}:",
        cid_str(&g["cid"]),
        g["name"].as_str().unwrap_or_default()
    );
    if let Some(map) = g["peer_map"].as_object() {
        for (peer, info) in map {
            let name = info["peername"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(peer);
            let status = info["status"]
                .as_str()
                .unwrap_or("undefined")
                .to_uppercase();
            let err = info["error"].as_str().unwrap_or_default();
            let ts = info["timestamp"].as_str().unwrap_or_default();
            if err.is_empty() {
                println!("    > {name:<16} : {status} | {ts}");
            } else {
                println!("    > {name:<16} : {status}: {err} | {ts}");
            }
        }
    }
}

pub(crate) async fn status(ctx: &Context, args: StatusArgs) -> Result<()> {
    let c = client(ctx)?;
    let mut q = vec![("local", args.local.to_string())];
    match args.cid {
        Some(cid) => {
            let g = c.json(Method::GET, &format!("/pins/{cid}"), &q).await?;
            print_status(&g);
            print_columns(&c, &cid, &g).await?;
        }
        None => {
            if let Some(f) = args.filter {
                q.push(("filter", f));
            }
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut s = Box::pin(c.ndjson("/pins", &q).await?);
            while let Some(g) = s.next().await {
                print_status(&g?);
            }
        }
    }
    Ok(())
}

pub(crate) async fn recover(ctx: &Context, args: RecoverArgs) -> Result<()> {
    let c = client(ctx)?;
    let q = vec![("local", args.local.to_string())];
    match args.cid {
        Some(cid) => {
            let g = c
                .json(Method::POST, &format!("/pins/{cid}/recover"), &q)
                .await?;
            print_status(&g);
        }
        None => {
            let g = c.json(Method::POST, "/pins/recover", &q).await?;
            for item in g.as_array().into_iter().flatten() {
                print_status(item);
            }
            if g.is_object() {
                print_status(&g);
            }
        }
    }
    Ok(())
}

pub(crate) async fn repair(ctx: &Context, args: RepairArgs) -> Result<()> {
    let c = client(ctx)?;
    let cids = match args.cid {
        Some(c) => vec![c],
        None => {
            let mut all = Vec::new();
            let mut s = Box::pin(c.ndjson("/allocations", NO_QUERY).await?);
            while let Some(p) = s.next().await {
                let p = p?;
                if !p["erasure"].is_null() {
                    all.push(cid_str(&p["cid"]));
                }
            }
            all
        }
    };
    for cid in cids {
        let g = c
            .json(Method::POST, &format!("/pins/{cid}/repair"), NO_QUERY)
            .await?;
        print_status(&g);
    }
    Ok(())
}

/// Per group of an erasure-coded pin: which peer holds which column.
async fn print_columns(c: &ClusterClient, cid: &str, g: &Value) -> Result<()> {
    let pin = c
        .json(Method::GET, &format!("/allocations/{cid}"), NO_QUERY)
        .await?;
    let Some(columns) = pin["erasure"]["columns"].as_array() else {
        return Ok(());
    };
    let name_of = |peer: &str| -> String {
        g["peer_map"][peer]["peername"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(|n| format!("{n} ({})", &peer[peer.len().saturating_sub(6)..]))
            .unwrap_or_else(|| peer.to_string())
    };
    let k = pin["erasure"]["data_shards"].as_u64().unwrap_or(0) as usize;
    for (gi, group) in columns.iter().enumerate() {
        println!("    group {gi}:");
        for (j, holder) in group.as_array().into_iter().flatten().enumerate() {
            let holder = holder.as_str().unwrap_or_default();
            let kind = if j < k { "data" } else { "parity" };
            let status = g["peer_map"][holder]["status"]
                .as_str()
                .unwrap_or("unknown");
            println!(
                "      column {j:>2} ({kind:<6}) : {:<30} {status}",
                name_of(holder)
            );
        }
    }
    Ok(())
}

pub(crate) async fn health(ctx: &Context, cmd: HealthCommand) -> Result<()> {
    let c = client(ctx)?;
    match cmd {
        HealthCommand::Graph => {
            let g = c.json(Method::GET, "/health/graph", NO_QUERY).await?;
            println!(
                "cluster peer {}:",
                g["cluster_id"].as_str().unwrap_or_default()
            );
            for (peer, links) in g["cluster_links"].as_object().into_iter().flatten() {
                let links: Vec<&str> = links
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!("  {peer} -> {}", links.join(", "));
            }
            for (peer, e) in g["errors"].as_object().into_iter().flatten() {
                println!("  {peer} !! {}", e.as_str().unwrap_or_default());
            }
        }
        HealthCommand::Metrics { name: None } => {
            let names = c.json(Method::GET, "/monitor/metrics", NO_QUERY).await?;
            for n in names.as_array().into_iter().flatten() {
                println!("{}", n.as_str().unwrap_or_default());
            }
        }
        HealthCommand::Metrics { name: Some(name) } => {
            let ms = c
                .json(Method::GET, &format!("/monitor/metrics/{name}"), NO_QUERY)
                .await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0);
            for m in ms.as_array().into_iter().flatten() {
                let expire = m["expire"].as_i64().unwrap_or(0) as i128;
                let left = expire - now;
                let when = if left > 0 {
                    format!("expires in {:.1}s", left as f64 / 1e9)
                } else {
                    "EXPIRED".to_string()
                };
                println!(
                    "{} | {}: {} | {when}",
                    m["peer"].as_str().unwrap_or_default(),
                    m["name"].as_str().unwrap_or_default(),
                    m["value"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn state(ctx: &Context, cmd: StateCommand) -> Result<()> {
    let c = client(ctx)?;
    match cmd {
        StateCommand::Export => {
            let mut s = Box::pin(c.ndjson("/allocations", &[]).await?);
            while let Some(p) = s.next().await {
                println!("{}", serde_json::to_string(&p?)?);
            }
        }
        StateCommand::Import { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?
            };
            let mut n = 0usize;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let p: Value = serde_json::from_str(line)
                    .with_context(|| format!("{file}:{}: not a JSON pin", i + 1))?;
                let cid = cid_str(&p["cid"]);
                if cid.is_empty() {
                    bail!("{file}:{}: the pin has no cid", i + 1);
                }
                let q = pin_query(&p);
                c.json(Method::POST, &format!("/pins/{cid}"), &q)
                    .await
                    .with_context(|| format!("{file}:{}: cannot pin {cid}", i + 1))?;
                n += 1;
            }
            println!("imported {n} pins");
        }
    }
    Ok(())
}

/// The REST query that re-creates a pin from its exported JSON.
fn pin_query(p: &Value) -> Vec<(String, String)> {
    let mut q = meta_query(p);
    if let Some(n) = p["name"].as_str().filter(|n| !n.is_empty()) {
        q.push(("name".into(), n.to_string()));
    }
    if let Some(v) = p["replication_factor_min"].as_i64() {
        q.push(("replication-min".into(), v.to_string()));
    }
    if let Some(v) = p["replication_factor_max"].as_i64() {
        q.push(("replication-max".into(), v.to_string()));
    }
    if let Some(m) = p["mode"].as_str() {
        q.push(("mode".into(), m.to_string()));
    }
    if let Some(e) = p["expire_at"].as_str().filter(|e| !e.starts_with("0001")) {
        q.push(("expire-at".into(), e.to_string()));
    }
    let users: Vec<&str> = p["user_allocations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !users.is_empty() {
        q.push(("user-allocations".into(), users.join(",")));
    }
    q
}

/// A pin's metadata as `meta-KEY=VALUE` parameters.
fn meta_query(p: &Value) -> Vec<(String, String)> {
    p["metadata"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                format!("meta-{k}"),
                v.as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
