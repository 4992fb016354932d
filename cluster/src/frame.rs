//! Length-prefixed frames on libp2p streams: a 4-byte big-endian length, then the bytes.
//!
//! Every cluster protocol reads with a bound, so a peer cannot make another allocate more than the
//! protocol's limit.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frames shorter than this go out in one write with their length.
const ONE_WRITE_BELOW: usize = 16 * 1024;

/// Writes one frame.
///
/// Each write to a Yamux stream leaves as at least one Yamux frame, Noise frame and `write(2)`,
/// so a small frame (requests, acknowledgements) is written with its length in one go; a large
/// one is not copied for that.
pub(crate) async fn write_frame<S: AsyncWrite + Unpin>(
    s: &mut S,
    data: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    if data.len() < ONE_WRITE_BELOW {
        let mut buf = Vec::with_capacity(4 + data.len());
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(data);
        s.write_all(&buf).await?;
    } else {
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(data).await?;
    }
    s.flush().await
}

/// Reads one frame of at most `max` bytes.
pub(crate) async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limit() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").await.unwrap();
        let mut r = futures::io::Cursor::new(buf.clone());
        assert_eq!(read_frame(&mut r, 5).await.unwrap(), b"hello");
        let mut r = futures::io::Cursor::new(buf.clone());
        assert!(read_frame(&mut r, 4).await.is_err());
        let mut r = futures::io::Cursor::new(buf[..6].to_vec());
        assert!(read_frame(&mut r, 5).await.is_err(), "truncated frame");
        // Both ways of writing (small: one write; large: two) read back alike.
        let big: Vec<u8> = (0..ONE_WRITE_BELOW + 3).map(|i| i as u8).collect();
        let mut buf = Vec::new();
        write_frame(&mut buf, &big).await.unwrap();
        write_frame(&mut buf, b"").await.unwrap();
        let mut r = futures::io::Cursor::new(buf);
        assert_eq!(read_frame(&mut r, big.len()).await.unwrap(), big);
        assert!(read_frame(&mut r, 0).await.unwrap().is_empty());
    }
}
