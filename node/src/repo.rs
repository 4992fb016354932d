//! The repo folder: config, identity and blocks of one node, as `$IPFS_PATH` is for Kubo.
//!
//! Layout: `config` (JSON, see [`crate::config`]), `blocks/` (the blockstore), `repo.lock` (held by
//! the daemon so that two daemons never share a repo), and `api` / `gateway`, which the running
//! daemon writes with the multiaddrs it actually listens on (useful with port 0) and removes at exit.

use std::fs::File;
use std::path::{Path, PathBuf};

use base64::Engine;
use libp2p::identity::Keypair;

use crate::config::{Config, ConfigError, Identity};

/// Why a repo cannot be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// `init` on a folder that already has a config.
    #[error(
        "a tessera repo already exists at {0}; remove it or set TESSERA_PATH to another folder"
    )]
    AlreadyInitialized(PathBuf),
    /// No config where one was expected.
    #[error("no tessera repo at {0}; run `tessera init` first (or set TESSERA_PATH)")]
    NotInitialized(PathBuf),
    /// The config file is broken.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another daemon holds the repo.
    #[error(
        "the repo at {0} is in use by another tessera daemon; stop it first, or use another repo folder"
    )]
    Locked(PathBuf),
    /// The identity in the config cannot be decoded.
    #[error("Identity.PrivKey in {path} cannot be decoded: {message}")]
    BadIdentity {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file in the repo could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// An opened repo folder.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    config: Config,
    lock: Option<File>,
}

/// `$TESSERA_PATH`, else `~/.tessera`.
pub fn default_repo_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".tessera")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Repo {
    /// Creates a repo with a new ed25519 identity and the default config.
    pub fn init(root: &Path) -> Result<Repo, RepoError> {
        let config_path = root.join("config");
        if config_path.exists() {
            return Err(RepoError::AlreadyInitialized(root.to_path_buf()));
        }
        std::fs::create_dir_all(root).map_err(io(root))?;
        let keypair = Keypair::generate_ed25519();
        let encoded = keypair
            .to_protobuf_encoding()
            .map_err(|e| RepoError::BadIdentity {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let config = Config {
            identity: Identity {
                peer_id: keypair.public().to_peer_id().to_string(),
                priv_key: base64::engine::general_purpose::STANDARD.encode(encoded),
            },
            addresses: Default::default(),
            bootstrap: Vec::new(),
            datastore: Default::default(),
            peering: Default::default(),
            discovery: Default::default(),
            routing: Default::default(),
            api: Default::default(),
            cluster: None,
        };
        config.save(&config_path)?;
        std::fs::create_dir_all(root.join("blocks")).map_err(io(root))?;
        Ok(Repo {
            root: root.to_path_buf(),
            config,
            lock: None,
        })
    }

    /// Opens an existing repo and validates its config.
    pub fn open(root: &Path) -> Result<Repo, RepoError> {
        let config_path = root.join("config");
        if !config_path.exists() {
            return Err(RepoError::NotInitialized(root.to_path_buf()));
        }
        let config = Config::load(&config_path)?;
        Ok(Repo {
            root: root.to_path_buf(),
            config,
            lock: None,
        })
    }

    /// Takes the repo's exclusive lock for a daemon; fails at once if another process holds it.
    /// The OS releases the lock when the process dies, so a crashed daemon never leaves it stuck.
    pub fn lock(&mut self) -> Result<(), RepoError> {
        let path = self.root.join("repo.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match f.try_lock() {
            Ok(()) => {
                self.lock = Some(f);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(RepoError::Locked(self.root.clone())),
            Err(std::fs::TryLockError::Error(e)) => Err(RepoError::Io { path, source: e }),
        }
    }

    /// Whether some daemon holds the repo lock right now.
    pub fn is_locked_by_daemon(root: &Path) -> bool {
        let path = root.join("repo.lock");
        match File::options().write(true).open(&path) {
            Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }

    /// The repo folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The validated config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config")
    }

    /// The blockstore's folder.
    pub fn blocks_path(&self) -> PathBuf {
        self.root.join("blocks")
    }

    /// The file where the running daemon records its API multiaddr.
    pub fn api_file(root: &Path) -> PathBuf {
        root.join("api")
    }

    /// The file where the running daemon records its gateway multiaddr.
    pub fn gateway_file(root: &Path) -> PathBuf {
        root.join("gateway")
    }

    /// The node's libp2p keypair, decoded from `Identity.PrivKey`.
    pub fn keypair(&self) -> Result<Keypair, RepoError> {
        let bad = |message: String| RepoError::BadIdentity {
            path: self.config_path(),
            message,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.config.identity.priv_key.trim())
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let kp = Keypair::from_protobuf_encoding(&bytes).map_err(|e| bad(e.to_string()))?;
        let derived = kp.public().to_peer_id().to_string();
        if derived != self.config.identity.peer_id {
            return Err(bad(format!(
                "the key belongs to peer {derived}, but Identity.PeerID says {}",
                self.config.identity.peer_id
            )));
        }
        Ok(kp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_open_gives_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let a = Repo::init(&root).unwrap();
        let kp = a.keypair().unwrap();
        let b = Repo::open(&root).unwrap();
        assert_eq!(b.keypair().unwrap().public(), kp.public());
        assert!(b.config().identity.peer_id.starts_with("12D3Koo"));
        assert!(matches!(
            Repo::init(&root),
            Err(RepoError::AlreadyInitialized(_))
        ));
    }

    #[test]
    fn second_lock_is_refused_while_the_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Repo::init(dir.path()).unwrap();
        a.lock().unwrap();
        let mut b = Repo::open(dir.path()).unwrap();
        assert!(matches!(b.lock(), Err(RepoError::Locked(_))));
        assert!(Repo::is_locked_by_daemon(dir.path()));
        drop(a);
        assert!(!Repo::is_locked_by_daemon(dir.path()));
        b.lock().unwrap();
    }

    #[test]
    fn open_without_init_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = Repo::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("tessera init"));
    }
}
