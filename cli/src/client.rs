//! The HTTP client of the client commands: they talk to the running daemon over its Kubo RPC API,
//! as `ipfs` does. The daemon's address comes from `--api`, else the repo's `api` file, else the
//! config's `Addresses.API`.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use tessera_node::Repo;

/// A connection to one daemon's API.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
}

/// Finds the daemon's API address; `None` when no daemon is running for this repo.
pub(crate) fn api_address(repo: &Path, flag: Option<&str>) -> Result<Option<String>> {
    if let Some(a) = flag {
        return Ok(Some(a.to_string()));
    }
    match std::fs::read_to_string(Repo::api_file(repo)) {
        Ok(s) if Repo::is_locked_by_daemon(repo) => Ok(Some(s.trim().to_string())),
        _ => Ok(None),
    }
}

impl Client {
    /// Connects to the daemon of `repo`, or explains how to start one.
    pub(crate) fn connect(repo: &Path, flag: Option<&str>) -> Result<Client> {
        let Some(ma) = api_address(repo, flag)? else {
            bail!(
                "no tessera daemon is running for the repo at {}; start one with `tessera daemon` \
                 (or point --api at a running one)",
                repo.display()
            );
        };
        let sock =
            tessera_node::multiaddr_to_socket(&ma).map_err(|e| anyhow!("API address: {e}"))?;
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            base: format!("http://{sock}/api/v0"),
        })
    }

    fn request(&self, path: &str, query: &[(&str, String)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/{}", self.base, path))
            .query(query)
    }

    /// Sends a request and fails with Kubo's error message on a non-2xx answer.
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .context("cannot reach the tessera daemon")?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("Message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("{status}: {}", String::from_utf8_lossy(&body).trim()));
        bail!("{msg}")
    }

    /// A call answered with one JSON document.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let resp = self.send(self.request(path, query)).await?;
        resp.json()
            .await
            .context("the daemon's answer is not the JSON expected")
    }

    /// A call with a multipart body answered with one JSON document or NDJSON.
    pub(crate) async fn post_multipart(
        &self,
        path: &str,
        query: &[(&str, String)],
        form: reqwest::multipart::Form,
    ) -> Result<reqwest::Response> {
        self.send(self.request(path, query).multipart(form)).await
    }

    /// A call answered with raw bytes, as a stream.
    pub(crate) async fn bytes(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<impl Stream<Item = Result<bytes::Bytes>> + use<>> {
        let resp = self.send(self.request(path, query)).await?;
        Ok(resp.bytes_stream().map_err(|e| {
            anyhow!("transfer from the daemon broke off (the daemon log says why): {e}")
        }))
    }

    /// A call answered with NDJSON, one value per line; an error object ends the stream with an error.
    pub(crate) async fn ndjson<T: DeserializeOwned + 'static>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<impl Stream<Item = Result<T>> + use<T>> {
        let resp = self.send(self.request(path, query)).await?;
        Ok(ndjson_lines(resp))
    }
}

/// Splits a response body into JSON lines.
pub(crate) fn ndjson_lines<T: DeserializeOwned + 'static>(
    resp: reqwest::Response,
) -> impl Stream<Item = Result<T>> {
    let body = resp.bytes_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(body);
    let lines = tokio_util::codec::FramedRead::new(
        reader,
        tokio_util::codec::LinesCodec::new_with_max_length(16 << 20),
    );
    lines.map(|line| {
        let line = line.map_err(|e| {
            anyhow!("transfer from the daemon broke off (the daemon log says why): {e}")
        })?;
        // Only a line that names a `Type` can be an error; the others are parsed once (a pinset
        // listing is 100 000 lines).
        if line.contains("\"Type\"") {
            let v: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("bad line from the daemon: {line}"))?;
            if v.get("Type").and_then(|t| t.as_str()) == Some("error") {
                let m = v
                    .get("Message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("unknown error");
                bail!("{m}");
            }
        }
        serde_json::from_str(&line)
            .with_context(|| format!("the daemon's answer is not the JSON expected: {line}"))
    })
}
