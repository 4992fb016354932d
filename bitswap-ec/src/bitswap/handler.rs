//! One connection: reads messages from every inbound Bitswap stream the peer
//! opens, hashes their blocks off the async runtime, and writes our messages
//! on one outbound stream of our own.
//!
//! Back-pressure runs end to end: while `max_verifying_messages` messages are
//! being hashed, no stream is read, so Yamux windows close and the sender
//! slows down. Messages to send are queued here only as far as the behaviour
//! lets them (its per-peer send buffer), and each one is acknowledged with
//! [`HandlerOut::Sent`] once written.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{BoxStream, FuturesOrdered, FuturesUnordered, SelectAll, StreamExt};
use futures::{AsyncWriteExt, Future};
use libp2p::PeerId;
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
    ListenUpgradeError,
};
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamUpgradeError, SubstreamProtocol,
};

use super::config::Config;
use super::message::Message;
use super::protocol::{FrameError, Upgrade, Version, read_frame, write_frame};
use super::verify::{Inbound, name_blocks};

/// Messages larger than this are decoded and hashed on the blocking pool;
/// smaller ones inline (hashing 64 KiB takes about 40 µs here).
const INLINE_DECODE_MAX: usize = 64 * 1024;

/// Failed attempts to open an outbound stream in a row before the queued
/// messages are given up.
const MAX_OPEN_FAILURES: u32 = 3;

/// A message the behaviour wants sent.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) message: Box<Message>,
    /// Bytes of the server's send buffer this message holds; given back in
    /// [`HandlerOut::Sent`] or [`HandlerOut::SendFailed`].
    pub(crate) server_bytes: usize,
    /// Blocks in the message and their bytes, for statistics.
    pub(crate) blocks: usize,
    pub(crate) block_bytes: usize,
    retried: bool,
}

impl Outgoing {
    pub(crate) fn new(message: Message, server_bytes: usize) -> Self {
        let blocks = message.payload.len() + message.blocks.len();
        let block_bytes = message.payload.iter().map(|p| p.data.len()).sum::<usize>()
            + message.blocks.iter().map(|b| b.len()).sum::<usize>();
        Self {
            message: Box::new(message),
            server_bytes,
            blocks,
            block_bytes,
            retried: false,
        }
    }
}

/// From the behaviour to the handler (opaque outside this crate).
#[derive(Debug)]
pub struct HandlerIn(pub(crate) Outgoing);

/// From the handler to the behaviour (opaque outside this crate).
#[derive(Debug)]
pub struct HandlerEvent(pub(crate) HandlerOut);

#[derive(Debug)]
pub(crate) enum HandlerOut {
    /// Our outbound stream speaks this version.
    Negotiated(Version),
    /// The peer speaks no Bitswap version.
    Unsupported,
    /// A message arrived, its blocks named.
    Received(Box<Inbound>),
    /// A message or stream was malformed and dropped.
    Invalid(String),
    /// A message was written.
    Sent {
        server_bytes: usize,
        blocks: usize,
        block_bytes: usize,
    },
    /// A message could not be sent.
    SendFailed { server_bytes: usize },
}

enum Outbound {
    /// No stream; one is requested when there is something to send.
    Closed,
    /// A stream was requested and is being negotiated.
    Opening,
    /// A stream is open with nothing to write.
    Ready(Stream),
    /// A message is being written.
    Writing(BoxFuture<'static, Result<Stream, io::Error>>, Outgoing),
    /// Temporary state while moving between the others.
    Poisoned,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_message_size: usize,
    max_block_size: usize,
    max_items: usize,
    max_inbound_streams: usize,
    max_verifying: usize,
    idle_stream_timeout: Duration,
}

type Decoding = BoxFuture<'static, Result<Inbound, String>>;

/// The [`ConnectionHandler`] of [`Behaviour`](super::Behaviour): one per connection.
pub struct Handler {
    peer: PeerId,
    limits: Limits,
    inbound: SelectAll<BoxStream<'static, Result<Bytes, FrameError>>>,
    decoding: FuturesOrdered<Decoding>,
    queue: VecDeque<Outgoing>,
    outbound: Outbound,
    request_stream: bool,
    open_failures: u32,
    version: Option<Version>,
    unsupported: bool,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    closing: FuturesUnordered<BoxFuture<'static, ()>>,
    events: VecDeque<HandlerOut>,
}

impl Handler {
    pub(crate) fn new(peer: PeerId, config: &Config) -> Self {
        Self {
            peer,
            limits: Limits {
                max_message_size: config.max_message_size,
                max_block_size: config.max_block_size,
                max_items: config.max_items_per_message,
                max_inbound_streams: config.max_inbound_streams,
                max_verifying: config.max_verifying_messages,
                idle_stream_timeout: config.idle_stream_timeout,
            },
            inbound: SelectAll::new(),
            decoding: FuturesOrdered::new(),
            queue: VecDeque::new(),
            outbound: Outbound::Closed,
            request_stream: false,
            open_failures: 0,
            version: None,
            unsupported: false,
            idle: None,
            closing: FuturesUnordered::new(),
            events: VecDeque::new(),
        }
    }

    fn fail_queue(&mut self) {
        for o in self.queue.drain(..) {
            self.events.push_back(HandlerOut::SendFailed {
                server_bytes: o.server_bytes,
            });
        }
    }

    fn on_inbound(&mut self, stream: Stream) {
        if self.inbound.len() >= self.limits.max_inbound_streams {
            tracing::warn!(
                peer = %self.peer,
                max = self.limits.max_inbound_streams,
                "peer opened too many bitswap streams; closing the new one"
            );
            self.events
                .push_back(HandlerOut::Invalid("too many inbound streams".into()));
            return;
        }
        let max = self.limits.max_message_size;
        let frames = futures::stream::unfold(Some(stream), move |state| async move {
            let mut s = state?;
            match read_frame(&mut s, max).await {
                Ok(Some(frame)) => Some((Ok(frame), Some(s))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        self.inbound.push(frames.boxed());
    }

    /// Decodes a frame and hashes its blocks: inline if small, else on the
    /// blocking pool. Results come out in arrival order (`FuturesOrdered`),
    /// so a want and its cancel are never swapped.
    fn decode(&self, frame: Bytes) -> Decoding {
        let peer = self.peer;
        let limits = self.limits;
        let small = frame.len() <= INLINE_DECODE_MAX;
        let work = move || -> Result<Inbound, String> {
            let msg =
                Message::decode_with_limit(frame, limits.max_items).map_err(|e| e.to_string())?;
            Ok(name_blocks(msg, limits.max_block_size, &peer))
        };
        if small {
            return futures::future::ready(work()).boxed();
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let job = rt.spawn_blocking(work);
                async move {
                    job.await
                        .map_err(|e| format!("verifying a message failed: {e}"))?
                }
                .boxed()
            }
            // Outside tokio there is no blocking pool to use.
            Err(_) => futures::future::ready(work()).boxed(),
        }
    }

    fn start_write(&mut self, stream: Stream, out: Outgoing) {
        let version = self.version.unwrap_or(Version::V1_2_0);
        let segments = out.message.encode(version);
        let fut = async move {
            let mut stream = stream;
            write_frame(&mut stream, &segments).await?;
            Ok(stream)
        };
        self.outbound = Outbound::Writing(fut.boxed(), out);
    }

    /// Drives the outbound stream; true if something changed.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> bool {
        match std::mem::replace(&mut self.outbound, Outbound::Poisoned) {
            Outbound::Closed => {
                if !self.queue.is_empty() && !self.unsupported {
                    self.outbound = Outbound::Opening;
                    self.request_stream = true;
                    return true;
                }
                self.outbound = Outbound::Closed;
                false
            }
            Outbound::Opening => {
                self.outbound = Outbound::Opening;
                false
            }
            Outbound::Ready(stream) => {
                if let Some(out) = self.queue.pop_front() {
                    self.idle = None;
                    self.start_write(stream, out);
                    return true;
                }
                let idle = self.idle.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(self.limits.idle_stream_timeout))
                });
                if idle.as_mut().poll(cx).is_ready() {
                    self.idle = None;
                    let mut stream = stream;
                    self.closing.push(
                        async move {
                            let _ = stream.close().await;
                        }
                        .boxed(),
                    );
                    self.outbound = Outbound::Closed;
                    return true;
                }
                self.outbound = Outbound::Ready(stream);
                false
            }
            Outbound::Writing(mut fut, out) => match fut.poll_unpin(cx) {
                Poll::Pending => {
                    self.outbound = Outbound::Writing(fut, out);
                    false
                }
                Poll::Ready(Ok(stream)) => {
                    self.events.push_back(HandlerOut::Sent {
                        server_bytes: out.server_bytes,
                        blocks: out.blocks,
                        block_bytes: out.block_bytes,
                    });
                    self.outbound = Outbound::Ready(stream);
                    true
                }
                Poll::Ready(Err(e)) => {
                    // The remote may have closed an idle stream (Helia does
                    // after 10 s): resend once on a fresh stream. Duplicates
                    // are harmless, wants and blocks are idempotent.
                    if out.retried {
                        tracing::debug!(peer = %self.peer, error = %e, "bitswap message could not be sent");
                        self.events.push_back(HandlerOut::SendFailed {
                            server_bytes: out.server_bytes,
                        });
                    } else {
                        tracing::debug!(peer = %self.peer, error = %e, "bitswap stream failed; resending on a new one");
                        let mut out = out;
                        out.retried = true;
                        self.queue.push_front(out);
                    }
                    self.outbound = Outbound::Closed;
                    true
                }
            },
            Outbound::Poisoned => {
                self.outbound = Outbound::Closed;
                true
            }
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = HandlerIn;
    type ToBehaviour = HandlerEvent;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(Upgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.queue.is_empty() || matches!(self.outbound, Outbound::Writing(..) | Outbound::Opening)
    }

    fn on_behaviour_event(&mut self, HandlerIn(out): HandlerIn) {
        if self.unsupported {
            self.events.push_back(HandlerOut::SendFailed {
                server_bytes: out.server_bytes,
            });
        } else {
            self.queue.push_back(out);
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol, (), ()>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, _version),
                ..
            }) => self.on_inbound(stream),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, version),
                ..
            }) => {
                self.open_failures = 0;
                if self.version != Some(version) {
                    self.version = Some(version);
                    self.events.push_back(HandlerOut::Negotiated(version));
                }
                self.outbound = Outbound::Ready(stream);
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.outbound = Outbound::Closed;
                match error {
                    StreamUpgradeError::NegotiationFailed => {
                        tracing::debug!(peer = %self.peer, "peer does not speak bitswap");
                        self.unsupported = true;
                        self.events.push_back(HandlerOut::Unsupported);
                        self.fail_queue();
                    }
                    e => {
                        self.open_failures += 1;
                        tracing::debug!(peer = %self.peer, error = ?e, "opening a bitswap stream failed");
                        if self.open_failures >= MAX_OPEN_FAILURES {
                            self.open_failures = 0;
                            self.fail_queue();
                        }
                    }
                }
            }
            ConnectionEvent::ListenUpgradeError(ListenUpgradeError { error, .. }) => {
                tracing::debug!(peer = %self.peer, error = ?error, "inbound bitswap stream failed to negotiate");
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, (), HandlerEvent>> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(HandlerEvent(ev)));
            }
            if self.request_stream {
                self.request_stream = false;
                return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                    protocol: SubstreamProtocol::new(Upgrade, ()),
                });
            }
            let mut progress = self.poll_outbound(cx);

            while self.decoding.len() < self.limits.max_verifying {
                match self.inbound.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let job = self.decode(frame);
                        self.decoding.push_back(job);
                        progress = true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::warn!(peer = %self.peer, error = %e, "dropping bitswap stream from peer");
                        self.events.push_back(HandlerOut::Invalid(e.to_string()));
                        progress = true;
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }

            match self.decoding.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(inbound))) => {
                    self.events
                        .push_back(HandlerOut::Received(Box::new(inbound)));
                    progress = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(peer = %self.peer, error = %e, "dropping bitswap message from peer");
                    self.events.push_back(HandlerOut::Invalid(e));
                    progress = true;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }

            while let Poll::Ready(Some(())) = self.closing.poll_next_unpin(cx) {}

            if !progress && self.events.is_empty() && !self.request_stream {
                return Poll::Pending;
            }
        }
    }
}
