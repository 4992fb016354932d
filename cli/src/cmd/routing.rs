//! `tessera routing findprovs|provide`: the DHT, when `Routing.Type` turns it on.

use anyhow::Result;
use futures::StreamExt;
use serde_json::Value;

use super::Context;

/// go-libp2p's query event type for a provider found.
const PROVIDER_EVENT: u64 = 4;

/// Routing subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum RoutingCommand {
    /// Find peers that provide a CID (one peer id per line, as they are found).
    Findprovs {
        /// The CID.
        cid: String,
        /// The number of providers to find.
        #[arg(short = 'n', long = "num-providers", default_value_t = 20)]
        num_providers: i64,
    },
    /// Announce to the DHT that this node provides CIDs (blocks it holds).
    Provide {
        /// The CIDs.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Announce every block of the DAGs, not only their roots.
        #[arg(short, long)]
        recursive: bool,
    },
}

pub(crate) async fn run(ctx: &Context, cmd: RoutingCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        RoutingCommand::Findprovs { cid, num_providers } => {
            let q = [("arg", cid), ("num-providers", num_providers.to_string())];
            let mut events = Box::pin(client.ndjson::<Value>("routing/findprovs", &q).await?);
            while let Some(event) = events.next().await {
                let event = event?;
                if event["Type"].as_u64() != Some(PROVIDER_EVENT) {
                    continue;
                }
                for r in event["Responses"].as_array().into_iter().flatten() {
                    if let Some(id) = r["ID"].as_str() {
                        println!("{id}");
                    }
                }
            }
        }
        RoutingCommand::Provide { cids, recursive } => {
            let mut q: Vec<(&str, String)> = cids.into_iter().map(|c| ("arg", c)).collect();
            q.push(("recursive", recursive.to_string()));
            // Kubo prints nothing on success; drain the stream so that a late error is reported.
            let mut events = Box::pin(client.ndjson::<Value>("routing/provide", &q).await?);
            while let Some(event) = events.next().await {
                event?;
            }
        }
    }
    Ok(())
}
