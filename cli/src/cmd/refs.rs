//! `tessera refs`.

use anyhow::{Result, bail};
use futures::StreamExt;
use serde_json::Value;

use super::Context;

/// Arguments of `refs`.
#[derive(clap::Args, Debug)]
pub(crate) struct RefsArgs {
    /// CIDs or paths whose links to list, or `local` for every block stored here.
    #[arg(required = true)]
    paths: Vec<String>,
    /// Walk the whole DAG.
    #[arg(short, long)]
    recursive: bool,
    /// List each block once.
    #[arg(short, long)]
    unique: bool,
    /// Print `parent -> child` edges.
    #[arg(short, long)]
    edges: bool,
}

pub(crate) async fn run(ctx: &Context, args: RefsArgs) -> Result<()> {
    // `refs local`, as in Kubo: every block in the local store.
    if args.paths == ["local"] {
        let mut s = Box::pin(ctx.client()?.ndjson::<Value>("refs/local", &[]).await?);
        while let Some(item) = s.next().await {
            println!("{}", item?["Ref"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    let mut q: Vec<(&str, String)> = args.paths.into_iter().map(|p| ("arg", p)).collect();
    q.push(("recursive", args.recursive.to_string()));
    q.push(("unique", args.unique.to_string()));
    q.push(("edges", args.edges.to_string()));
    let mut s = Box::pin(ctx.client()?.ndjson::<Value>("refs", &q).await?);
    while let Some(item) = s.next().await {
        let v = item?;
        if let Some(e) = v["Err"].as_str().filter(|e| !e.is_empty()) {
            bail!("{e}");
        }
        println!("{}", v["Ref"].as_str().unwrap_or_default());
    }
    Ok(())
}
