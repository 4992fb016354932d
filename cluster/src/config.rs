//! The `Cluster` section of the repo's config: IPFS Cluster's settings under Kubo-style names.
//!
//! The node keeps this section as raw JSON; the cluster reads it here, refusing unknown keys by
//! name as the node does for its own. Durations are Go-style strings (`15s`), as IPFS Cluster
//! writes them.

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;

/// Why the `Cluster` section cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("config key `Cluster.{key}`: {message}")]
pub struct ClusterConfigError {
    /// The key under `Cluster`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ClusterConfigError {
    ClusterConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// The `Cluster` section as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// 32 random bytes in hex, shared by every member; joining proves knowledge of it.
    pub secret: String,
    /// The peer's name in statuses and `peers ls` (the host name when empty).
    pub peer_name: String,
    /// Multiaddrs (with `/p2p/ID`) of members to join through when this peer is not yet a member.
    pub join: Vec<String>,
    /// Where the IPFS Cluster REST API listens.
    #[serde(rename = "RestAPI")]
    pub rest_api: String,
    /// `user -> password` for the REST API's basic auth; empty: no auth.
    pub basic_auth_credentials: BTreeMap<String, String>,
    /// Default `replication-min` (-1: every peer).
    pub replication_factor_min: i32,
    /// Default `replication-max` (-1: every peer).
    pub replication_factor_max: i32,
    /// How often each peer broadcasts its metrics.
    pub metric_interval: String,
    /// How long a metric stays valid; a peer whose metrics all expired is down.
    #[serde(rename = "MetricTTL")]
    pub metric_ttl: String,
    /// How long a peer must be down before its pins are allocated elsewhere.
    pub reallocate_after: String,
    /// Pins fetched at once by the pin tracker.
    pub pin_concurrency: usize,
    /// Attempts of a pin before it stays in `pin_error` (until `recover`).
    pub pin_retries: u32,
    /// How long one attempt to fetch a pin's DAG may take.
    pub pin_timeout: String,
    /// Free-form tags broadcast as `tag:NAME` metrics, used by the allocator.
    pub tags: BTreeMap<String, String>,
    /// Metrics the allocator partitions and sorts by, in order (IPFS Cluster's `allocate_by`).
    pub allocate_by: Vec<String>,
    /// Most voting members; peers that join beyond it are learners (IPFS Cluster's followers).
    /// 7 by default: Raft keeps committing with 3 voters dead at once, as many failures as the
    /// default parity survives. Voters down past `ReallocateAfter` give their seats to learners.
    pub max_voters: usize,
    /// Raft heartbeat.
    pub heartbeat: String,
    /// Raft election timeout (the lower bound; the upper is twice it).
    pub election_timeout: String,
    /// Raft log entries between snapshots.
    pub snapshot_after: u64,
    /// Default data shards of erasure-coded pins.
    pub data_shards: u8,
    /// Default parity shards of erasure-coded pins.
    pub parity_shards: u8,
    /// Most bytes one column of an erasure-coded group holds (groups are cut at this size).
    pub shard_size: u64,
    /// Columns rebuilt at once by a repair, so that repairs never starve reads.
    pub concurrent_repairs: usize,
    /// Bytes per second the background scrub re-hashes (0: no scrub).
    pub scrub_bytes_per_second: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            secret: String::new(),
            peer_name: String::new(),
            join: Vec::new(),
            rest_api: "/ip4/127.0.0.1/tcp/9094".into(),
            basic_auth_credentials: BTreeMap::new(),
            replication_factor_min: -1,
            replication_factor_max: -1,
            metric_interval: "5s".into(),
            metric_ttl: "15s".into(),
            reallocate_after: "60s".into(),
            pin_concurrency: 8,
            pin_retries: 3,
            pin_timeout: "10m".into(),
            tags: BTreeMap::new(),
            allocate_by: vec!["tag:group".into(), "freespace".into()],
            max_voters: 7,
            heartbeat: "200ms".into(),
            election_timeout: "1s".into(),
            snapshot_after: 5000,
            data_shards: 6,
            parity_shards: 3,
            shard_size: 100 << 20,
            concurrent_repairs: 1,
            scrub_bytes_per_second: 16 << 20,
        }
    }
}

/// The `Cluster` section, checked and with durations and addresses parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// As stored.
    pub raw: ClusterConfig,
    /// The decoded secret.
    pub secret: [u8; 32],
    /// Join addresses.
    pub join: Vec<Multiaddr>,
    /// The REST API's socket address.
    pub rest_api: std::net::SocketAddr,
    /// Parsed durations.
    pub metric_interval: Duration,
    /// Parsed.
    pub metric_ttl: Duration,
    /// Parsed.
    pub reallocate_after: Duration,
    /// Parsed.
    pub pin_timeout: Duration,
    /// Parsed.
    pub heartbeat: Duration,
    /// Parsed.
    pub election_timeout: Duration,
    /// The peer name to show.
    pub peer_name: String,
}

impl ClusterConfig {
    /// Reads the section from the node config's raw JSON (absent: defaults, which lack a secret).
    pub fn from_json(
        value: Option<&serde_json::Value>,
    ) -> Result<ClusterConfig, ClusterConfigError> {
        match value {
            None => Ok(ClusterConfig::default()),
            Some(v) => {
                let mut track = serde_path_to_error::Track::new();
                let de = serde_path_to_error::Deserializer::new(v, &mut track);
                ClusterConfig::deserialize(de).map_err(|e| {
                    let path = track.path().to_string();
                    err(if path == "." { "" } else { &path }, e.to_string())
                })
            }
        }
    }

    /// A fresh section for `init`: a new random secret unless one is given, and join addresses.
    pub fn generate(
        secret: Option<&str>,
        join: &[String],
    ) -> Result<ClusterConfig, ClusterConfigError> {
        let secret = match secret {
            Some(s) => {
                decode_secret(s)?;
                s.to_lowercase()
            }
            None => {
                let bytes: [u8; 32] = rand::random();
                hex::encode(bytes)
            }
        };
        for a in join {
            parse_join(a)?;
        }
        Ok(ClusterConfig {
            secret,
            join: join.to_vec(),
            ..ClusterConfig::default()
        })
    }

    /// Checks every key and parses what needs parsing.
    pub fn settings(&self) -> Result<Settings, ClusterConfigError> {
        let secret = decode_secret(&self.secret)?;
        let join = self
            .join
            .iter()
            .map(|a| parse_join(a))
            .collect::<Result<_, _>>()?;
        let rest_api =
            tessera_node::multiaddr_to_socket(&self.rest_api).map_err(|m| err("RestAPI", m))?;
        let dur = |key: &str, v: &str| parse_duration(v).map_err(|m| err(key, m));
        let metric_interval = dur("MetricInterval", &self.metric_interval)?;
        let metric_ttl = dur("MetricTTL", &self.metric_ttl)?;
        if metric_interval.is_zero() || metric_ttl <= metric_interval {
            return Err(err(
                "MetricTTL",
                "must be longer than a non-zero MetricInterval, or every peer looks down between two broadcasts",
            ));
        }
        let heartbeat = dur("Heartbeat", &self.heartbeat)?;
        let election_timeout = dur("ElectionTimeout", &self.election_timeout)?;
        if election_timeout <= heartbeat * 2 {
            return Err(err(
                "ElectionTimeout",
                "must be more than twice the Heartbeat, or followers start elections against a live leader",
            ));
        }
        check_replication(self.replication_factor_min, self.replication_factor_max)
            .map_err(|m| err("ReplicationFactorMin", m))?;
        if self.pin_concurrency == 0 {
            return Err(err("PinConcurrency", "must be at least 1"));
        }
        if self.max_voters == 0 {
            return Err(err("MaxVoters", "must be at least 1"));
        }
        if self.data_shards == 0 || self.parity_shards == 0 {
            return Err(err(
                "DataShards",
                "data and parity shards must both be at least 1",
            ));
        }
        let peer_name = if self.peer_name.is_empty() {
            std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        } else {
            self.peer_name.clone()
        };
        Ok(Settings {
            raw: self.clone(),
            secret,
            join,
            rest_api,
            metric_interval,
            metric_ttl,
            reallocate_after: dur("ReallocateAfter", &self.reallocate_after)?,
            pin_timeout: dur("PinTimeout", &self.pin_timeout)?,
            heartbeat,
            election_timeout,
            peer_name,
        })
    }
}

/// Checks a pair of replication factors as IPFS Cluster does (-1 means everywhere, and then both
/// must be -1; otherwise 1 <= min <= max).
pub fn check_replication(min: i32, max: i32) -> Result<(), String> {
    match (min, max) {
        (-1, -1) => Ok(()),
        (-1, _) | (_, -1) => Err(format!(
            "replication factors {min} and {max}: -1 (everywhere) must be used for both min and max"
        )),
        (min, max) if min < 1 || max < 1 => Err(format!(
            "replication factors must be at least 1 (or -1 for everywhere), got min {min}, max {max}"
        )),
        (min, max) if min > max => Err(format!(
            "replication-min ({min}) is larger than replication-max ({max})"
        )),
        _ => Ok(()),
    }
}

fn decode_secret(s: &str) -> Result<[u8; 32], ClusterConfigError> {
    if s.is_empty() {
        return Err(err(
            "Secret",
            "missing; `tessera init` writes one (share it with every peer of the cluster)",
        ));
    }
    let bytes = hex::decode(s).map_err(|e| err("Secret", format!("not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| err("Secret", "must be 32 bytes (64 hex characters)"))
}

fn parse_join(a: &str) -> Result<Multiaddr, ClusterConfigError> {
    let addr: Multiaddr = a.parse().map_err(|e| err("Join", format!("`{a}`: {e}")))?;
    if !addr
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
    {
        return Err(err(
            "Join",
            format!("`{a}` has no /p2p/PEER_ID part; add the peer id of the member to join"),
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_need_only_a_secret() {
        let c = ClusterConfig::generate(None, &[]).unwrap();
        let s = c.settings().unwrap();
        assert_eq!(s.rest_api.port(), 9094);
        assert_eq!(s.metric_interval, Duration::from_secs(5));
    }

    #[test]
    fn unknown_key_is_named() {
        let v = serde_json::json!({"Secret": "00", "RestApi": "x"});
        let e = ClusterConfig::from_json(Some(&v)).unwrap_err();
        assert!(e.to_string().contains("RestApi"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        let mut c = ClusterConfig::generate(None, &[]).unwrap();
        c.secret = "abcd".into();
        assert!(c.settings().unwrap_err().to_string().contains("32 bytes"));
        let mut c = ClusterConfig::generate(None, &[]).unwrap();
        c.replication_factor_min = 3;
        c.replication_factor_max = 2;
        assert!(c.settings().is_err());
        assert!(ClusterConfig::generate(None, &["/ip4/127.0.0.1/tcp/1".into()]).is_err());
        assert!(check_replication(-1, 2).is_err());
        assert!(check_replication(2, 3).is_ok());
    }
}
