//! The Yamux multiplexer the node's swarm uses, with the two settings
//! Bitswap needs and `libp2p::yamux::Config` does not expose.
//!
//! **Frames no larger than 1 MiB.** rust-yamux refuses any incoming frame
//! whose body is over 1 MiB and closes the whole connection
//! (`FrameTooLarge`), while JS yamux (Helia's `@chainsafe/libp2p-yamux`)
//! sends frames as large as the receive window it was granted. rust-yamux
//! grows a busy stream's window out of a per-connection budget of
//! `1 GiB - max_num_streams * 256 KiB`. With 4093 streams the budget is
//! 768 KiB: one stream can grow 256 KiB -> 512 KiB -> 1 MiB and no window
//! ever passes 1 MiB, so no peer is ever allowed a frame the decoder refuses.
//!
//! **Large outgoing frames.** rust-yamux cuts every write into frames of at
//! most 16 KiB by default, and its connection flushes after each frame, so
//! each one also becomes its own Noise frame and its own `write(2)`. Kubo's
//! Go stack pays for every frame it receives (a read, a decryption, a
//! wake-up of the reading goroutine); measured with `bench/transfer.py`,
//! Kubo fetching from tessera burned about twice the CPU it burns fetching
//! the same file from Kubo, whose frames are as large as the window allows.
//! [`SPLIT_SEND_SIZE`] sends a 256 KiB block as one frame.

use std::collections::VecDeque;
use std::io;
use std::iter;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::future::{self, Ready};
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// At most this many streams per connection keeps every window <= 1 MiB.
pub const YAMUX_MAX_STREAMS: usize = 4093;

/// The largest frame this side sends. A frame is also never larger than the
/// peer's window, so peers that grant less get smaller frames.
pub const SPLIT_SEND_SIZE: usize = 256 * 1024;

/// Inbound streams held while the swarm is not asking for them yet; more
/// are reset. rust-yamux peers stop opening streams long before this (their
/// ACK backlog is the same 256).
const MAX_BUFFERED_INBOUND: usize = 256;

/// The Yamux upgrade for the node's swarm: pass `yamux_config` where the
/// swarm builder wants a multiplexer.
#[derive(Debug, Clone)]
pub struct Yamux(yamux::Config);

/// The node's Yamux settings (see the module docs).
pub fn yamux_config() -> Yamux {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(YAMUX_MAX_STREAMS);
    c.set_split_send_size(SPLIT_SEND_SIZE);
    Yamux(c)
}

impl UpgradeInfo for Yamux {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ok(Muxer::new(io, self.0, yamux::Mode::Server))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ok(Muxer::new(io, self.0, yamux::Mode::Client))
    }
}

/// One Yamux connection, as the swarm drives it.
///
/// rust-yamux makes progress only inside `poll_next_inbound`, which the
/// swarm reaches through both [`StreamMuxer::poll`] (progress on open
/// streams) and [`StreamMuxer::poll_inbound`]; streams that arrive during
/// the first wait in a small queue for the second.
#[derive(Debug)]
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    inbound: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn new(io: C, config: yamux::Config, mode: yamux::Mode) -> Self {
        Muxer {
            connection: yamux::Connection::new(io, config, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }

    fn next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, Error>> {
        match self.connection.poll_next_inbound(cx) {
            Poll::Ready(Some(stream)) => Poll::Ready(stream.map_err(Error)),
            Poll::Ready(None) => Poll::Ready(Err(Error(yamux::ConnectionError::Closed))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Substream = yamux::Stream;
    type Error = Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.inbound.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        if let Poll::Ready(r) = this.next_inbound(cx) {
            return Poll::Ready(r);
        }
        this.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut()
            .connection
            .poll_new_outbound(cx)
            .map_err(Error)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx).map_err(Error)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        loop {
            let stream = match this.next_inbound(cx) {
                Poll::Ready(Ok(stream)) => stream,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if this.inbound.len() >= MAX_BUFFERED_INBOUND {
                tracing::warn!(%stream, "too many inbound streams waiting; resetting one");
                drop(stream);
                continue;
            }
            this.inbound.push_back(stream);
            if let Some(waker) = this.inbound_waker.take() {
                waker.wake();
            }
        }
    }
}

/// A Yamux connection failed.
#[derive(Debug, thiserror::Error)]
#[error("yamux: {0}")]
pub struct Error(yamux::ConnectionError);

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::AsyncWriteExt;
    use futures::future::poll_fn;
    use libp2p::core::muxing::StreamMuxerExt;

    use super::*;

    /// A transport that keeps what is written to it and never has anything to read.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<u8>>>);

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Body lengths of the Yamux data frames in `wire` (12-byte headers: version, type, flags,
    /// stream id, length; type 0 is data, whose body follows).
    fn data_frames(wire: &[u8]) -> Vec<usize> {
        let mut lens = Vec::new();
        let mut at = 0;
        while at + 12 <= wire.len() {
            let len = u32::from_be_bytes(wire[at + 8..at + 12].try_into().unwrap()) as usize;
            at += 12;
            if wire[at - 11] == 0 {
                lens.push(len);
                at += len;
            }
        }
        lens
    }

    #[test]
    fn a_large_write_leaves_in_large_frames() {
        let wire = Recorder::default();
        let mut muxer = futures::executor::block_on(
            yamux_config().upgrade_outbound(wire.clone(), "/yamux/1.0.0"),
        )
        .unwrap();
        let mut stream =
            futures::executor::block_on(poll_fn(|cx| muxer.poll_outbound_unpin(cx))).unwrap();
        // Within the 256 KiB window every peer starts with, so no window update is needed.
        let data = vec![7u8; 200 * 1024];
        let write = async {
            stream.write_all(&data).await.unwrap();
            stream.flush().await.unwrap();
        };
        let drive = poll_fn(|cx| {
            let _ = muxer.poll_unpin(cx);
            let sent: usize = data_frames(&wire.0.lock().unwrap()).iter().sum();
            if sent >= data.len() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        futures::executor::block_on(futures::future::join(write, drive));
        let frames = data_frames(&wire.0.lock().unwrap());
        // rust-yamux's default would have sent 13 frames of at most 16 KiB.
        assert_eq!(frames, vec![data.len()], "{frames:?}");
    }

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
