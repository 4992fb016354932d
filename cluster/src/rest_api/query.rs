//! Request input as IPFS Cluster reads it: CIDs and peer ids in the path, and the query string's
//! pin options (`api.PinOptions.FromQuery`), booleans (Go's `strconv.ParseBool`) and integers.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use cid::Cid;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{ApiError, ApiResult};
use crate::api::PinOptions;
use crate::duration::parse_duration;
use crate::pin::PinMode;

/// `meta-KEY=VALUE` parameters become the pin's metadata.
const META_PREFIX: &str = "meta-";

/// Parses a CID from the path, with IPFS Cluster's message.
pub(super) fn cid(s: &str) -> ApiResult<Cid> {
    Cid::try_from(s).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding Cid: \"{s}\" is not a CID ({e}); give a CIDv0 (Qm...) or CIDv1 (bafy...)"
        ))
    })
}

/// Parses a peer id from the path, with IPFS Cluster's message.
pub(super) fn peer(s: &str) -> ApiResult<PeerId> {
    s.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding Peer ID: \"{s}\" is not a peer id ({e})"
        ))
    })
}

/// The one parameter of a route's path (`{cid}`, `{peer}`, `{name}`, `{*path}`), percent-decoded.
pub(super) struct Segment(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| Segment(s))
            .map_err(|e| ApiError::bad_request(format!("bad path: {e}")))
    }
}

/// The query string's parameters, in order, as decoded pairs.
pub(super) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
    }
}

impl Params {
    /// The first value of `name`, as Go's `url.Values.Get`; an empty value counts as absent, as
    /// IPFS Cluster treats it.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A boolean as Go's `strconv.ParseBool` reads it (`1`, `t`, `true`, `TRUE`, `0`, `f`, ...).
    pub(super) fn flag(&self, name: &str) -> ApiResult<Option<bool>> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Some(false)),
            _ => Err(ApiError::bad_request(format!(
                "parameter {name} invalid: \"{v}\" is not true or false"
            ))),
        }
    }

    /// An integer parameter.
    pub(super) fn int<T: std::str::FromStr>(&self, name: &str) -> ApiResult<Option<T>> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "parameter {name} invalid: \"{v}\" is not a whole number in range"
                    ))
                })
            })
            .transpose()
    }

    /// `local=true`: only this peer's view.
    pub(super) fn local(&self) -> ApiResult<bool> {
        Ok(self.flag("local")?.unwrap_or(false))
    }

    /// A comma-separated list, without empty items.
    pub(super) fn list(&self, name: &str) -> Vec<&str> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The pin options of `POST /pins/{cid}` and `POST /add`, as IPFS Cluster's `FromQuery` reads
    /// them, plus tessera's `data-shards` and `parity-shards`.
    pub(super) fn pin_options(&self) -> ApiResult<PinOptions> {
        let mut options = PinOptions {
            name: self.get("name").unwrap_or_default().to_string(),
            mode: self.mode()?,
            ..PinOptions::default()
        };
        // `replication` sets both factors; 0 (or absent) means the cluster's default.
        let both = self.int::<i32>("replication")?;
        let factor = |name| -> ApiResult<Option<i32>> {
            Ok(both.or(self.int::<i32>(name)?).filter(|n| *n != 0))
        };
        options.replication_min = factor("replication-min")?;
        options.replication_max = factor("replication-max")?;
        // Sharding is IPFS Cluster's; the size is checked as IPFS Cluster checks it, then unused.
        self.int::<u64>("shard-size")?;
        options.user_allocations = self
            .list("user-allocations")
            .into_iter()
            .map(|p| {
                p.parse().map_err(|e| {
                    ApiError::bad_request(format!(
                        "parameter user-allocations invalid: \"{p}\" is not a peer id ({e})"
                    ))
                })
            })
            .collect::<ApiResult<_>>()?;
        options.expire_at = self.expire_at()?;
        options.metadata = self.metadata();
        options.pin_update = self
            .get("pin-update")
            .map(|c| {
                Cid::try_from(c).map_err(|e| {
                    ApiError::bad_request(format!(
                        "error decoding update option parameter: \"{c}\" is not a CID ({e})"
                    ))
                })
            })
            .transpose()?;
        self.check_origins()?;
        options.erasure = self.erasure()?;
        Ok(options)
    }

    fn mode(&self) -> ApiResult<PinMode> {
        match self.get("mode") {
            None | Some("recursive") => Ok(PinMode::Recursive),
            Some("direct") => Ok(PinMode::Direct),
            Some(other) => Err(ApiError::bad_request(format!(
                "parameter mode invalid: \"{other}\" is not recursive or direct"
            ))),
        }
    }

    /// `expire-at` (RFC 3339) wins over `expire-in` (a Go duration from now), as in IPFS Cluster.
    fn expire_at(&self) -> ApiResult<Option<u64>> {
        if let Some(v) = self.get("expire-at") {
            let at = OffsetDateTime::parse(v, &Rfc3339).map_err(|e| {
                ApiError::bad_request(format!(
                    "expire-at cannot be parsed: \"{v}\" is not an RFC 3339 time ({e})"
                ))
            })?;
            let secs = u64::try_from(at.unix_timestamp()).map_err(|_| {
                ApiError::bad_request(format!("expire-at cannot be parsed: {v} is before 1970"))
            })?;
            return Ok(Some(secs));
        }
        let Some(v) = self.get("expire-in") else {
            return Ok(None);
        };
        let d = parse_duration(v)
            .map_err(|e| ApiError::bad_request(format!("expire-in cannot be parsed: {e}")))?;
        if d.as_secs() < 1 {
            return Err(ApiError::bad_request(
                "expire-in duration too short: give at least 1s",
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|n| n.as_secs())
            .unwrap_or(0);
        Ok(Some(now.saturating_add(d.as_secs())))
    }

    fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::new();
        for (k, v) in &self.0 {
            if let Some(key) = k.strip_prefix(META_PREFIX).filter(|key| !key.is_empty()) {
                // The first value wins, as `url.Values.Get` picks it.
                metadata.entry(key.to_string()).or_insert_with(|| v.clone());
            }
        }
        metadata
    }

    /// `origins` must be multiaddresses with a peer id, as IPFS Cluster checks them; tessera does
    /// not keep them (its allocations fetch from the cluster), so they are checked and dropped.
    fn check_origins(&self) -> ApiResult<()> {
        for o in self.list("origins") {
            let addr: Multiaddr = o.parse().map_err(|e| {
                ApiError::bad_request(format!("error decoding multiaddress \"{o}\": {e}"))
            })?;
            if !addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                return Err(ApiError::bad_request(format!(
                    "multiaddress does not contain peer ID: {o} (append /p2p/<peer id>)"
                )));
            }
        }
        Ok(())
    }

    /// tessera's erasure coding: `data-shards` and `parity-shards`, both or neither.
    fn erasure(&self) -> ApiResult<Option<(u8, u8)>> {
        let shards = |name: &str| -> ApiResult<Option<u8>> {
            match self.int::<u8>(name)? {
                Some(0) => Err(ApiError::bad_request(format!(
                    "parameter {name} invalid: it must be 1 to 255"
                ))),
                n => Ok(n),
            }
        };
        match (shards("data-shards")?, shards("parity-shards")?) {
            (Some(k), Some(m)) => Ok(Some((k, m))),
            (None, None) => Ok(None),
            _ => Err(ApiError::bad_request(
                "data-shards and parity-shards go together: give both (for example \
                 data-shards=6&parity-shards=3) or neither",
            )),
        }
    }
}
