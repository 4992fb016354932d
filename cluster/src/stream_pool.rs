//! Outbound streams kept open between requests, so that a request to a member usually skips the
//! stream negotiation.
//!
//! Why: libp2p-stream 0.5 negotiates one outbound stream at a time per connection, each a round
//! trip through both peers' swarm tasks, and the receiving side queues a single inbound stream and
//! drops the next one if its accepting task has not run yet. With a stream per request, every Raft
//! message, forwarded pin and fetched cell paid that round trip in one queue per connection, and
//! bursts lost streams to the full inbound queue (then retried after a pause). Reusing streams
//! takes both out of the common path: a request waits only for its own answer.
//!
//! A protocol that uses the pool answers requests on one stream one after another until the
//! opener closes it; the opener sends the next request only after the whole answer to the previous
//! one was read, so an idle stream is always at a request boundary.
//!
//! # To ensure correctness
//!
//! - Give a stream back with [`StreamPool::put_back`] only after its exchange ended cleanly (the
//!   whole answer read). A stream whose exchange failed or was abandoned (a timeout dropped the
//!   future) must be dropped, never given back.
//! - An idle stream ([`StreamPool::idle`]) may have been closed by the other side in the
//!   meantime; when an exchange on it fails, retry once on a fresh stream ([`StreamPool::open`]),
//!   and only with requests that may run twice.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::{PeerId, Stream, StreamProtocol};

use crate::frame::read_frame;

/// Idle streams kept per peer; more concurrent requests than this open streams of their own and
/// drop them afterwards.
const MAX_IDLE_PER_PEER: usize = 16;

/// A stream idle this long is dropped rather than reused: the other side closes streams idle for
/// [`SERVER_IDLE`], and a stream that old would likely fail on first use.
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);

/// How long a server waits for the next request on a stream before it closes it. Longer than
/// [`MAX_IDLE_AGE`], so that an opener never picks a stream that the server has just closed,
/// short enough that a vanished opener's streams do not linger.
pub(crate) const SERVER_IDLE: Duration = Duration::from_secs(120);

/// The server side: the next request on `stream`, waiting at most `wait` for it; `None` when the
/// stream is done (the opener closed it or sent garbage, it stayed quiet, or `member` says the
/// opener is no longer a member). The caller then closes the stream.
pub(crate) async fn next_request(
    peer: PeerId,
    protocol: &StreamProtocol,
    stream: &mut Stream,
    wait: Duration,
    max: usize,
    member: impl Fn(&PeerId) -> bool,
) -> Option<Vec<u8>> {
    let request = match tokio::time::timeout(wait, read_frame(stream, max)).await {
        Ok(Ok(r)) => r,
        // End of stream is how an opener lets a stream go.
        Ok(Err(e)) => {
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                tracing::debug!(%peer, %protocol, error = %e, "bad cluster request");
            }
            return None;
        }
        Err(_) => return None,
    };
    if !member(&peer) {
        tracing::warn!(%peer, %protocol, "closed a cluster stream of a peer that is no longer a member");
        return None;
    }
    Some(request)
}

/// Outbound streams of one protocol, per peer.
pub(crate) struct StreamPool {
    control: libp2p_stream::Control,
    protocol: StreamProtocol,
    idle: Mutex<HashMap<PeerId, Vec<(Stream, Instant)>>>,
}

impl StreamPool {
    pub(crate) fn new(control: libp2p_stream::Control, protocol: StreamProtocol) -> Self {
        StreamPool {
            control,
            protocol,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `exchange` (one request and its whole answer) on an idle stream to `peer` if there is
    /// one, else, or if that fails, on a fresh stream from `open`; keeps the stream after an
    /// exchange that ended cleanly. Only for requests that may run twice.
    pub(crate) async fn exchange<T, E, O, OF, X, XF>(
        &self,
        peer: PeerId,
        open: O,
        exchange: X,
    ) -> Result<T, E>
    where
        E: Display,
        O: FnOnce() -> OF,
        OF: Future<Output = Result<Stream, E>>,
        X: Fn(Stream) -> XF,
        XF: Future<Output = Result<(Stream, T), E>>,
    {
        if let Some(stream) = self.idle(&peer) {
            match exchange(stream).await {
                Ok((stream, answer)) => {
                    self.put_back(peer, stream);
                    return Ok(answer);
                }
                Err(e) => {
                    tracing::trace!(%peer, protocol = %self.protocol, error = %e, "an idle stream failed; opening a fresh one");
                }
            }
        }
        let (stream, answer) = exchange(open().await?).await?;
        self.put_back(peer, stream);
        Ok(answer)
    }

    /// A new stream to `peer`, never an idle one.
    pub(crate) async fn open(
        &self,
        peer: PeerId,
    ) -> Result<Stream, libp2p_stream::OpenStreamError> {
        self.control
            .clone()
            .open_stream(peer, self.protocol.clone())
            .await
    }

    /// Keeps `stream` for the next request to `peer`. Only for a stream whose exchange ended
    /// cleanly.
    pub(crate) fn put_back(&self, peer: PeerId, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.entry(peer).or_default();
        if streams.len() < MAX_IDLE_PER_PEER {
            streams.push((stream, Instant::now()));
        }
    }

    /// An idle stream to `peer`, if one was given back recently.
    pub(crate) fn idle(&self, peer: &PeerId) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.get_mut(peer)?;
        let now = Instant::now();
        // Most recently used first: it is the likeliest to be alive, and the older ones age out.
        streams.retain(|(_, since)| now.duration_since(*since) < MAX_IDLE_AGE);
        let stream = streams.pop().map(|(s, _)| s);
        if streams.is_empty() {
            idle.remove(peer);
        }
        stream
    }
}

#[cfg(test)]
impl StreamPool {
    /// Idle streams kept for `peer`.
    pub(crate) fn idle_count(&self, peer: &PeerId) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(peer).map_or(0, Vec::len)
    }
}
