//! Length-prefixed frames on libp2p streams: a 4-byte big-endian length, then the bytes.
//!
//! Every cluster protocol reads with a bound, so a peer cannot make another allocate more than the
//! protocol's limit.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Writes one frame.
pub(crate) async fn write_frame<S: AsyncWrite + Unpin>(
    s: &mut S,
    data: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(data).await?;
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
    }
}
