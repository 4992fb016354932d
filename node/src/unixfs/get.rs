//! `ipfs get`: a whole tree, in the order a tar archive of it is written.

use std::pin::Pin;

use bytes::Bytes;
use cid::Cid;
use futures::{Stream, StreamExt};

use super::cat::cat_fetched;
use super::directory::MAX_PATH_DEPTH;
use super::ls::Listing;
use super::node::{ExportError, Node, decode};
use crate::ipld::{BlockSource, get_block};

/// One step of a tree walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeItem {
    /// A directory; its entries follow, each under `path/`.
    Directory {
        /// Path from the root name, `/`-separated.
        path: String,
        /// Its CID.
        cid: Cid,
    },
    /// A file of `size` bytes; its content follows as `Data` items.
    File {
        /// Path from the root name, `/`-separated.
        path: String,
        /// Its CID.
        cid: Cid,
        /// Content size, for a tar header.
        size: u64,
    },
    /// The next bytes of the last `File`.
    Data(Bytes),
    /// A symbolic link.
    Symlink {
        /// Path from the root name, `/`-separated.
        path: String,
        /// Its CID.
        cid: Cid,
        /// Where it points (not resolved, not checked).
        target: String,
    },
}

type ContentStream<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, ExportError>> + Send + 'a>>;

struct Walk<'a, S> {
    source: S,
    /// Open directories, innermost last, with their paths.
    dirs: Vec<(String, Listing<'a, S>)>,
    /// The content of the file being yielded.
    content: Option<ContentStream<'a>>,
    /// The root, until its first step.
    root: Option<(Cid, String)>,
}

/// Walks the tree at `root` depth-first, each directory before its entries
/// (in listing order), each file followed by its content: what a tar writer
/// needs. `root_name` is the first path component (Kubo uses the CID or the
/// last segment of the requested path).
///
/// Entry names that could escape the output directory when written to disk
/// (`.`, `..`, or containing `/` or NUL), and directories nested deeper than
/// [`MAX_PATH_DEPTH`](super::MAX_PATH_DEPTH) levels, are a
/// [`ExportError::Malformed`] error. File content is read ahead as in
/// [`cat`](super::cat); entries are fetched one at a time.
pub fn get<'a, S>(
    source: S,
    root: Cid,
    root_name: &str,
) -> impl Stream<Item = Result<TreeItem, ExportError>> + Send + 'a
where
    S: BlockSource + Clone + 'a,
{
    let walk = Walk {
        source,
        dirs: Vec::new(),
        content: None,
        root: Some((root, root_name.to_owned())),
    };
    futures::stream::unfold(Some(walk), |state| async move {
        let mut walk = state?;
        match walk.step().await? {
            Ok(item) => Some((Ok(item), Some(walk))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

impl<'a, S> Walk<'a, S>
where
    S: BlockSource + Clone + 'a,
{
    async fn step(&mut self) -> Option<Result<TreeItem, ExportError>> {
        if let Some((cid, name)) = self.root.take() {
            return Some(self.enter(cid, name).await);
        }
        loop {
            if let Some(content) = &mut self.content {
                match content.next().await {
                    Some(Ok(bytes)) => return Some(Ok(TreeItem::Data(bytes))),
                    Some(Err(e)) => return Some(Err(e)),
                    None => self.content = None,
                }
            }
            let depth = self.dirs.len();
            let (dir_path, listing) = self.dirs.last_mut()?;
            match listing.next().await {
                None => {
                    self.dirs.pop();
                }
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(entry)) => {
                    if depth > MAX_PATH_DEPTH {
                        return Some(Err(ExportError::Malformed {
                            cid: entry.cid,
                            reason: format!(
                                "directories nest deeper than {MAX_PATH_DEPTH} levels under {dir_path}"
                            ),
                        }));
                    }
                    if !safe_name(&entry.name) {
                        return Some(Err(ExportError::Malformed {
                            cid: entry.cid,
                            reason: format!("unsafe entry name {:?} in {dir_path}", entry.name),
                        }));
                    }
                    let path = format!("{dir_path}/{}", entry.name);
                    return Some(self.enter(entry.cid, path).await);
                }
            }
        }
    }

    /// Fetches a node and starts yielding it.
    async fn enter(&mut self, cid: Cid, path: String) -> Result<TreeItem, ExportError> {
        let bytes = get_block(&self.source, &cid).await?;
        let node = decode(&cid, bytes.clone())?;
        match node {
            Node::File { .. } => {
                let size = node.file_size().unwrap_or(0);
                self.content = Some(Box::pin(cat_fetched(self.source.clone(), cid, bytes)));
                Ok(TreeItem::File { path, cid, size })
            }
            Node::Directory { .. } | Node::Hamt { .. } => {
                let listing = Listing::from_node(self.source.clone(), cid, node)?;
                self.dirs.push((path.clone(), listing));
                Ok(TreeItem::Directory { path, cid })
            }
            Node::Symlink { target } => Ok(TreeItem::Symlink {
                path,
                cid,
                target: String::from_utf8_lossy(&target).into_owned(),
            }),
        }
    }
}

fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{MemoryBlocks, PbLink, PbNode};
    use crate::unixfs::{
        Data, DataType, DirectoryBuilder, DirectoryOptions, ImportOptions, import_bytes, symlink,
    };

    #[tokio::test]
    async fn walks_in_tar_order_with_content() {
        let mut blocks = Vec::new();
        let mut b = DirectoryBuilder::new(DirectoryOptions::default());
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let options = ImportOptions {
            chunk_size: 1000,
            ..ImportOptions::default()
        };
        for (path, content) in [
            ("b/big", &big[..]),
            ("a.txt", b"aaa"),
            ("b/c/d.txt", b"ddd"),
        ] {
            let (f, bs) = import_bytes(content, options).unwrap();
            blocks.extend(bs);
            b.add_file(path, &f).unwrap();
        }
        let link = symlink("../a.txt", cid::Version::V0);
        b.add_link("b/link", *link.cid(), link.data().len() as u64)
            .unwrap();
        blocks.push(link);
        b.add_directory("e").unwrap();
        let root = b.finish(&mut blocks).unwrap().pop().unwrap().cid;
        let source: MemoryBlocks = blocks.into_iter().collect();

        let items: Vec<TreeItem> = get(&source, root, "out")
            .map(|i| i.unwrap())
            .collect()
            .await;
        let mut shape = Vec::new();
        let mut big_back = Vec::new();
        let mut current = String::new();
        for item in &items {
            match item {
                TreeItem::Directory { path, .. } => shape.push(format!("D {path}")),
                TreeItem::File { path, size, .. } => {
                    shape.push(format!("F {path} {size}"));
                    current = path.clone();
                }
                TreeItem::Data(bytes) if current == "out/b/big" => {
                    big_back.extend_from_slice(bytes)
                }
                TreeItem::Data(_) => {}
                TreeItem::Symlink { path, target, .. } => shape.push(format!("L {path} {target}")),
            }
        }
        assert_eq!(
            shape,
            vec![
                "D out",
                "F out/a.txt 3",
                "D out/b",
                "F out/b/big 5000",
                "D out/b/c",
                "F out/b/c/d.txt 3",
                "L out/b/link ../a.txt",
                "D out/e",
            ]
        );
        assert_eq!(big_back, big);
    }

    #[tokio::test]
    async fn a_single_file_root_is_one_file() {
        let (f, blocks) = import_bytes(b"solo", ImportOptions::v1()).unwrap();
        let source: MemoryBlocks = blocks.into_iter().collect();
        let items: Vec<TreeItem> = get(&source, f.cid, "name")
            .map(|i| i.unwrap())
            .collect()
            .await;
        assert_eq!(
            items,
            vec![
                TreeItem::File {
                    path: "name".into(),
                    cid: f.cid,
                    size: 4
                },
                TreeItem::Data(Bytes::from_static(b"solo")),
            ]
        );
    }

    #[tokio::test]
    async fn escaping_names_are_refused() {
        let (f, mut blocks) = import_bytes(b"x", ImportOptions::default()).unwrap();
        let dir = PbNode {
            links: vec![PbLink {
                cid: f.cid,
                name: Some("..".into()),
                tsize: Some(f.tsize),
            }],
            data: Some(Data::new(DataType::Directory).encode()),
        };
        let dir = tessera_blockstore::Block::from_dag_pb_v0(dir.encode());
        let root = *dir.cid();
        blocks.push(dir);
        let source: MemoryBlocks = blocks.into_iter().collect();
        let items: Vec<_> = get(&source, root, "r").collect().await;
        assert!(matches!(
            items.last(),
            Some(Err(ExportError::Malformed { .. }))
        ));
    }
}
