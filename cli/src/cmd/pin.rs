//! `tessera pin add|rm|ls|update`.

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

pub(crate) async fn run(ctx: &Context, cmd: PinCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        PinCommand::Add { paths, recursive } => {
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
        PinCommand::Ls { paths, kind, quiet } => {
            let mut q: Vec<(&str, String)> = paths.iter().map(|p| ("arg", p.clone())).collect();
            q.push(("type", kind));
            q.push(("stream", "true".into()));
            let mut s = Box::pin(client.ndjson::<Value>("pin/ls", &q).await?);
            while let Some(item) = s.next().await {
                let item = item?;
                let cid = item["Cid"].as_str().unwrap_or_default();
                if quiet {
                    println!("{cid}");
                } else {
                    println!("{cid} {}", item["Type"].as_str().unwrap_or_default());
                }
            }
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
