//! `tessera pin add|rm|ls|update`.

use std::io::Write;

use anyhow::Result;
use futures::StreamExt;
use serde_json::Value;

use super::Context;

/// Pin subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum PinCommand {
    /// Pin objects (fetching what is missing) so that GC keeps them.
    Add {
        /// CIDs or /ipfs/ paths.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Pin only the block itself, not what it links to.
        #[arg(long = "recursive", default_value_t = true, action = clap::ArgAction::Set)]
        recursive: bool,
        #[command(flatten)]
        cluster: ClusterPinArgs,
    },
    /// Remove pins.
    Rm {
        /// CIDs or /ipfs/ paths.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Remove recursive pins.
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
        recursive: bool,
    },
    /// List pins.
    Ls {
        /// Only these (fails for ones that are not pinned).
        paths: Vec<String>,
        /// direct, indirect, recursive or all.
        #[arg(short = 't', long = "type", default_value = "all")]
        kind: String,
        /// Print only the CIDs.
        #[arg(short, long)]
        quiet: bool,
        /// List the cluster's pinset (name, replication, allocations) instead of this node's pins.
        #[arg(long)]
        cluster: bool,
    },
    /// Move a recursive pin from one root to another.
    Update {
        /// The pinned root.
        from: String,
        /// The new root.
        to: String,
        /// Remove the old pin.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        unpin: bool,
    },
}

/// Cluster pin options: with any of them, `pin add` goes to the cluster's REST API (as
/// `ipfs-cluster-ctl pin add`); without, to the Kubo API, whose `pin/add` the cluster also takes
/// over with the default replication factors.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct ClusterPinArgs {
    /// Fewest peers that must hold it (-1: every peer).
    #[arg(long, allow_negative_numbers = true)]
    replication_min: Option<i32>,
    /// Most peers that should hold it (-1: every peer).
    #[arg(long, allow_negative_numbers = true)]
    replication_max: Option<i32>,
    /// A name for the pin.
    #[arg(long)]
    name: Option<String>,
    /// Remove the pin after this long (Go duration: 720h, 1h30m).
    #[arg(long)]
    expire_in: Option<String>,
    /// Peers to put it on first (comma-separated peer ids).
    #[arg(long)]
    allocations: Option<String>,
    /// KEY=VALUE metadata; repeatable.
    #[arg(long)]
    metadata: Vec<String>,
    /// Erasure-code it across the cluster, K data + M parity shards (`6+3`; without a value, the
    /// config's defaults).
    #[arg(long, value_name = "K+M", num_args = 0..=1, default_missing_value = "")]
    ec: Option<String>,
}

impl ClusterPinArgs {
    fn is_set(&self) -> bool {
        self.replication_min.is_some()
            || self.replication_max.is_some()
            || self.name.is_some()
            || self.expire_in.is_some()
            || self.allocations.is_some()
            || !self.metadata.is_empty()
            || self.ec.is_some()
    }

    fn query(&self, recursive: bool) -> Result<Vec<(String, String)>> {
        let mut q = vec![(
            "mode".to_string(),
            if recursive { "recursive" } else { "direct" }.to_string(),
        )];
        if let Some(v) = self.replication_min {
            q.push(("replication-min".into(), v.to_string()));
        }
        if let Some(v) = self.replication_max {
            q.push(("replication-max".into(), v.to_string()));
        }
        if let Some(v) = &self.name {
            q.push(("name".into(), v.clone()));
        }
        if let Some(v) = &self.expire_in {
            q.push(("expire-in".into(), v.clone()));
        }
        if let Some(v) = &self.allocations {
            q.push(("user-allocations".into(), v.clone()));
        }
        for kv in &self.metadata {
            let Some((k, v)) = kv.split_once('=') else {
                anyhow::bail!("--metadata {kv}: expected KEY=VALUE");
            };
            q.push((format!("meta-{k}"), v.to_string()));
        }
        Ok(q)
    }
}

async fn cluster_pin_add(
    ctx: &Context,
    paths: &[String],
    recursive: bool,
    args: &ClusterPinArgs,
) -> Result<()> {
    let c = crate::cluster_client::ClusterClient::connect(&ctx.repo, ctx.cluster_api.as_deref())?;
    let mut q = args.query(recursive)?;
    if let Some(ec) = &args.ec {
        let (k, m) = crate::cluster_client::parse_ec(&ctx.repo, ec)?;
        q.push(("data-shards".into(), k.to_string()));
        q.push(("parity-shards".into(), m.to_string()));
    }
    for p in paths {
        let cid = p.trim_start_matches("/ipfs/");
        let pin = c
            .json(reqwest::Method::POST, &format!("/pins/{cid}"), &q)
            .await?;
        let allocs: Vec<&str> = pin["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "pinned {cid} in the cluster on {}",
            if allocs.is_empty() {
                "every peer".to_string()
            } else {
                allocs.join(", ")
            }
        );
    }
    Ok(())
}

async fn cluster_pin_ls(ctx: &Context, quiet: bool) -> Result<()> {
    let c = crate::cluster_client::ClusterClient::connect(&ctx.repo, ctx.cluster_api.as_deref())?;
    let mut s = Box::pin(c.ndjson("/allocations", &[("filter", "all")]).await?);
    // Buffered: a pinset of 100 000 lines took 2.3 s printed line by line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(p) = s.next().await {
        let p = p?;
        let cid = crate::cluster_client::cid_str(&p["cid"]);
        if quiet {
            writeln!(out, "{cid}")?;
            continue;
        }
        let allocs: Vec<&str> = p["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        writeln!(
            out,
            "{cid} | {} | PIN | Repl. Factor: {}--{} | Allocations: [{}]",
            p["name"].as_str().unwrap_or_default(),
            p["replication_factor_min"],
            p["replication_factor_max"],
            if allocs.is_empty() {
                "everywhere".to_string()
            } else {
                allocs.join(" ")
            }
        )?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) async fn run(ctx: &Context, cmd: PinCommand) -> Result<()> {
    match &cmd {
        PinCommand::Add {
            paths,
            recursive,
            cluster,
        } if cluster.is_set() => return cluster_pin_add(ctx, paths, *recursive, cluster).await,
        PinCommand::Ls {
            cluster: true,
            quiet,
            ..
        } => return cluster_pin_ls(ctx, *quiet).await,
        _ => {}
    }
    let client = ctx.client()?;
    match cmd {
        PinCommand::Add {
            paths, recursive, ..
        } => {
            let mut q: Vec<(&str, String)> = paths.iter().map(|p| ("arg", p.clone())).collect();
            q.push(("recursive", recursive.to_string()));
            let v: Value = client.json("pin/add", &q).await?;
            for p in v["Pins"].as_array().into_iter().flatten() {
                println!(
                    "pinned {} {}",
                    p.as_str().unwrap_or_default(),
                    if recursive { "recursively" } else { "directly" }
                );
            }
        }
        PinCommand::Rm { paths, recursive } => {
            let mut q: Vec<(&str, String)> = paths.iter().map(|p| ("arg", p.clone())).collect();
            q.push(("recursive", recursive.to_string()));
            let v: Value = client.json("pin/rm", &q).await?;
            for p in v["Pins"].as_array().into_iter().flatten() {
                println!("unpinned {}", p.as_str().unwrap_or_default());
            }
        }
        PinCommand::Ls {
            paths, kind, quiet, ..
        } => {
            let mut q: Vec<(&str, String)> = paths.iter().map(|p| ("arg", p.clone())).collect();
            q.push(("type", kind));
            q.push(("stream", "true".into()));
            let mut s = Box::pin(client.ndjson::<Value>("pin/ls", &q).await?);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while let Some(item) = s.next().await {
                let item = item?;
                let cid = item["Cid"].as_str().unwrap_or_default();
                if quiet {
                    writeln!(out, "{cid}")?;
                } else {
                    writeln!(out, "{cid} {}", item["Type"].as_str().unwrap_or_default())?;
                }
            }
            out.flush()?;
        }
        PinCommand::Update { from, to, unpin } => {
            let q = vec![("arg", from), ("arg", to), ("unpin", unpin.to_string())];
            let v: Value = client.json("pin/update", &q).await?;
            let pins: Vec<&str> = v["Pins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .collect();
            println!("updated {}", pins.join(" to "));
        }
    }
    Ok(())
}
