//! The repo's configuration file: one JSON document whose keys follow Kubo's names where Kubo has one.
//!
//! The file is read and validated once, when a command or the daemon starts; a key that tessera does
//! not know, or a value of the wrong type, is refused with an error that names the key. Keys are
//! reached by dotted paths (`Addresses.API`) exactly as `ipfs config` reaches them.

mod keys;
mod routing;
mod size;
mod value;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use keys::{KeyError, get_key, set_key};
pub use routing::{Routing, RoutingMode};
pub use size::parse_size;
pub use value::parse_value;

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("cannot access config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON, or a key is unknown or holds a value of the wrong type.
    #[error(
        "config file {path}: key `{key}`: {message}; fix it with `tessera config` or an editor"
    )]
    Invalid {
        /// The file.
        path: String,
        /// The dotted key at fault (`.` when the document itself is broken).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration. Field names are Kubo's, so that an operator's habits and scripts carry over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Config {
    /// The peer's identity. Written by `init`; the private key never leaves the repo.
    pub identity: Identity,
    /// Where the APIs and the swarm listen.
    #[serde(default)]
    pub addresses: Addresses,
    /// Bootstrap peers, as multiaddrs. Defaults to none: tessera never dials the public network unasked.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Storage limits.
    #[serde(default)]
    pub datastore: Datastore,
    /// Peers kept connected.
    #[serde(default)]
    pub peering: Peering,
    /// Discovery of peers on the local network.
    #[serde(default)]
    pub discovery: Discovery,
    /// Content routing (the Kademlia DHT).
    #[serde(default)]
    pub routing: Routing,
    /// HTTP API behaviour.
    #[serde(default, rename = "API")]
    pub api: Api,
    /// Settings of the IPFS Cluster peer; kept as raw JSON here because the cluster crate owns them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
}

/// `Identity` as Kubo writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The peer id derived from the key (`12D3Koo...` for ed25519).
    #[serde(rename = "PeerID")]
    pub peer_id: String,
    /// The private key, protobuf-encoded as libp2p defines it, then base64 (standard alphabet, padded).
    #[serde(rename = "PrivKey")]
    pub priv_key: String,
}

/// `Addresses` as Kubo names them. Port 0 picks a free port; the daemon then writes the real API
/// address to the repo's `api` file, where the client commands look first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Addresses {
    /// Kubo RPC API. Defaults to `/ip4/127.0.0.1/tcp/5001`.
    #[serde(rename = "API")]
    pub api: String,
    /// HTTP gateway. Defaults to `/ip4/127.0.0.1/tcp/8080`.
    pub gateway: String,
    /// Swarm listen addresses. Defaults to TCP and QUIC on port 4001, all interfaces.
    pub swarm: Vec<String>,
    /// Addresses to announce instead of the listen addresses. Defaults to none.
    #[serde(default)]
    pub announce: Vec<String>,
    /// Addresses never to announce. Defaults to none.
    #[serde(default)]
    pub no_announce: Vec<String>,
}

impl Default for Addresses {
    fn default() -> Self {
        Self {
            api: "/ip4/127.0.0.1/tcp/5001".into(),
            gateway: "/ip4/127.0.0.1/tcp/8080".into(),
            swarm: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            announce: Vec::new(),
            no_announce: Vec::new(),
        }
    }
}

/// `Datastore`: how much the node may store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Datastore {
    /// Soft limit on block bytes, as Kubo writes it (`10GB`, `500MiB`). Defaults to `10GB`.
    /// `repo stat` reports it; `add` refuses new content past it.
    pub storage_max: String,
    /// Check every block against its CID when it is read. Defaults to true: SHA-256 runs at about
    /// 1.5 GB/s per core, and a corrupt block must never be served.
    #[serde(default = "default_true")]
    pub verify_on_read: bool,
}

impl Default for Datastore {
    fn default() -> Self {
        Self {
            storage_max: "10GB".into(),
            verify_on_read: true,
        }
    }
}

/// `Peering`: peers that the node keeps connected, reconnecting with backoff.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Peering {
    /// The peers. Defaults to none.
    #[serde(default)]
    pub peers: Vec<PeeringPeer>,
}

/// One entry of `Peering.Peers`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeeringPeer {
    /// The peer id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its addresses, as multiaddrs without `/p2p/`.
    #[serde(rename = "Addrs", default)]
    pub addrs: Vec<String>,
}

/// `Discovery`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Discovery {
    /// mDNS on the local network.
    #[serde(rename = "MDNS", default)]
    pub mdns: Mdns,
}

/// `Discovery.MDNS`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Mdns {
    /// Defaults to false: tessera does not announce itself on the LAN unless asked.
    #[serde(default)]
    pub enabled: bool,
}

/// `API`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Api {
    /// Extra headers on every API response, as Kubo's `API.HTTPHeaders`. Defaults to none.
    #[serde(rename = "HTTPHeaders", default)]
    pub http_headers: std::collections::BTreeMap<String, Vec<String>>,
}

fn default_true() -> bool {
    true
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
                path: path.display().to_string(),
                key: ".".into(),
                message: format!("not valid JSON: {e}"),
            })?;
        Self::from_value(value).map_err(|(key, message)| ConfigError::Invalid {
            path: path.display().to_string(),
            key,
            message,
        })
    }

    /// Validates a JSON document as a config. On failure, returns the dotted key at fault and why.
    pub fn from_value(value: serde_json::Value) -> Result<Config, (String, String)> {
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            (
                if key.is_empty() { ".".into() } else { key },
                e.inner().to_string(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: multiaddrs parse, sizes parse, enums hold known words.
    fn validate(&self) -> Result<(), (String, String)> {
        let addr = |key: &str, s: &str| -> Result<(), (String, String)> {
            s.parse::<libp2p::Multiaddr>()
                .map(|_| ())
                .map_err(|e| (key.to_string(), format!("`{s}` is not a multiaddr: {e}")))
        };
        addr("Addresses.API", &self.addresses.api)?;
        addr("Addresses.Gateway", &self.addresses.gateway)?;
        for (i, a) in self.addresses.swarm.iter().enumerate() {
            addr(&format!("Addresses.Swarm[{i}]"), a)?;
        }
        for (i, a) in self.addresses.announce.iter().enumerate() {
            addr(&format!("Addresses.Announce[{i}]"), a)?;
        }
        for (i, a) in self.bootstrap.iter().enumerate() {
            addr(&format!("Bootstrap[{i}]"), a)?;
        }
        for (i, p) in self.peering.peers.iter().enumerate() {
            p.id.parse::<libp2p::PeerId>().map_err(|e| {
                (
                    format!("Peering.Peers[{i}].ID"),
                    format!("`{}` is not a peer id: {e}", p.id),
                )
            })?;
            for (j, a) in p.addrs.iter().enumerate() {
                addr(&format!("Peering.Peers[{i}].Addrs[{j}]"), a)?;
            }
        }
        parse_size(&self.datastore.storage_max)
            .map_err(|e| ("Datastore.StorageMax".to_string(), e))?;
        self.routing
            .mode()
            .map_err(|e| ("Routing.Type".to_string(), e))?;
        Ok(())
    }

    /// The configured storage limit in bytes.
    pub fn storage_max(&self) -> u64 {
        // Validated at load.
        parse_size(&self.datastore.storage_max).unwrap_or(u64::MAX)
    }

    /// Writes the config atomically: a crash leaves the old file or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let value = serde_json::to_value(self).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            key: ".".into(),
            message: e.to_string(),
        })?;
        write_json_atomic(path, &value)
    }
}

/// Writes a JSON document to `path` through a temporary file, fsync and rename.
pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<(), ConfigError> {
    use std::io::Write;
    let io = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| ConfigError::Invalid {
        path: path.display().to_string(),
        key: ".".into(),
        message: e.to_string(),
    })?;
    text.push(b'\n');
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "Identity": {"PeerID": "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA", "PrivKey": "x"},
        })
    }

    #[test]
    fn defaults_fill_missing_sections() {
        let c = Config::from_value(sample()).unwrap();
        assert_eq!(c.addresses.api, "/ip4/127.0.0.1/tcp/5001");
        assert_eq!(c.routing.kind, "none");
        assert!(c.bootstrap.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let mut v = sample();
        v["Addresses"] = serde_json::json!({"API": "/ip4/127.0.0.1/tcp/1", "Gateway": "/ip4/127.0.0.1/tcp/2", "Swarm": [], "Bogus": 1});
        let (key, msg) = Config::from_value(v).unwrap_err();
        assert_eq!(key, "Addresses.Bogus");
        assert!(msg.contains("Bogus"), "{msg}");
    }

    #[test]
    fn bad_multiaddr_is_named() {
        let mut v = sample();
        v["Addresses"] = serde_json::json!({"API": "localhost:5001", "Gateway": "/ip4/127.0.0.1/tcp/2", "Swarm": []});
        let (key, _) = Config::from_value(v).unwrap_err();
        assert_eq!(key, "Addresses.API");
    }

    #[test]
    fn routing_type_is_checked() {
        let mut v = sample();
        v["Routing"] = serde_json::json!({"Type": "dhtclient"});
        let c = Config::from_value(v.clone()).unwrap();
        assert_eq!(c.routing.mode(), Ok(RoutingMode::Client));
        v["Routing"] = serde_json::json!({"Type": "kademlia"});
        let (key, msg) = Config::from_value(v).unwrap_err();
        assert_eq!(key, "Routing.Type");
        assert!(msg.contains("kademlia"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let mut v = sample();
        v["Datastore"] = serde_json::json!({"StorageMax": 5});
        let (key, _) = Config::from_value(v).unwrap_err();
        assert_eq!(key, "Datastore.StorageMax");
    }
}
