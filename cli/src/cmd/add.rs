//! `tessera add`: stream files and directories to the daemon as Kubo's CLI does (one multipart
//! body: a part per directory, file and symlink, depth first, names URL-escaped relative paths), and
//! print `added CID NAME` lines. A progress bar is drawn on stderr only when it is a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::Context;

/// Arguments of `add`.
#[derive(clap::Args, Debug)]
pub(crate) struct AddArgs {
    /// Files or directories to add; stdin when none.
    paths: Vec<PathBuf>,
    /// Add directories recursively.
    #[arg(short, long)]
    recursive: bool,
    /// Wrap the added files in a directory.
    #[arg(short, long = "wrap-with-directory")]
    wrap_with_directory: bool,
    /// CID version of the new blocks (1 implies --raw-leaves).
    #[arg(long = "cid-version")]
    cid_version: Option<u8>,
    /// Store leaves as raw blocks.
    #[arg(long = "raw-leaves", num_args = 0..=1, default_missing_value = "true")]
    raw_leaves: Option<bool>,
    /// Chunker: size-N (bytes per leaf).
    #[arg(short = 's', long)]
    chunker: Option<String>,
    /// Only compute the CIDs; store nothing.
    #[arg(short = 'n', long = "only-hash")]
    only_hash: bool,
    /// Print only the CIDs.
    #[arg(short, long)]
    quiet: bool,
    /// Print only the final CID.
    #[arg(short = 'Q', long)]
    quieter: bool,
    /// Include hidden files (names starting with a dot) when adding directories.
    #[arg(short = 'H', long)]
    hidden: bool,
    /// Pin what is added.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pin: bool,
    /// Show the progress bar even when stderr is not a terminal.
    #[arg(short, long)]
    progress: bool,
    /// Erasure-code what is added across the cluster, K data + M parity shards (`6+3`); without a
    /// value, `Cluster.DataShards` + `Cluster.ParityShards`.
    #[arg(long, value_name = "K+M", num_args = 0..=1, default_missing_value = "")]
    ec: Option<String>,
}

/// One multipart part, in order.
enum Entry {
    Dir(String),
    File(String, PathBuf, u64),
    Symlink(String, String),
}

fn collect(root: &Path, name: &str, args: &AddArgs, out: &mut Vec<Entry>) -> Result<()> {
    let meta = std::fs::symlink_metadata(root)
        .with_context(|| format!("cannot read {}", root.display()))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(root)?;
        out.push(Entry::Symlink(
            name.to_string(),
            target.to_string_lossy().into_owned(),
        ));
    } else if meta.is_dir() {
        if !args.recursive {
            bail!(
                "{} is a directory, use the '-r' flag to specify directories",
                root.display()
            );
        }
        out.push(Entry::Dir(name.to_string()));
        let mut children: Vec<_> = std::fs::read_dir(root)?.collect::<Result<_, _>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let child_name = child.file_name().to_string_lossy().into_owned();
            if !args.hidden && child_name.starts_with('.') {
                continue;
            }
            collect(&child.path(), &format!("{name}/{child_name}"), args, out)?;
        }
    } else {
        out.push(Entry::File(
            name.to_string(),
            root.to_path_buf(),
            meta.len(),
        ));
    }
    Ok(())
}

pub(crate) async fn run(ctx: &Context, args: AddArgs) -> Result<()> {
    let client = ctx.client()?;
    let mut entries = Vec::new();
    for p in &args.paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.to_string_lossy().into_owned());
        collect(p, &name, &args, &mut entries)?;
    }
    let total: u64 = entries
        .iter()
        .map(|e| if let Entry::File(_, _, n) = e { *n } else { 0 })
        .sum();
    let sent = Arc::new(AtomicU64::new(0));

    let mut form = Form::new();
    if args.paths.is_empty() {
        let stdin = tokio_util::io::ReaderStream::with_capacity(tokio::io::stdin(), 1 << 20);
        let counted = count(stdin, sent.clone());
        form = form.part(
            "file",
            Part::stream(reqwest::Body::wrap_stream(counted)).file_name(""),
        );
    }
    for e in entries {
        form = match e {
            Entry::Dir(name) => form.part(
                "file",
                Part::bytes(Vec::new())
                    .file_name(name)
                    .mime_str("application/x-directory")?,
            ),
            Entry::Symlink(name, target) => form.part(
                "file",
                Part::bytes(target.into_bytes())
                    .file_name(name)
                    .mime_str("application/symlink")?,
            ),
            Entry::File(name, path, len) => {
                let f = tokio::fs::File::open(&path)
                    .await
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let counted = count(
                    tokio_util::io::ReaderStream::with_capacity(f, 1 << 20),
                    sent.clone(),
                );
                let body = reqwest::Body::wrap_stream(counted);
                form.part(
                    "file",
                    Part::stream_with_length(body, len)
                        .file_name(name)
                        .mime_str("application/octet-stream")?,
                )
            }
        };
    }
    let mut q: Vec<(&str, String)> = vec![
        ("pin", args.pin.to_string()),
        ("wrap-with-directory", args.wrap_with_directory.to_string()),
        ("only-hash", args.only_hash.to_string()),
    ];
    if let Some(v) = args.cid_version {
        q.push(("cid-version", v.to_string()));
    }
    if let Some(r) = args.raw_leaves {
        q.push(("raw-leaves", r.to_string()));
    }
    if let Some(c) = &args.chunker {
        q.push(("chunker", c.clone()));
    }

    let ec = match &args.ec {
        Some(_) if args.only_hash => {
            bail!("--ec and --only-hash together make no sense: nothing is stored")
        }
        Some(_) if !args.pin => {
            bail!("--ec and --pin=false together make no sense: an erasure-coded add is a pin")
        }
        Some(ec) => Some(crate::cluster_client::parse_ec(&ctx.repo, ec)?),
        None => None,
    };
    let bar = if args.progress || (std::io::stderr().is_terminal() && !args.quieter) {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {percent}% {binary_bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let ticker = bar.clone().map(|b| {
        let sent = sent.clone();
        tokio::spawn(async move {
            loop {
                b.set_position(sent.load(Ordering::Relaxed));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    });

    let result = match ec {
        Some((k, m)) => {
            if std::io::stderr().is_terminal() && !args.quieter {
                eprintln!("erasure-coding as {k}+{m} across the cluster while adding...");
            }
            // The cluster's /add takes the same form and import options as the Kubo API's.
            q.retain(|(key, _)| !matches!(*key, "pin" | "only-hash"));
            async {
                let mut last = None;
                for v in crate::cluster_client::add_ec(ctx, &q, form, k, m).await? {
                    let Some(cid) = v["cid"].as_str().filter(|c| !c.is_empty()) else {
                        continue;
                    };
                    print_added(
                        &args,
                        bar.as_ref(),
                        cid,
                        v["name"].as_str().unwrap_or_default(),
                    );
                    last = Some(cid.to_string());
                }
                Ok::<_, anyhow::Error>(last)
            }
            .await
        }
        None => {
            let resp = client.post_multipart("add", &q, form).await;
            async {
                let resp = resp?;
                let mut lines = Box::pin(crate::client::ndjson_lines::<Value>(resp));
                let mut last = None;
                while let Some(v) = lines.next().await {
                    let v = v?;
                    let Some(hash) = v["Hash"].as_str() else {
                        continue;
                    };
                    print_added(
                        &args,
                        bar.as_ref(),
                        hash,
                        v["Name"].as_str().unwrap_or_default(),
                    );
                    last = Some(hash.to_string());
                }
                Ok::<_, anyhow::Error>(last)
            }
            .await
        }
    };
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let last = result?.context("the daemon added nothing")?;
    if args.quieter {
        println!("{last}");
    }
    Ok(())
}

/// One `added CID NAME` line (or just the CID with `-q`; nothing with `-Q`), above the progress bar.
fn print_added(args: &AddArgs, bar: Option<&indicatif::ProgressBar>, cid: &str, name: &str) {
    if args.quieter {
        return;
    }
    let line = if args.quiet {
        cid.to_string()
    } else {
        format!("added {cid} {name}")
    };
    match bar {
        Some(b) => b.println(line),
        None => println!("{line}"),
    }
}

fn count<S>(
    s: S,
    sent: Arc<AtomicU64>,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static
where
    S: futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
{
    s.inspect_ok(move |b| {
        sent.fetch_add(b.len() as u64, Ordering::Relaxed);
    })
}
