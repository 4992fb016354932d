//! `tessera cat`, `tessera get`, `tessera ls`.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use futures::TryStreamExt;
use serde_json::Value;

use super::{Context, copy_to_stdout};

/// Arguments of `cat`.
#[derive(clap::Args, Debug)]
pub(crate) struct CatArgs {
    /// CID or /ipfs/ path of a file.
    path: String,
    /// Byte offset to start at.
    #[arg(short, long)]
    offset: Option<u64>,
    /// Bytes to print at most.
    #[arg(short, long)]
    length: Option<u64>,
}

pub(crate) async fn cat(ctx: &Context, args: CatArgs) -> Result<()> {
    let mut q = vec![("arg", args.path)];
    if let Some(o) = args.offset {
        q.push(("offset", o.to_string()));
    }
    if let Some(l) = args.length {
        q.push(("length", l.to_string()));
    }
    let s = ctx.client()?.bytes("cat", &q).await?;
    copy_to_stdout(Box::pin(s)).await
}

/// Arguments of `get`.
#[derive(clap::Args, Debug)]
pub(crate) struct GetArgs {
    /// CID or /ipfs/ path of a file or directory.
    path: String,
    /// Where to write it (defaults to the CID, in the current folder).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Downloads the daemon's tar of the path and unpacks it under `output`, refusing entries that would
/// land outside it.
pub(crate) async fn get(ctx: &Context, args: GetArgs) -> Result<()> {
    let default_name = args
        .path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(&args.path)
        .to_string();
    let output = args.output.unwrap_or_else(|| PathBuf::from(&default_name));
    let s = ctx
        .client()?
        .bytes("get", &[("arg", args.path.clone())])
        .await?;
    let reader = tokio_util::io::StreamReader::new(s.map_err(std::io::Error::other));
    let sync = tokio_util::io::SyncIoBridge::new(reader);
    let out = output.clone();
    tokio::task::spawn_blocking(move || unpack(sync, &out)).await??;
    println!("Saving file(s) to {}", output.display());
    Ok(())
}

fn unpack(reader: impl std::io::Read, output: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        // The first component is the root's name; the rest is relative to `output`.
        let mut comps = path.components();
        comps.next();
        let rel: PathBuf = comps.collect();
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            bail!(
                "refusing archive entry {} that would escape the output folder",
                path.display()
            );
        }
        let dest = if rel.as_os_str().is_empty() {
            output.to_path_buf()
        } else {
            output.join(&rel)
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => std::fs::create_dir_all(&dest)?,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .context("symlink without a target")?
                    .into_owned();
                std::os::unix::fs::symlink(target, &dest)?;
            }
            _ => {
                if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                let mut f = std::fs::File::create(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                std::io::copy(&mut entry, &mut f)?;
            }
        }
    }
    Ok(())
}

/// Arguments of `ls`.
#[derive(clap::Args, Debug)]
pub(crate) struct LsArgs {
    /// CIDs or paths of directories.
    #[arg(required = true)]
    paths: Vec<String>,
}

pub(crate) async fn ls(ctx: &Context, args: LsArgs) -> Result<()> {
    let q: Vec<(&str, String)> = args.paths.iter().map(|p| ("arg", p.clone())).collect();
    let v: Value = ctx.client()?.json("ls", &q).await?;
    let objects = v["Objects"].as_array().cloned().unwrap_or_default();
    let many = objects.len() > 1;
    for o in objects {
        if many {
            println!("{}:", o["Hash"].as_str().unwrap_or_default());
        }
        for l in o["Links"].as_array().into_iter().flatten() {
            let dir = l["Type"].as_u64() == Some(1) || l["Type"].as_u64() == Some(5);
            println!(
                "{} {} {}{}",
                l["Hash"].as_str().unwrap_or_default(),
                if dir {
                    "-".to_string()
                } else {
                    l["Size"].to_string()
                },
                l["Name"].as_str().unwrap_or_default(),
                if dir { "/" } else { "" }
            );
        }
        if many {
            println!();
        }
    }
    Ok(())
}
