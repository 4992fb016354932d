//! `tessera dag export|import|get|put`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{Context, copy_to_stdout};

/// DAG subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum DagCommand {
    /// Write a DAG as a CAR v1 archive to stdout.
    Export {
        /// The root CID.
        cid: String,
    },
    /// Import the blocks of CAR v1 archives and pin their roots.
    Import {
        /// CAR files; stdin when none.
        files: Vec<PathBuf>,
        /// Pin the roots the archives name.
        #[arg(long = "pin-roots", default_value_t = true, action = clap::ArgAction::Set)]
        pin_roots: bool,
    },
    /// Print a node as dag-json.
    Get {
        /// CID or path.
        path: String,
    },
    /// Store a dag-json document (stdin) as dag-cbor and print its CID.
    Put {
        /// Codec to store with.
        #[arg(long = "store-codec", default_value = "dag-cbor")]
        store_codec: String,
        /// Codec of the input.
        #[arg(long = "input-codec", default_value = "dag-json")]
        input_codec: String,
        /// Pin the new node.
        #[arg(long)]
        pin: bool,
    },
}

pub(crate) async fn run(ctx: &Context, cmd: DagCommand) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        DagCommand::Export { cid } => {
            let s = client.bytes("dag/export", &[("arg", cid)]).await?;
            copy_to_stdout(Box::pin(s)).await
        }
        DagCommand::Import { files, pin_roots } => {
            let mut form = Form::new();
            if files.is_empty() {
                let s = tokio_util::io::ReaderStream::with_capacity(tokio::io::stdin(), 1 << 20);
                form = form.part(
                    "file",
                    Part::stream(reqwest::Body::wrap_stream(s)).file_name(""),
                );
            }
            for f in &files {
                let file = tokio::fs::File::open(f)
                    .await
                    .with_context(|| format!("cannot open {}", f.display()))?;
                let s = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
                form = form.part(
                    "file",
                    Part::stream(reqwest::Body::wrap_stream(s)).file_name(""),
                );
            }
            let resp = client
                .post_multipart("dag/import", &[("pin-roots", pin_roots.to_string())], form)
                .await?;
            let mut lines = Box::pin(crate::client::ndjson_lines::<Value>(resp));
            let mut failed = false;
            while let Some(v) = lines.next().await {
                let v = v?;
                if let Some(root) = v.get("Root") {
                    let cid = root["Cid"]["/"].as_str().unwrap_or_default();
                    match root["PinErrorMsg"].as_str().filter(|m| !m.is_empty()) {
                        Some(m) => {
                            failed = true;
                            eprintln!("pinning root {cid} FAILED: {m}");
                        }
                        None => println!("pinned root {cid} success"),
                    }
                }
            }
            if failed {
                bail!("some roots could not be pinned");
            }
            Ok(())
        }
        DagCommand::Get { path } => {
            let s = client.bytes("dag/get", &[("arg", path)]).await?;
            copy_to_stdout(Box::pin(s)).await?;
            println!();
            Ok(())
        }
        DagCommand::Put {
            store_codec,
            input_codec,
            pin,
        } => {
            let mut data = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut data).await?;
            let form = Form::new().part("file", Part::bytes(data).file_name(""));
            let q = vec![
                ("store-codec", store_codec),
                ("input-codec", input_codec),
                ("pin", pin.to_string()),
            ];
            let resp = client.post_multipart("dag/put", &q, form).await?;
            let mut lines = Box::pin(crate::client::ndjson_lines::<Value>(resp));
            while let Some(v) = lines.next().await {
                println!("{}", v?["Cid"]["/"].as_str().unwrap_or_default());
            }
            Ok(())
        }
    }
}
