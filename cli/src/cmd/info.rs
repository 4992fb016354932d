//! `tessera id`, `tessera version`.

use anyhow::Result;
use serde_json::Value;

use super::Context;

/// Arguments of `id`.
#[derive(clap::Args, Debug)]
pub(crate) struct IdArgs {
    /// Print only this field's value (`ID`, `Addresses`, ...) with `--format`-like brevity.
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
}

pub(crate) async fn id(ctx: &Context, args: IdArgs) -> Result<()> {
    let v: Value = ctx.client()?.json("id", &[]).await?;
    match args.format.as_deref() {
        Some("<id>") | Some("ID") => println!("{}", v["ID"].as_str().unwrap_or_default()),
        Some(other) => anyhow::bail!("unsupported --format {other}; use <id> or omit it"),
        None => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    Ok(())
}

/// Arguments of `version`.
#[derive(clap::Args, Debug)]
pub(crate) struct VersionArgs {
    /// Print only the version number.
    #[arg(short = 'n', long)]
    number: bool,
}

pub(crate) async fn version(_ctx: &Context, args: VersionArgs) -> Result<()> {
    // Like `ipfs version`, this works without a daemon: it is this binary's version.
    if args.number {
        println!("{}", env!("CARGO_PKG_VERSION"));
    } else {
        println!("tessera version {}", env!("CARGO_PKG_VERSION"));
    }
    Ok(())
}
