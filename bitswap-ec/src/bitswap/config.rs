//! Limits and timings of the Bitswap engine.

use std::time::Duration;

/// Limits and timings of the Bitswap engine. The defaults follow Kubo where
/// Kubo has a limit (2 MiB blocks, 4 MiB messages) and were measured
/// otherwise (see `benches/bitswap.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest block sent or accepted, in bytes. Defaults to 2 MiB, Kubo's
    /// limit; larger received blocks are dropped.
    pub max_block_size: usize,
    /// Largest message sent or accepted, in bytes, without its length prefix.
    /// Defaults to 4 MiB, what Kubo and Helia accept; a stream announcing a
    /// larger message is closed.
    pub max_message_size: usize,
    /// The server packs blocks into one message until it reaches this many
    /// bytes. Defaults to 1 MiB.
    pub target_message_size: usize,
    /// Most wantlist entries, blocks and presences kept from one received
    /// message; the rest are ignored. Defaults to 16384.
    pub max_items_per_message: usize,
    /// Most wants the server keeps for one peer; more are ignored until some
    /// are served or cancelled. Defaults to 16384.
    pub max_wants_per_peer: usize,
    /// Most wants the server keeps over all peers. Defaults to 262144
    /// (about 40 MiB of state).
    pub max_wants_total: usize,
    /// Most inbound Bitswap streams open at once on one connection; more are
    /// closed. Defaults to 64.
    pub max_inbound_streams: usize,
    /// Received messages one connection hashes at once; while this many are
    /// being verified, its streams are not read (back-pressure). Defaults to 4.
    pub max_verifying_messages: usize,
    /// Bytes of answers queued for one peer but not yet written to it; the
    /// server stops looking up that peer's wants past it. Defaults to 8 MiB.
    pub peer_send_buffer: usize,
    /// Bytes of answers queued for all peers together. Defaults to 64 MiB.
    pub total_send_buffer: usize,
    /// Batches of lookups the server runs against the block provider at
    /// once. Defaults to 16.
    pub max_concurrent_lookups: usize,
    /// Want-blocks of one peer looked up in one turn of the round robin
    /// between peers. Defaults to 4.
    pub blocks_per_turn: usize,
    /// Want-haves of one peer looked up in one turn. Defaults to 256.
    pub haves_per_turn: usize,
    /// How long the client waits for a block it asked a peer for before it
    /// asks another. Defaults to 15 seconds.
    pub want_block_timeout: Duration,
    /// How often the client asks every peer again for blocks nobody has
    /// offered. Defaults to 3 seconds.
    pub rebroadcast_interval: Duration,
    /// Blocks the client wants at once, over all callers; further `get`s
    /// wait. Defaults to 4096.
    pub max_client_wants: usize,
    /// Blocks a session's `get_many` keeps requested ahead of the one it
    /// yields next. Defaults to 64.
    pub session_window: usize,
    /// An outbound stream with nothing to send is closed after this long
    /// (Helia aborts inbound streams idle for 10 s). Defaults to 5 seconds.
    pub idle_stream_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_block_size: 2 << 20,
            max_message_size: 4 << 20,
            target_message_size: 1 << 20,
            max_items_per_message: 16_384,
            max_wants_per_peer: 16_384,
            max_wants_total: 262_144,
            max_inbound_streams: 64,
            max_verifying_messages: 4,
            peer_send_buffer: 8 << 20,
            total_send_buffer: 64 << 20,
            max_concurrent_lookups: 16,
            blocks_per_turn: 4,
            haves_per_turn: 256,
            want_block_timeout: Duration::from_secs(15),
            rebroadcast_interval: Duration::from_secs(3),
            max_client_wants: 4096,
            session_window: 64,
            idle_stream_timeout: Duration::from_secs(5),
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("bitswap config key `{key}`: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub key: &'static str,
    /// What is wrong and what would work.
    pub reason: String,
}

/// Room for a message's own fields around one block of the largest size.
const MESSAGE_OVERHEAD: usize = 1024;

impl Config {
    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, reason: String| Err(ConfigError { key, reason });
        let nonzero: [(&'static str, usize); 10] = [
            ("max_items_per_message", self.max_items_per_message),
            ("max_wants_per_peer", self.max_wants_per_peer),
            ("max_inbound_streams", self.max_inbound_streams),
            ("max_verifying_messages", self.max_verifying_messages),
            ("max_concurrent_lookups", self.max_concurrent_lookups),
            ("blocks_per_turn", self.blocks_per_turn),
            ("haves_per_turn", self.haves_per_turn),
            ("max_client_wants", self.max_client_wants),
            ("session_window", self.session_window),
            ("target_message_size", self.target_message_size),
        ];
        for (key, v) in nonzero {
            if v == 0 {
                return err(key, "must be at least 1".into());
            }
        }
        if self.max_block_size == 0 {
            return err("max_block_size", "must be at least 1 byte".into());
        }
        if self.max_message_size < self.max_block_size + MESSAGE_OVERHEAD {
            return err(
                "max_message_size",
                format!(
                    "{} bytes cannot carry a block of max_block_size ({} bytes); make it at least {}",
                    self.max_message_size,
                    self.max_block_size,
                    self.max_block_size + MESSAGE_OVERHEAD
                ),
            );
        }
        if self.target_message_size > self.max_message_size {
            return err(
                "target_message_size",
                format!(
                    "must not exceed max_message_size ({} bytes)",
                    self.max_message_size
                ),
            );
        }
        if self.max_wants_total < self.max_wants_per_peer {
            return err(
                "max_wants_total",
                "must be at least max_wants_per_peer".into(),
            );
        }
        if self.peer_send_buffer < self.max_message_size {
            return err(
                "peer_send_buffer",
                format!(
                    "must hold one message of max_message_size ({} bytes)",
                    self.max_message_size
                ),
            );
        }
        if self.total_send_buffer < self.peer_send_buffer {
            return err(
                "total_send_buffer",
                "must be at least peer_send_buffer".into(),
            );
        }
        for (key, d) in [
            ("want_block_timeout", self.want_block_timeout),
            ("rebroadcast_interval", self.rebroadcast_interval),
            ("idle_stream_timeout", self.idle_stream_timeout),
        ] {
            if d.is_zero() {
                return err(key, "must be longer than zero".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let c = Config {
            max_message_size: 1 << 20,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "max_message_size");
        let c = Config {
            session_window: 0,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "session_window");
        let c = Config {
            rebroadcast_interval: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "rebroadcast_interval");
    }
}
