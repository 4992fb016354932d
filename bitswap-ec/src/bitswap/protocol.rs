//! Protocol names, stream negotiation and message framing.
//!
//! A Bitswap stream carries any number of messages, each prefixed by its
//! length as an unsigned varint (go's `msgio` varint framing). Peers send on
//! streams they open and read on streams the other side opens: Kubo answers
//! a wantlist on a stream of its own (a new one per response), Helia opens a
//! stream per batch of messages and aborts inbound streams idle for 10 s.

use std::io;

use bytes::{Bytes, BytesMut};
use futures::future::{Ready, ready};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::{Stream, StreamProtocol};

use super::proto;

/// A Bitswap protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// `/ipfs/bitswap/1.0.0`: blocks as bare bytes, named by CIDv0.
    V1_0_0,
    /// `/ipfs/bitswap/1.1.0`: blocks carry their CID prefix.
    V1_1_0,
    /// `/ipfs/bitswap/1.2.0`: want-have, have / dont-have.
    V1_2_0,
}

const P100: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.0.0");
const P110: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.1.0");
const P120: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// Kubo also answers to the bare name, as 1.0.0.
const PBARE: StreamProtocol = StreamProtocol::new("/ipfs/bitswap");

impl Version {
    /// The protocol name negotiated on a stream.
    pub fn protocol(self) -> StreamProtocol {
        match self {
            Version::V1_0_0 => P100,
            Version::V1_1_0 => P110,
            Version::V1_2_0 => P120,
        }
    }

    fn from_protocol(p: &StreamProtocol) -> Self {
        if *p == P120 {
            Version::V1_2_0
        } else if *p == P110 {
            Version::V1_1_0
        } else {
            Version::V1_0_0
        }
    }

    /// Want-have and block presences exist from 1.2.0 on.
    pub fn supports_have(self) -> bool {
        self >= Version::V1_2_0
    }

    /// Blocks carry a CID prefix from 1.1.0 on.
    pub fn supports_payload(self) -> bool {
        self >= Version::V1_1_0
    }
}

/// Negotiates any Bitswap version, newest first, and says which one won.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upgrade;

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = [StreamProtocol; 4];

    fn protocol_info(&self) -> Self::InfoIter {
        [P120, P110, P100, PBARE]
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, Version);
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, p: StreamProtocol) -> Self::Future {
        ready(Ok((stream, Version::from_protocol(&p))))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, Version);
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, stream: Stream, p: StreamProtocol) -> Self::Future {
        ready(Ok((stream, Version::from_protocol(&p))))
    }
}

/// Why a stream's framing broke. The stream is dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is over the limit.
    #[error("bitswap message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The length prefix is not a varint.
    #[error("bitswap message length prefix is malformed")]
    BadLength,
    /// The stream failed or ended inside a message.
    #[error("bitswap stream failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads one frame; `None` at a clean end of stream (between frames).
pub(crate) async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; 10];
    let mut n = 0;
    loop {
        let mut byte = [0u8; 1];
        let got = s.read(&mut byte).await?;
        if got == 0 {
            if n == 0 {
                return Ok(None);
            }
            return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        prefix[n] = byte[0];
        n += 1;
        if byte[0] & 0x80 == 0 {
            break;
        }
        if n == prefix.len() {
            return Err(FrameError::BadLength);
        }
    }
    let (len, _) = proto::read_varint(&prefix[..n]).map_err(|_| FrameError::BadLength)?;
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut buf = BytesMut::zeroed(len as usize);
    s.read_exact(&mut buf).await?;
    Ok(Some(buf.freeze()))
}

/// Segments shorter than this are copied together with their neighbours
/// into one write.
const COALESCE_BELOW: usize = 16 * 1024;

/// Writes one frame (length prefix, then the segments) and flushes.
///
/// Every write to a Yamux stream becomes at least one Yamux frame, and
/// every frame a Noise frame and a `write(2)` (see `muxer.rs`), so the
/// prefix and the small protobuf pieces between blocks are gathered into
/// one write; block payloads go out as they are, uncopied.
pub(crate) async fn write_frame<S: AsyncWrite + Unpin>(
    s: &mut S,
    segments: &[Bytes],
) -> io::Result<()> {
    let len: usize = segments.iter().map(Bytes::len).sum();
    let mut small = BytesMut::with_capacity(256);
    proto::put_varint(&mut small, len as u64);
    for seg in segments {
        if seg.len() < COALESCE_BELOW {
            small.extend_from_slice(seg);
            continue;
        }
        if !small.is_empty() {
            s.write_all(&small).await?;
            small.clear();
        }
        s.write_all(seg).await?;
    }
    if !small.is_empty() {
        s.write_all(&small).await?;
    }
    s.flush().await
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;

    use super::*;

    #[tokio::test]
    async fn frames_round_trip_back_to_back() {
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &[Bytes::from_static(b"ab"), Bytes::from_static(b"c")],
        )
        .await
        .unwrap();
        write_frame(&mut buf, &[]).await.unwrap();
        write_frame(&mut buf, &[Bytes::from(vec![9u8; 300])])
            .await
            .unwrap();
        // Small pieces around payloads written on their own keep their order.
        let big = Bytes::from((0..COALESCE_BELOW + 7).map(|i| i as u8).collect::<Vec<_>>());
        let mixed = [
            Bytes::from_static(b"x"),
            big.clone(),
            Bytes::from_static(b"yz"),
            big.clone(),
            big.clone(),
            Bytes::from_static(b"w"),
        ];
        write_frame(&mut buf, &mixed).await.unwrap();
        let mut r = Cursor::new(buf);
        assert_eq!(
            &read_frame(&mut r, 1000).await.unwrap().unwrap()[..],
            b"abc"
        );
        assert!(read_frame(&mut r, 1000).await.unwrap().unwrap().is_empty());
        assert_eq!(read_frame(&mut r, 1000).await.unwrap().unwrap().len(), 300);
        assert_eq!(
            read_frame(&mut r, 1 << 20).await.unwrap().unwrap(),
            mixed.concat()
        );
        assert!(read_frame(&mut r, 1000).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[Bytes::from(vec![0u8; 101])])
            .await
            .unwrap();
        // One byte over the limit is refused before anything is allocated.
        let err = read_frame(&mut Cursor::new(buf.clone()), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 101, max: 100 }));
        // Exactly at the limit is fine.
        assert!(read_frame(&mut Cursor::new(buf.clone()), 101).await.is_ok());
        buf.truncate(50);
        assert!(matches!(
            read_frame(&mut Cursor::new(buf), 1000).await,
            Err(FrameError::Io(_))
        ));
        let endless = vec![0xffu8; 12];
        assert!(matches!(
            read_frame(&mut Cursor::new(endless), 1000).await,
            Err(FrameError::BadLength)
        ));
    }

    #[test]
    fn versions_order_and_features() {
        assert!(Version::V1_2_0.supports_have());
        assert!(!Version::V1_1_0.supports_have());
        assert!(Version::V1_1_0.supports_payload());
        assert!(!Version::V1_0_0.supports_payload());
        for v in [Version::V1_0_0, Version::V1_1_0, Version::V1_2_0] {
            assert_eq!(Version::from_protocol(&v.protocol()), v);
        }
        assert_eq!(Version::from_protocol(&PBARE), Version::V1_0_0);
    }
}
