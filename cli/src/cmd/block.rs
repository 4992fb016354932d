//! `tessera block get|put|stat|rm`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use serde_json::Value;

use super::{Context, copy_to_stdout};

/// Block subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum BlockCommand {
    /// Print a raw block's bytes.
    Get {
        /// The block's CID.
        cid: String,
    },
    /// Store a file (or stdin) as one raw block and print its CID.
    Put {
        /// Files to store, one block each; stdin when none.
        files: Vec<PathBuf>,
        /// Codec of the new CID (raw, dag-pb, dag-cbor, dag-json, ...).
        #[arg(long = "cid-codec", default_value = "raw")]
        cid_codec: String,
        /// Pin the block.
        #[arg(long)]
        pin: bool,
        /// Accept blocks over 1 MiB (up to 2 MiB).
        #[arg(long = "allow-big-block")]
        allow_big_block: bool,
    },
    /// Print a block's CID and size.
    Stat {
        /// The block's CID.
        cid: String,
    },
    /// Remove blocks (pinned ones are refused).
    Rm {
        /// The blocks' CIDs.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Do not fail on blocks that are not there.
        #[arg(short, long)]
        force: bool,
        /// Print only errors.
        #[arg(short, long)]
        quiet: bool,
    },
}

pub(crate) async fn run(ctx: &Context, cmd: BlockCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        BlockCommand::Get { cid } => {
            let s = client.bytes("block/get", &[("arg", cid)]).await?;
            copy_to_stdout(Box::pin(s)).await
        }
        BlockCommand::Put {
            files,
            cid_codec,
            pin,
            allow_big_block,
        } => {
            let mut form = reqwest::multipart::Form::new();
            if files.is_empty() {
                let mut data = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut data).await?;
                form = form.part("file", reqwest::multipart::Part::bytes(data).file_name(""));
            }
            for f in &files {
                let data = tokio::fs::read(f)
                    .await
                    .with_context(|| format!("cannot read {}", f.display()))?;
                form = form.part("file", reqwest::multipart::Part::bytes(data).file_name(""));
            }
            let q = vec![
                ("cid-codec", cid_codec),
                ("pin", pin.to_string()),
                ("allow-big-block", allow_big_block.to_string()),
            ];
            let resp = client.post_multipart("block/put", &q, form).await?;
            let mut lines = Box::pin(crate::client::ndjson_lines::<Value>(resp));
            while let Some(v) = lines.next().await {
                println!("{}", v?["Key"].as_str().unwrap_or_default());
            }
            Ok(())
        }
        BlockCommand::Stat { cid } => {
            let v: Value = client.json("block/stat", &[("arg", cid)]).await?;
            println!("Key: {}", v["Key"].as_str().unwrap_or_default());
            println!("Size: {}", v["Size"]);
            Ok(())
        }
        BlockCommand::Rm { cids, force, quiet } => {
            let mut q: Vec<(&str, String)> = cids.into_iter().map(|c| ("arg", c)).collect();
            q.push(("force", force.to_string()));
            q.push(("quiet", quiet.to_string()));
            let mut s = Box::pin(client.ndjson::<Value>("block/rm", &q).await?);
            let mut failed = false;
            let mut end_err = None;
            while let Some(item) = s.next().await {
                match item {
                    Ok(v) => {
                        let hash = v["Hash"].as_str().unwrap_or_default();
                        match v["Error"].as_str().filter(|e| !e.is_empty()) {
                            Some(e) => {
                                failed = true;
                                eprintln!("cannot remove {hash}: {e}");
                            }
                            None => println!("removed {hash}"),
                        }
                    }
                    Err(e) => end_err = Some(e),
                }
            }
            if failed || end_err.is_some() {
                bail!("some blocks not removed");
            }
            Ok(())
        }
    }
}
