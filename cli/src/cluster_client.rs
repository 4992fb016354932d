//! The HTTP client of the cluster commands (`peers`, `status`, `recover`, `health`, `state`, and
//! `pin` with cluster options): they talk to the daemon's IPFS Cluster REST API, as
//! `ipfs-cluster-ctl` does. The address comes from `--cluster-api`, else the repo's `cluster-api`
//! file (written by the running daemon), else `Cluster.RestAPI`; basic-auth credentials from
//! `Cluster.BasicAuthCredentials` when set.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use futures::Stream;
use serde_json::Value;
use tessera_cluster::config::ClusterConfig;
use tessera_node::Repo;

/// An empty query string.
pub(crate) const NO_QUERY: &[(&str, &str)] = &[];

/// A connection to one daemon's REST API.
pub(crate) struct ClusterClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl ClusterClient {
    /// Connects to the cluster peer of the daemon of `repo`.
    pub(crate) fn connect(repo: &Path, flag: Option<&str>) -> Result<ClusterClient> {
        let config = std::fs::read(repo.join("config"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let section = ClusterConfig::from_json(config.as_ref().and_then(|c| c.get("Cluster")))
            .unwrap_or_default();
        let addr = match flag {
            Some(a) => a.to_string(),
            None => {
                match std::fs::read_to_string(repo.join(tessera_cluster::peer::REST_API_FILE)) {
                    Ok(s) if Repo::is_locked_by_daemon(repo) => s.trim().to_string(),
                    _ => bail!(
                        "no tessera daemon is running for the repo at {}; start one with `tessera daemon` \
                     (or point --cluster-api at a running one)",
                        repo.display()
                    ),
                }
            }
        };
        let sock = tessera_node::multiaddr_to_socket(&addr)
            .map_err(|e| anyhow!("cluster REST API address: {e}"))?;
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(ClusterClient {
            http,
            base: format!("http://{sock}"),
            auth: section.basic_auth_credentials.into_iter().next(),
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &(impl serde::Serialize + ?Sized),
    ) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .query(query);
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .context("cannot reach the cluster REST API of the tessera daemon")?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let msg = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("{status}: {}", String::from_utf8_lossy(&body).trim()));
        bail!("{msg}")
    }

    /// A call answered with one JSON document (or nothing: `Value::Null`).
    pub(crate) async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &(impl serde::Serialize + ?Sized),
    ) -> Result<Value> {
        self.answer(self.request(method, path, query)).await
    }

    /// A multipart upload answered with one JSON document.
    pub(crate) async fn post_multipart(
        &self,
        path: &str,
        query: &[(&str, String)],
        form: reqwest::multipart::Form,
    ) -> Result<Value> {
        self.answer(
            self.request(reqwest::Method::POST, path, query)
                .multipart(form),
        )
        .await
    }

    /// Sends `req` and reads its one JSON document (or nothing: `Value::Null`).
    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = self.send(req).await?;
        let body = resp.bytes().await.context("the answer broke off")?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).context("the daemon's answer is not the JSON expected")
    }

    /// A call answered with NDJSON.
    pub(crate) async fn ndjson(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<impl Stream<Item = Result<Value>> + use<>> {
        let resp = self
            .send(self.request(reqwest::Method::GET, path, query))
            .await?;
        Ok(crate::client::ndjson_lines(resp))
    }
}

/// The string of a CID as IPFS Cluster's JSON carries it (`{"/": "..."}` or a plain string).
pub(crate) fn cid_str(v: &Value) -> String {
    v.get("/")
        .and_then(Value::as_str)
        .or_else(|| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Parses `K+M` (empty: the config's `Cluster.DataShards` and `Cluster.ParityShards`).
pub(crate) fn parse_ec(repo: &Path, s: &str) -> Result<(u8, u8)> {
    if s.is_empty() {
        let config = std::fs::read(repo.join("config"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let c = ClusterConfig::from_json(config.as_ref().and_then(|c| c.get("Cluster")))?;
        return Ok((c.data_shards, c.parity_shards));
    }
    let bad = || anyhow!("--ec {s}: expected K+M, data and parity shards, such as 6+3");
    let (k, m) = s.split_once('+').ok_or_else(bad)?;
    let k: u8 = k.trim().parse().map_err(|_| bad())?;
    let m: u8 = m.trim().parse().map_err(|_| bad())?;
    if k == 0 || m == 0 || usize::from(k) + usize::from(m) > 256 {
        bail!("--ec {s}: K and M must be at least 1, and K+M at most 256");
    }
    Ok((k, m))
}

/// Uploads `form` to the cluster's `/add` with `data-shards` and `parity-shards`: the daemon
/// erasure-codes the import as it arrives and answers, once the pin is committed, every entry it
/// added (IPFS Cluster's `AddedOutput`s, as one array: an error then comes as the response's
/// status and message, which a streamed answer could only give in a trailer).
pub(crate) async fn add_ec(
    ctx: &crate::cmd::Context,
    query: &[(&str, String)],
    form: reqwest::multipart::Form,
    k: u8,
    m: u8,
) -> Result<Vec<Value>> {
    let c = ClusterClient::connect(&ctx.repo, ctx.cluster_api.as_deref())?;
    let mut q = query.to_vec();
    q.extend([
        ("data-shards", k.to_string()),
        ("parity-shards", m.to_string()),
        ("stream-channels", "false".to_string()),
    ]);
    match c.post_multipart("/add", &q, form).await? {
        Value::Array(entries) => Ok(entries),
        other => bail!("the daemon's /add answer is not a list: {other}"),
    }
}
