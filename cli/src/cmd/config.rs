//! `tessera config KEY [VALUE]`, `config show`: through the daemon when one runs (so that it keeps
//! its in-memory copy in step), else on the file directly, as `ipfs config` does.

use anyhow::{Result, bail};
use serde_json::Value;
use tessera_node::{Config, Repo};

use super::Context;
use crate::client::api_address;

/// Arguments of `config`.
#[derive(clap::Args, Debug)]
pub(crate) struct ConfigArgs {
    /// The dotted key (`Addresses.API`), or `show` for the whole config.
    key: String,
    /// The value to set; omit it to read the key.
    value: Option<String>,
    /// Parse VALUE as JSON.
    #[arg(long)]
    json: bool,
    /// Parse VALUE as a boolean.
    #[arg(long)]
    bool: bool,
}

pub(crate) async fn run(ctx: &Context, args: ConfigArgs) -> Result<()> {
    let online = api_address(&ctx.repo, ctx.api.as_deref())?.is_some();
    if args.key == "show" && args.value.is_none() {
        let doc = if online {
            ctx.client()?.json::<Value>("config/show", &[]).await?
        } else {
            let mut doc = read_doc(ctx)?;
            if let Some(id) = doc.get_mut("Identity").and_then(Value::as_object_mut) {
                id.remove("PrivKey");
            }
            doc
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let value = if online {
        let mut q = vec![("arg", args.key.clone())];
        if let Some(v) = &args.value {
            q.push(("arg", v.clone()));
            if args.json {
                q.push(("json", "true".into()));
            }
            if args.bool {
                q.push(("bool", "true".into()));
            }
        }
        let out: Value = ctx.client()?.json("config", &q).await?;
        out.get("Value").cloned().unwrap_or(Value::Null)
    } else {
        let doc = read_doc(ctx)?;
        match &args.value {
            None => tessera_node::config::get_key(&doc, &args.key)?.clone(),
            Some(raw) => {
                let v = tessera_node::config::parse_value(raw, args.json, args.bool)
                    .map_err(anyhow::Error::msg)?;
                let updated = tessera_node::set_config_key(&doc, &args.key, v.clone())?;
                tessera_node::config::write_json_atomic(&ctx.repo.join("config"), &updated)?;
                v
            }
        }
    };
    if args.value.is_none() {
        match value {
            Value::String(s) => println!("{s}"),
            other => println!("{}", serde_json::to_string_pretty(&other)?),
        }
    }
    Ok(())
}

fn read_doc(ctx: &Context) -> Result<Value> {
    let path = ctx.repo.join("config");
    if !path.exists() {
        bail!(tessera_node::RepoError::NotInitialized(ctx.repo.clone()));
    }
    // Validate first, so that a broken file is reported with the key at fault.
    Config::load(&path)?;
    let _ = Repo::open(&ctx.repo)?;
    Ok(serde_json::from_slice(&std::fs::read(&path)?)?)
}
