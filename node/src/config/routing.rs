//! `Routing.Type`: whether the node runs the Kademlia DHT (content routing), and in which mode.

use serde::{Deserialize, Serialize};

/// `Routing`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Routing {
    /// `none` (the default: only connected and peered nodes are asked for blocks), `dht`,
    /// `dhtclient` or `dhtserver`; see [`RoutingMode`].
    #[serde(rename = "Type")]
    pub kind: String,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            kind: "none".into(),
        }
    }
}

/// What `Routing.Type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingMode {
    /// `none`: no Kademlia at all; blocks come only from connected and peered nodes.
    Off,
    /// `dhtclient`: asks the DHT (finds providers, announces its own) but answers nobody's queries
    /// and does not advertise the protocol, so other peers never put it in their routing tables.
    Client,
    /// `dht` and `dhtserver`: asks and answers. Kubo's `dht` is "auto" (client until AutoNAT says
    /// the node is publicly reachable); tessera has no AutoNAT and runs on LANs and loopback,
    /// where auto would never become a server and the DHT would hold no servers at all, so `dht`
    /// means server here.
    Server,
}

impl Routing {
    /// The mode `Routing.Type` names, or why the word is not one.
    pub fn mode(&self) -> Result<RoutingMode, String> {
        match self.kind.as_str() {
            "none" => Ok(RoutingMode::Off),
            "dhtclient" => Ok(RoutingMode::Client),
            "dht" | "dhtserver" => Ok(RoutingMode::Server),
            other => Err(format!(
                "`{other}` is not one of none, dht, dhtclient, dhtserver"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(kind: &str) -> Result<RoutingMode, String> {
        Routing { kind: kind.into() }.mode()
    }

    #[test]
    fn words_map_to_modes() {
        assert_eq!(Routing::default().mode(), Ok(RoutingMode::Off));
        assert_eq!(mode("none"), Ok(RoutingMode::Off));
        assert_eq!(mode("dht"), Ok(RoutingMode::Server));
        assert_eq!(mode("dhtserver"), Ok(RoutingMode::Server));
        assert_eq!(mode("dhtclient"), Ok(RoutingMode::Client));
        let e = mode("auto").unwrap_err();
        assert!(e.contains("`auto`") && e.contains("dhtclient"), "{e}");
        assert!(mode("DHT").is_err(), "Kubo's words are lower case");
    }
}
