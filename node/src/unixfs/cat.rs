//! `ipfs cat`: a file's bytes, or a range of them, streamed in order.
//!
//! The walk is lazy and reads ahead: nodes are fetched in file order through
//! [`Prefetch`](crate::ipld::Prefetch), up to `read_ahead` at once, and every
//! leaf is yielded as a slice of its block (no copy). Parent `blocksizes`
//! tell which children hold the requested range, so an offset skips whole
//! subtrees without fetching them.

use bytes::Bytes;
use cid::Cid;
use futures::Stream;

use super::node::{ExportError, Node, decode};
use crate::ipld::{BlockSource, DEFAULT_READ_AHEAD, Prefetch};

/// The part of a node's content still wanted.
struct Piece {
    /// Bytes of the node's content to skip.
    skip: u64,
    /// Bytes to yield after those (saturating: `u64::MAX` means all).
    take: u64,
    /// Content size the parent's `blocksizes` promised; `None` at the root.
    expected: Option<u64>,
}

/// Streams `length` bytes (all if `None`) of the file at `root`, from
/// `offset`, with the default read-ahead.
///
/// A range past the end yields nothing; a root that is not a file (or a raw
/// block) is an error. Each item is a slice of one leaf.
pub fn cat<'a, S>(
    source: S,
    root: Cid,
    offset: u64,
    length: Option<u64>,
) -> impl Stream<Item = Result<Bytes, ExportError>> + Send + 'a
where
    S: BlockSource + Clone + 'a,
{
    cat_with_read_ahead(source, root, offset, length, DEFAULT_READ_AHEAD)
}

/// [`cat`] with up to `read_ahead` blocks fetched concurrently (and held in
/// memory).
pub fn cat_with_read_ahead<'a, S>(
    source: S,
    root: Cid,
    offset: u64,
    length: Option<u64>,
    read_ahead: usize,
) -> impl Stream<Item = Result<Bytes, ExportError>> + Send + 'a
where
    S: BlockSource + Clone + 'a,
{
    let mut prefetch = Prefetch::new(source, read_ahead);
    prefetch.push_back(root, whole_or_range(offset, length));
    stream_pieces(prefetch)
}

/// The root piece of a read of `length` bytes (all if `None`) from `offset`.
fn whole_or_range(offset: u64, length: Option<u64>) -> Piece {
    Piece {
        skip: offset,
        take: length.unwrap_or(u64::MAX),
        expected: None,
    }
}

/// Streams a whole file whose root block the caller already fetched.
pub(crate) fn cat_fetched<'a, S>(
    source: S,
    root: Cid,
    root_bytes: Bytes,
) -> impl Stream<Item = Result<Bytes, ExportError>> + Send + 'a
where
    S: BlockSource + Clone + 'a,
{
    let mut prefetch = Prefetch::new(source, DEFAULT_READ_AHEAD);
    prefetch.push_front_ready(root, whole_or_range(0, None), root_bytes);
    stream_pieces(prefetch)
}

fn stream_pieces<'a, S>(
    prefetch: Prefetch<'a, S, Piece>,
) -> impl Stream<Item = Result<Bytes, ExportError>> + Send + 'a
where
    S: BlockSource + Clone + 'a,
{
    futures::stream::unfold(Some(prefetch), |state| async move {
        let mut prefetch = state?;
        loop {
            let (cid, piece, fetched) = prefetch.next().await?;
            let step = fetched
                .map_err(ExportError::from)
                .and_then(|bytes| expand(&mut prefetch, cid, piece, bytes));
            match step {
                Ok(Some(bytes)) => return Some((Ok(bytes), Some(prefetch))),
                Ok(None) => continue,
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

/// Queues the children of a node that overlap the wanted piece and returns
/// the node's own bytes in it, if any.
fn expand<'a, S: BlockSource + Clone + 'a>(
    prefetch: &mut Prefetch<'a, S, Piece>,
    cid: Cid,
    piece: Piece,
    bytes: Bytes,
) -> Result<Option<Bytes>, ExportError> {
    let node = decode(&cid, bytes)?;
    let Node::File {
        data,
        links,
        block_sizes,
    } = node
    else {
        return Err(match piece.expected {
            None => ExportError::NotAFile {
                cid,
                kind: node.kind_name(),
            },
            Some(_) => ExportError::Malformed {
                cid,
                reason: format!("a file links to a {}", node.kind_name()),
            },
        });
    };
    let size = block_sizes
        .iter()
        .try_fold(data.len() as u64, |a, b| a.checked_add(*b));
    if let Some(expected) = piece.expected
        && size != Some(expected)
    {
        return Err(ExportError::Malformed {
            cid,
            reason: format!("its parent says it holds {expected} bytes, it holds {size:?}"),
        });
    }
    let start = piece.skip;
    let end = piece.skip.saturating_add(piece.take);
    let mut children = Vec::new();
    let mut at = data.len() as u64;
    for (link, &len) in links.iter().zip(&block_sizes) {
        let child_end = at + len; // Cannot overflow: the sum was checked above.
        if child_end > start && at < end && len > 0 {
            let skip = start.saturating_sub(at);
            let take = end.min(child_end) - at.max(start);
            children.push((
                link.cid,
                Piece {
                    skip,
                    take,
                    expected: Some(len),
                },
            ));
        }
        if child_end >= end {
            break;
        }
        at = child_end;
    }
    prefetch.push_front(children);
    let dlen = data.len() as u64;
    if start < dlen && start < end {
        let own = data.slice(start as usize..end.min(dlen) as usize);
        return Ok(Some(own));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use proptest::prelude::*;
    use tessera_blockstore::{Block, DAG_PB, RAW};

    use super::*;
    use crate::ipld::{BlockSourceError, MemoryBlocks, PbLink, PbNode};
    use crate::unixfs::{Data, DataType, ImportOptions, import_bytes};

    fn content(len: usize, seed: u8) -> Vec<u8> {
        let mut x = u32::from(seed) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    async fn read(
        source: &MemoryBlocks,
        root: Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Vec<u8>, ExportError> {
        let mut out = Vec::new();
        let mut s = std::pin::pin!(cat_with_read_ahead(source, root, offset, length, 4));
        while let Some(piece) = s.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    fn import(data: &[u8], options: ImportOptions) -> (Cid, MemoryBlocks) {
        let (root, blocks) = import_bytes(data, options).unwrap();
        (root.cid, blocks.into_iter().collect())
    }

    #[tokio::test]
    async fn ranges_at_chunk_boundaries() {
        let data = content(10 * 100 + 37, 1);
        let options = ImportOptions {
            chunk_size: 100,
            max_links: 3,
            ..ImportOptions::default()
        };
        let (root, source) = import(&data, options);
        assert_eq!(read(&source, root, 0, None).await.unwrap(), data);
        for (offset, len) in [
            (0, 100),
            (99, 2),
            (100, 100),
            (100, 0),
            (250, 500),
            (1036, 5),
            (1037, 1),
            (5000, 1),
        ] {
            let start = (offset as usize).min(data.len());
            let end = (offset as usize + len as usize).min(data.len());
            assert_eq!(
                read(&source, root, offset, Some(len)).await.unwrap(),
                data[start..end],
                "offset {offset} length {len}"
            );
        }
    }

    #[tokio::test]
    async fn skipped_leaves_are_not_fetched() {
        let data = content(1000, 2);
        let options = ImportOptions {
            chunk_size: 100,
            max_links: 4,
            ..ImportOptions::v1()
        };
        let (root, mut source) = import(&data, options);
        // Remove the first five leaves: reading from byte 500 must not need them.
        let (_, blocks) = import_bytes(&data, options).unwrap();
        for b in blocks.iter().filter(|b| b.cid().codec() == RAW).take(5) {
            source.remove(b.cid());
        }
        assert_eq!(read(&source, root, 500, None).await.unwrap(), data[500..]);
        assert!(matches!(
            read(&source, root, 0, None).await,
            Err(ExportError::Fetch(BlockSourceError::NotFound { .. }))
        ));
    }

    #[tokio::test]
    async fn raw_root_and_inline_data_nodes() {
        let raw = Block::from_data_v1(RAW, Bytes::from_static(b"raw bytes"));
        let mut source: MemoryBlocks = [raw.clone()].into_iter().collect();
        assert_eq!(read(&source, *raw.cid(), 4, None).await.unwrap(), b"bytes");
        // A node with its own data and children (as trickle or old importers
        // write): its data comes first.
        let mut d = Data::new(DataType::File);
        d.data = Some(Bytes::from_static(b"head-"));
        d.block_sizes = vec![9];
        let node = PbNode {
            links: vec![PbLink {
                cid: *raw.cid(),
                name: Some(String::new()),
                tsize: Some(9),
            }],
            data: Some(d.encode()),
        };
        let parent = Block::from_data_v1(DAG_PB, node.encode());
        source.insert(parent.clone());
        assert_eq!(
            read(&source, *parent.cid(), 0, None).await.unwrap(),
            b"head-raw bytes"
        );
        assert_eq!(
            read(&source, *parent.cid(), 3, Some(4)).await.unwrap(),
            b"d-ra"
        );
    }

    #[tokio::test]
    async fn a_leaf_shorter_than_its_blocksize_is_an_error() {
        let leaf = Block::from_data_v1(RAW, Bytes::from_static(b"short"));
        let mut d = Data::new(DataType::File);
        d.block_sizes = vec![6];
        let node = PbNode {
            links: vec![PbLink {
                cid: *leaf.cid(),
                name: Some(String::new()),
                tsize: Some(5),
            }],
            data: Some(d.encode()),
        };
        let parent = Block::from_data_v1(DAG_PB, node.encode());
        let source: MemoryBlocks = [leaf, parent.clone()].into_iter().collect();
        assert!(matches!(
            read(&source, *parent.cid(), 0, None).await,
            Err(ExportError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn directories_are_not_files() {
        let dir = Block::from_dag_pb_v0(
            PbNode {
                links: vec![],
                data: Some(Data::new(DataType::Directory).encode()),
            }
            .encode(),
        );
        let source: MemoryBlocks = [dir.clone()].into_iter().collect();
        assert!(matches!(
            read(&source, *dir.cid(), 0, None).await,
            Err(ExportError::NotAFile {
                kind: "directory",
                ..
            })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn import_then_cat_round_trips(
            len in 0usize..20_000,
            chunk in 1usize..3_000,
            max_links in 2usize..8,
            v1 in any::<bool>(),
            raw in proptest::option::of(any::<bool>()),
            offset in 0u64..21_000,
            length in proptest::option::of(0u64..21_000),
        ) {
            let data = content(len, (len % 251) as u8);
            let options = ImportOptions {
                cid_version: if v1 { cid::Version::V1 } else { cid::Version::V0 },
                raw_leaves: raw,
                chunk_size: chunk,
                max_links,
            };
            let (root, source) = import(&data, options);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let all = rt.block_on(read(&source, root, 0, None)).unwrap();
            prop_assert_eq!(&all, &data);
            let start = (offset as usize).min(len);
            let end = length.map_or(len, |l| (offset as usize).saturating_add(l as usize).min(len));
            let part = rt.block_on(read(&source, root, offset, length)).unwrap();
            prop_assert_eq!(&part[..], &data[start..end.max(start)]);
        }
    }
}
