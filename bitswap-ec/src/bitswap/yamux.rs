//! The Yamux settings a swarm needs for Bitswap with JavaScript peers.
//!
//! rust-yamux refuses any incoming frame whose body is over 1 MiB and closes
//! the whole connection (`FrameTooLarge`), while JS yamux (Helia's
//! `@chainsafe/libp2p-yamux`) sends frames as large as the receive window it
//! was granted. rust-yamux grows a busy stream's window far past 1 MiB, so
//! the first time Helia sends a few 1 MiB blocks, the connection dies.
//!
//! `libp2p::yamux::Config` only exposes the stream limit, but rust-yamux
//! lets windows grow only out of a per-connection budget of
//! `1 GiB - max_num_streams * 256 KiB`. With 4093 streams the budget is
//! 768 KiB: one stream can grow 256 KiB -> 512 KiB -> 1 MiB and no window
//! ever passes 1 MiB, so no peer is ever allowed a frame the decoder
//! refuses. Measured in `benches/bitswap.rs`, throughput is unchanged.

/// At most this many streams per connection keeps every window <= 1 MiB.
pub const YAMUX_MAX_STREAMS: usize = 4093;

/// A Yamux config safe with Helia and Kubo: use it in the node's swarm.
pub fn yamux_config() -> libp2p::yamux::Config {
    let mut c = libp2p::yamux::Config::default();
    c.set_max_num_streams(YAMUX_MAX_STREAMS);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_windows_at_one_mib() {
        const KIB: usize = 1024;
        let budget = (1 << 30) - YAMUX_MAX_STREAMS * 256 * KIB;
        // 256 KiB -> 512 KiB -> 1 MiB takes 768 KiB of budget; doubling
        // again would need 1 MiB more.
        assert_eq!(budget, 768 * KIB);
        let _ = yamux_config();
    }
}
