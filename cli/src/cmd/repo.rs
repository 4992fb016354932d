//! `tessera repo stat|gc`.

use anyhow::Result;
use futures::StreamExt;
use serde_json::Value;

use super::Context;

/// Repo subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum RepoCommand {
    /// Size of the repo and number of blocks.
    Stat {
        /// Print sizes in MiB.
        #[arg(long)]
        human: bool,
    },
    /// Delete every block that no pin reaches.
    Gc {
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },
}

pub(crate) async fn run(ctx: &Context, cmd: RepoCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        RepoCommand::Stat { human } => {
            let v: Value = client.json("repo/stat", &[]).await?;
            let size = |n: &Value| {
                let n = n.as_u64().unwrap_or_default();
                if human {
                    format!("{:.1} MiB", n as f64 / 1048576.0)
                } else {
                    n.to_string()
                }
            };
            println!("NumObjects: {}", v["NumObjects"]);
            println!("RepoSize:   {}", size(&v["RepoSize"]));
            println!("StorageMax: {}", size(&v["StorageMax"]));
            println!("RepoPath:   {}", v["RepoPath"].as_str().unwrap_or_default());
            println!("Version:    {}", v["Version"].as_str().unwrap_or_default());
        }
        RepoCommand::Gc { quiet } => {
            let mut s = Box::pin(
                client
                    .ndjson::<Value>("repo/gc", &[("quiet", quiet.to_string())])
                    .await?,
            );
            while let Some(item) = s.next().await {
                let v = item?;
                if let Some(c) = v["Key"]["/"].as_str() {
                    println!("removed {c}");
                }
            }
        }
    }
    Ok(())
}
