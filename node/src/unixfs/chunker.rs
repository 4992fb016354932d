//! Fixed-size chunking into leaf blocks, copying each input byte once.
//!
//! The chunker fills one buffer per leaf and freezes it into the block's
//! `Bytes`. For dag-pb leaves it leaves room in front of the data for the
//! protobuf framing, which it writes once the chunk is complete (its varints
//! depend on the chunk length), so that the block is the buffer itself and
//! the data is never copied a second time.

use bytes::{BufMut, Bytes, BytesMut};
use cid::Version;
use tessera_blockstore::{Block, DAG_PB, RAW};

use crate::ipld::protobuf::{put_varint, varint_len};

/// Room kept in front of a dag-pb leaf's data: `0a len 08 02 12 len`, with
/// two varints of at most 5 bytes each for any chunk under 4 GiB.
const HEAD_ROOM: usize = 16;
/// Room after it: `18 filesize`.
const TAIL_ROOM: usize = 6;

/// How leaves are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeafFormat {
    /// A raw block (always CIDv1, as Kubo does even with `--cid-version 0`).
    Raw,
    /// A dag-pb node with UnixFS `{Type: File, Data, filesize}`.
    DagPb(Version),
}

/// A leaf block and the file bytes it holds.
pub(crate) struct Leaf {
    pub(crate) block: Block,
    pub(crate) file_size: u64,
}

pub(crate) struct Chunker {
    format: LeafFormat,
    chunk_size: usize,
    buf: BytesMut,
}

impl Chunker {
    pub(crate) fn new(format: LeafFormat, chunk_size: usize) -> Self {
        let mut c = Self {
            format,
            chunk_size,
            buf: BytesMut::new(),
        };
        c.buf = c.fresh_buffer();
        c
    }

    fn head(&self) -> usize {
        match self.format {
            LeafFormat::Raw => 0,
            LeafFormat::DagPb(_) => HEAD_ROOM,
        }
    }

    fn fresh_buffer(&self) -> BytesMut {
        let head = self.head();
        let tail = if head == 0 { 0 } else { TAIL_ROOM };
        let mut buf = BytesMut::with_capacity(head + self.chunk_size + tail);
        buf.put_bytes(0, head);
        buf
    }

    fn filled(&self) -> usize {
        self.buf.len() - self.head()
    }

    /// Takes bytes, calling `leaf` for each chunk completed.
    pub(crate) fn push(&mut self, mut data: &[u8], mut leaf: impl FnMut(Leaf)) {
        while !data.is_empty() {
            let take = (self.chunk_size - self.filled()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.filled() == self.chunk_size {
                leaf(self.cut());
            }
        }
    }

    /// The last, partial chunk, if any bytes are pending.
    pub(crate) fn finish(mut self) -> Option<Leaf> {
        (self.filled() > 0).then(|| self.cut())
    }

    fn cut(&mut self) -> Leaf {
        let n = self.filled();
        let next = self.fresh_buffer();
        let mut buf = std::mem::replace(&mut self.buf, next);
        let file_size = n as u64;
        let block = match self.format {
            LeafFormat::Raw => Block::from_data_v1(RAW, buf.freeze()),
            LeafFormat::DagPb(version) => {
                // UnixFS Data: 08 02 | 12 varint(n) <data> | 18 varint(n)
                let unixfs_len = 2 + 1 + varint_len(file_size) + n + 1 + varint_len(file_size);
                let mut head = Vec::with_capacity(HEAD_ROOM);
                head.extend_from_slice(&[0x0a]);
                put_varint(&mut head, unixfs_len as u64);
                head.extend_from_slice(&[0x08, 0x02, 0x12]);
                put_varint(&mut head, file_size);
                let start = HEAD_ROOM - head.len();
                buf[start..HEAD_ROOM].copy_from_slice(&head);
                buf.put_u8(0x18);
                let mut tail = Vec::with_capacity(TAIL_ROOM);
                put_varint(&mut tail, file_size);
                buf.extend_from_slice(&tail);
                let bytes = buf.freeze().slice(start..);
                dag_pb_block(version, bytes)
            }
        };
        Leaf { block, file_size }
    }
}

/// Names a dag-pb block with the CID version asked for.
pub(crate) fn dag_pb_block(version: Version, bytes: Bytes) -> Block {
    match version {
        Version::V0 => Block::from_dag_pb_v0(bytes),
        Version::V1 => Block::from_data_v1(DAG_PB, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::PbNode;
    use crate::unixfs::{Data, DataType};

    fn cut_all(format: LeafFormat, chunk: usize, input: &[u8], pieces: usize) -> Vec<Leaf> {
        let mut c = Chunker::new(format, chunk);
        let mut leaves = Vec::new();
        for part in input.chunks(input.len().div_ceil(pieces).max(1)) {
            c.push(part, |l| leaves.push(l));
        }
        leaves.extend(c.finish());
        leaves
    }

    #[test]
    fn raw_chunks_are_the_input_cut_at_chunk_size() {
        let input: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for pieces in [1, 3, 7, 1000] {
            let leaves = cut_all(LeafFormat::Raw, 300, &input, pieces);
            let sizes: Vec<u64> = leaves.iter().map(|l| l.file_size).collect();
            assert_eq!(sizes, vec![300, 300, 300, 100]);
            let joined: Vec<u8> = leaves
                .iter()
                .flat_map(|l| l.block.data().to_vec())
                .collect();
            assert_eq!(joined, input);
            assert_eq!(leaves[0].block.cid().codec(), RAW);
        }
    }

    #[test]
    fn dag_pb_leaves_decode_to_their_chunk() {
        let input: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        for chunk in [1, 127, 128, 16_384, 65_536] {
            let leaves = cut_all(LeafFormat::DagPb(Version::V0), chunk, &input, 5);
            let mut joined = Vec::new();
            for leaf in &leaves {
                let node = PbNode::decode(leaf.block.data()).unwrap();
                assert!(node.links.is_empty());
                let data = Data::decode(&node.data.unwrap()).unwrap();
                assert_eq!(data.kind, DataType::File);
                assert_eq!(data.file_size, Some(leaf.file_size));
                let bytes = data.data.unwrap();
                assert_eq!(bytes.len() as u64, leaf.file_size);
                joined.extend_from_slice(&bytes);
                // The encoding is the canonical one, byte for byte.
                let mut expect = Data::new(DataType::File);
                expect.data = Some(bytes);
                expect.file_size = Some(leaf.file_size);
                let canonical = PbNode {
                    links: vec![],
                    data: Some(expect.encode()),
                }
                .encode();
                assert_eq!(&canonical[..], &leaf.block.data()[..]);
            }
            assert_eq!(joined, input);
        }
    }

    #[test]
    fn no_input_no_leaf() {
        assert!(cut_all(LeafFormat::Raw, 10, &[], 1).is_empty());
    }
}
