//! The running node's shared state, handed to every API handler.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libp2p::identity::PublicKey;
use libp2p::{Multiaddr, PeerId};
use tessera_blockstore::Blockstore;

use crate::config::{Config, ConfigError, KeyError, get_key, set_key, write_json_atomic};
use crate::dag::DagService;

/// Why a config change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigChangeError {
    /// The key cannot be read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The change would make the config invalid; nothing was written.
    #[error("config key `{key}`: {message}; the config was not changed")]
    Invalid {
        /// The dotted key at fault.
        key: String,
        /// Why.
        message: String,
    },
    /// The file could not be written.
    #[error(transparent)]
    Io(#[from] ConfigError),
}

/// A node: repo, blockstore, identity. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    config_doc: Mutex<serde_json::Value>,
    config: Config,
    store: Blockstore,
    dag: DagService,
    peer_id: PeerId,
    public_key: PublicKey,
    listen_addrs: Mutex<Vec<Multiaddr>>,
    protocols: Mutex<Vec<String>>,
    swarm: std::sync::OnceLock<crate::swarm::SwarmHandle>,
    pinner: std::sync::OnceLock<Arc<dyn crate::Pinner>>,
    metrics: std::sync::OnceLock<Arc<dyn crate::MetricsSource>>,
}

impl std::fmt::Debug for dyn crate::Pinner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pinner")
    }
}

impl std::fmt::Debug for dyn crate::MetricsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSource")
    }
}

impl Node {
    /// Assembles a node from its parts; the daemon does this at start.
    pub fn new(
        root: &Path,
        config: Config,
        store: Blockstore,
        dag: DagService,
        public_key: PublicKey,
    ) -> Node {
        // Keep the file's own document (it may omit sections left at their defaults), so that
        // `config` edits change only the key asked for.
        let doc = std::fs::read(root.join("config"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::to_value(&config).unwrap_or(serde_json::Value::Null));
        Node {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                config_doc: Mutex::new(doc),
                config,
                peer_id: public_key.to_peer_id(),
                public_key,
                store,
                dag,
                listen_addrs: Mutex::new(Vec::new()),
                protocols: Mutex::new(Vec::new()),
                swarm: std::sync::OnceLock::new(),
                pinner: std::sync::OnceLock::new(),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Hands the Kubo API's `pin/add` and `pin/rm` to `pinner` from now on (once; later calls are
    /// ignored).
    pub fn set_pinner(&self, pinner: Arc<dyn crate::Pinner>) {
        let _ = self.inner.pinner.set(pinner);
    }

    /// The installed pinner, if any.
    pub fn pinner(&self) -> Option<&Arc<dyn crate::Pinner>> {
        self.inner.pinner.get()
    }

    /// Adds `source`'s text to the Prometheus endpoint (once).
    pub fn set_metrics_source(&self, source: Arc<dyn crate::MetricsSource>) {
        let _ = self.inner.metrics.set(source);
    }

    /// The extra metrics source, if any.
    pub fn metrics_source(&self) -> Option<&Arc<dyn crate::MetricsSource>> {
        self.inner.metrics.get()
    }

    /// The repo folder.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The config as it was when the daemon started (changes apply at the next start, as in Kubo).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The local blockstore.
    pub fn store(&self) -> &Blockstore {
        &self.inner.store
    }

    /// The DAG service (local, then network).
    pub fn dag(&self) -> &DagService {
        &self.inner.dag
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// This node's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.inner.public_key
    }

    /// Swarm addresses this node listens on (with `/p2p/` appended by callers that need it).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner
            .listen_addrs
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Records the swarm's listen addresses.
    pub fn set_listen_addrs(&self, addrs: Vec<Multiaddr>) {
        if let Ok(mut a) = self.inner.listen_addrs.lock() {
            *a = addrs;
        }
    }

    /// The swarm, once the daemon has started it.
    pub fn swarm(&self) -> Option<&crate::swarm::SwarmHandle> {
        self.inner.swarm.get()
    }

    /// Attaches the running swarm (once).
    pub fn set_swarm(&self, swarm: crate::swarm::SwarmHandle) {
        let _ = self.inner.swarm.set(swarm);
    }

    /// Tells peers that blocks are now here (from any thread inside the runtime's reach).
    pub fn announce(&self, cids: Vec<cid::Cid>) {
        if self.swarm().is_none() || cids.is_empty() {
            return;
        }
        let dag = self.inner.dag.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { dag.announce(cids).await });
        }
    }

    /// The libp2p protocols this node speaks, as `id` lists them.
    pub fn protocols(&self) -> Vec<String> {
        self.inner
            .protocols
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Records the protocols the swarm speaks.
    pub fn set_protocols(&self, protocols: Vec<String>) {
        if let Ok(mut p) = self.inner.protocols.lock() {
            *p = protocols;
        }
    }

    /// Deletes every block that no pin reaches (following links of dag-pb, dag-cbor and raw
    /// blocks), then compacts mostly dead packs. Returns the CIDs removed.
    pub async fn collect_garbage(&self) -> Result<Vec<cid::Cid>, String> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || {
            let links = |cid: &cid::Cid, data: &[u8]| -> Result<Vec<cid::Cid>, String> {
                crate::ipld::links(cid, &bytes::Bytes::copy_from_slice(data))
                    .map_err(|e| e.to_string())
            };
            store
                .gc(&links)
                .map(|r| r.removed)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Reads a dotted config key from the config file as it is now.
    pub fn config_get(&self, key: &str) -> Result<serde_json::Value, ConfigChangeError> {
        let doc = self.config_doc();
        Ok(get_key(&doc, key)?.clone())
    }

    /// The whole config document as it is now on disk.
    pub fn config_doc(&self) -> serde_json::Value {
        self.inner
            .config_doc
            .lock()
            .map(|d| d.clone())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Sets a dotted key, validates the whole config, and writes it; applies at the next start.
    pub fn config_set(&self, key: &str, value: serde_json::Value) -> Result<(), ConfigChangeError> {
        let mut guard = self
            .inner
            .config_doc
            .lock()
            .map_err(|_| ConfigChangeError::Invalid {
                key: key.into(),
                message: "config lock poisoned".into(),
            })?;
        let updated = set_config_key(&guard, key, value)?;
        write_json_atomic(&self.inner.root.join("config"), &updated)?;
        *guard = updated;
        Ok(())
    }
}

/// Applies `key = value` to a config document and validates the result; returns the new document.
pub fn set_config_key(
    doc: &serde_json::Value,
    key: &str,
    value: serde_json::Value,
) -> Result<serde_json::Value, ConfigChangeError> {
    let mut updated = doc.clone();
    set_key(&mut updated, key, value)?;
    Config::from_value(updated.clone())
        .map_err(|(k, message)| ConfigChangeError::Invalid { key: k, message })?;
    Ok(updated)
}
