//! Reading directories: `ipfs ls`, path resolution, and what a node is.

use std::collections::VecDeque;

use cid::Cid;
use futures::Stream;

use super::hamt::{HashBits, ShardLink, parse_link_name};
use super::node::{EntryKind, ExportError, Node, decode};
use crate::ipld::{BlockSource, DEFAULT_READ_AHEAD, PbLink, Prefetch, get_block};

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: String,
    /// What it links to.
    pub cid: Cid,
    /// Cumulative size of the entry's DAG, from the link.
    pub tsize: u64,
}

/// What a node is, from its root block alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStat {
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Content size of a file (`None` for the others).
    pub file_size: Option<u64>,
    /// Bytes of the root block.
    pub block_size: u64,
}

/// Fetches a node's root block and says what it is (what `ipfs ls` shows
/// per entry, and what `files stat` starts from).
pub async fn stat<S: BlockSource>(source: &S, cid: Cid) -> Result<NodeStat, ExportError> {
    let bytes = get_block(source, &cid).await?;
    let block_size = bytes.len() as u64;
    let node = decode(&cid, bytes)?;
    Ok(NodeStat {
        kind: node.kind(),
        file_size: node.file_size(),
        block_size,
    })
}

/// Lists a directory, plain or HAMT-sharded.
///
/// Plain directories list in link order (sorted by name); sharded ones in
/// shard order (slot by slot, depth-first), as Kubo lists them. Shards are
/// fetched with read-ahead.
pub fn ls<'a, S>(
    source: S,
    cid: Cid,
) -> impl Stream<Item = Result<DirEntry, ExportError>> + Send + 'a
where
    S: BlockSource + Clone + 'a,
{
    enum State<'a, S> {
        Start(S),
        Listing(Listing<'a, S>),
        Done,
    }
    futures::stream::unfold(State::Start(source), move |state| async move {
        let mut listing = match state {
            State::Start(source) => match Listing::open(source, cid).await {
                Ok(l) => l,
                Err(e) => return Some((Err(e), State::Done)),
            },
            State::Listing(l) => l,
            State::Done => return None,
        };
        match listing.next().await? {
            Ok(entry) => Some((Ok(entry), State::Listing(listing))),
            Err(e) => Some((Err(e), State::Done)),
        }
    })
}

enum Pending {
    Entry(DirEntry),
    /// The next shard in the prefetch queue.
    Shard,
}

/// A directory being listed: entries not yet yielded, interleaved with
/// markers for the shards whose entries go in their place.
pub(crate) struct Listing<'a, S> {
    pending: VecDeque<Pending>,
    shards: Prefetch<'a, S, ()>,
    layout: (u32, usize),
}

impl<'a, S> Listing<'a, S>
where
    S: BlockSource + Clone + 'a,
{
    /// Fetches the directory's root and starts listing it.
    pub(crate) async fn open(source: S, cid: Cid) -> Result<Self, ExportError> {
        let bytes = get_block(&source, &cid).await?;
        let node = decode(&cid, bytes)?;
        Self::from_node(source, cid, node)
    }

    /// Starts listing a directory whose root is already decoded.
    pub(crate) fn from_node(source: S, cid: Cid, node: Node) -> Result<Self, ExportError> {
        let mut listing = Self {
            pending: VecDeque::new(),
            shards: Prefetch::new(source, DEFAULT_READ_AHEAD),
            layout: (8, 2),
        };
        match node {
            Node::Directory { links } => {
                for link in links {
                    let entry = plain_entry(&cid, link)?;
                    listing.pending.push_back(Pending::Entry(entry));
                }
            }
            Node::Hamt { links, bits, pad } => {
                listing.layout = (bits, pad);
                listing.expand_shard(cid, links)?;
            }
            other => {
                return Err(ExportError::NotADirectory {
                    cid,
                    kind: other.kind_name(),
                    name: String::new(),
                });
            }
        }
        Ok(listing)
    }

    fn expand_shard(&mut self, cid: Cid, links: Vec<PbLink>) -> Result<(), ExportError> {
        let mut items = Vec::with_capacity(links.len());
        let mut shards = Vec::new();
        for link in links {
            let name = link.name.as_deref().unwrap_or_default();
            match parse_link_name(name, self.layout.1) {
                Some(ShardLink::Entry { name, .. }) => items.push(Pending::Entry(DirEntry {
                    name: name.to_owned(),
                    cid: link.cid,
                    tsize: link.tsize.unwrap_or(0),
                })),
                Some(ShardLink::Shard { .. }) => {
                    items.push(Pending::Shard);
                    shards.push((link.cid, ()));
                }
                None => {
                    return Err(ExportError::Malformed {
                        cid,
                        reason: format!("HAMT link name {name:?} has no slot prefix"),
                    });
                }
            }
        }
        for item in items.into_iter().rev() {
            self.pending.push_front(item);
        }
        self.shards.push_front(shards);
        Ok(())
    }

    pub(crate) async fn next(&mut self) -> Option<Result<DirEntry, ExportError>> {
        loop {
            match self.pending.pop_front()? {
                Pending::Entry(e) => return Some(Ok(e)),
                Pending::Shard => {
                    let (cid, (), fetched) = self.shards.next().await?;
                    let step = fetched.map_err(ExportError::from).and_then(|bytes| {
                        match decode(&cid, bytes)? {
                            Node::Hamt { links, bits, pad } if (bits, pad) == self.layout => {
                                self.expand_shard(cid, links)
                            }
                            other => Err(ExportError::Malformed {
                                cid,
                                reason: format!(
                                    "a HAMT shard links to a {} where a shard of the same fanout belongs",
                                    other.kind_name()
                                ),
                            }),
                        }
                    });
                    if let Err(e) = step {
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

fn plain_entry(dir: &Cid, link: PbLink) -> Result<DirEntry, ExportError> {
    let name = link.name.ok_or_else(|| ExportError::Malformed {
        cid: *dir,
        reason: "a directory link has no name".into(),
    })?;
    Ok(DirEntry {
        name,
        cid: link.cid,
        tsize: link.tsize.unwrap_or(0),
    })
}

/// Follows `path` (`"a/b/c"`, slashes at either end ignored) from `root`
/// through plain and HAMT-sharded directories.
pub async fn resolve_path<S: BlockSource>(
    source: &S,
    root: Cid,
    path: &str,
) -> Result<Cid, ExportError> {
    let mut current = root;
    for name in path.split('/').filter(|s| !s.is_empty()) {
        current = lookup(source, current, name).await?;
    }
    Ok(current)
}

/// Finds `name` in the directory at `dir`.
pub async fn lookup<S: BlockSource>(source: &S, dir: Cid, name: &str) -> Result<Cid, ExportError> {
    let bytes = get_block(source, &dir).await?;
    match decode(&dir, bytes)? {
        Node::Directory { links } => links
            .into_iter()
            .find(|l| l.name.as_deref() == Some(name))
            .map(|l| l.cid)
            .ok_or_else(|| ExportError::NoSuchEntry {
                cid: dir,
                name: name.to_owned(),
            }),
        Node::Hamt { links, bits, pad } => {
            let mut hash = HashBits::new(name);
            let (mut shard, mut links) = (dir, links);
            loop {
                let slot = hash.next(bits).ok_or_else(|| ExportError::Malformed {
                    cid: shard,
                    reason: "HAMT deeper than the hash is long".into(),
                })?;
                let mut next_shard = None;
                for link in &links {
                    match parse_link_name(link.name.as_deref().unwrap_or_default(), pad) {
                        Some(ShardLink::Entry { slot: s, name: n }) if s == slot && n == name => {
                            return Ok(link.cid);
                        }
                        Some(ShardLink::Shard { slot: s }) if s == slot => {
                            next_shard = Some(link.cid)
                        }
                        _ => {}
                    }
                }
                let Some(child) = next_shard else {
                    return Err(ExportError::NoSuchEntry {
                        cid: dir,
                        name: name.to_owned(),
                    });
                };
                let bytes = get_block(source, &child).await?;
                match decode(&child, bytes)? {
                    Node::Hamt {
                        links: l,
                        bits: b,
                        pad: p,
                    } if (b, p) == (bits, pad) => {
                        shard = child;
                        links = l;
                    }
                    other => {
                        return Err(ExportError::Malformed {
                            cid: child,
                            reason: format!("a HAMT shard links to a {}", other.kind_name()),
                        });
                    }
                }
            }
        }
        other => Err(ExportError::NotADirectory {
            cid: dir,
            kind: other.kind_name(),
            name: name.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::ipld::MemoryBlocks;
    use crate::unixfs::{DirectoryBuilder, DirectoryOptions, ImportOptions, import_bytes};

    fn tree(n: usize, threshold: usize) -> (Cid, MemoryBlocks, Vec<(String, Cid)>) {
        let mut blocks = Vec::new();
        let mut b = DirectoryBuilder::new(DirectoryOptions {
            shard_threshold: threshold,
            ..DirectoryOptions::default()
        });
        let mut files = Vec::new();
        for i in 0..n {
            let name = format!("file-{i:05}.txt");
            let (f, bs) = import_bytes(name.as_bytes(), ImportOptions::default()).unwrap();
            blocks.extend(bs);
            b.add_file(&format!("dir/{name}"), &f).unwrap();
            files.push((name, f.cid));
        }
        b.add_directory("dir/empty").unwrap();
        let dirs = b.finish(&mut blocks).unwrap();
        (
            dirs.last().unwrap().cid,
            blocks.into_iter().collect(),
            files,
        )
    }

    async fn list(source: &MemoryBlocks, cid: Cid) -> Vec<DirEntry> {
        ls(source, cid).map(|e| e.unwrap()).collect().await
    }

    #[tokio::test]
    async fn plain_and_sharded_directories_list_the_same_entries() {
        for threshold in [0, 1000] {
            let (root, source, files) = tree(300, threshold);
            let dir = resolve_path(&source, root, "/dir/").await.unwrap();
            let mut entries = list(&source, dir).await;
            assert_eq!(entries.len(), 301);
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(entries[300].name, "file-00299.txt");
            assert_eq!(entries[0].name, "empty");
            for (name, cid) in &files {
                assert_eq!(
                    resolve_path(&source, root, &format!("dir/{name}"))
                        .await
                        .unwrap(),
                    *cid
                );
            }
            assert!(matches!(
                resolve_path(&source, root, "dir/missing").await,
                Err(ExportError::NoSuchEntry { .. })
            ));
            assert!(matches!(
                resolve_path(&source, root, "dir/file-00001.txt/x").await,
                Err(ExportError::NotADirectory { kind: "file", .. })
            ));
            let s = stat(&source, dir).await.unwrap();
            assert_eq!(s.kind, EntryKind::Directory);
        }
    }

    #[tokio::test]
    async fn a_missing_shard_is_an_error_not_a_short_listing() {
        let (root, mut source, _) = tree(300, 1000);
        let dir = resolve_path(&source, root, "dir").await.unwrap();
        let bytes = source.get(&dir).await.unwrap();
        let Node::Hamt { links, .. } = decode(&dir, bytes).unwrap() else {
            panic!("not sharded")
        };
        let sub = links
            .iter()
            .find(|l| l.name.as_deref().is_some_and(|n| n.len() == 2))
            .unwrap();
        source.remove(&sub.cid);
        let results: Vec<_> = ls(&source, dir).collect().await;
        assert!(results.last().unwrap().is_err());
    }

    #[tokio::test]
    async fn ls_of_a_file_is_an_error() {
        let (f, blocks) = import_bytes(b"x", ImportOptions::default()).unwrap();
        let source: MemoryBlocks = blocks.into_iter().collect();
        let results: Vec<_> = ls(&source, f.cid).collect().await;
        assert!(matches!(
            results[..],
            [Err(ExportError::NotADirectory { .. })]
        ));
        let s = stat(&source, f.cid).await.unwrap();
        assert_eq!((s.kind, s.file_size), (EntryKind::File, Some(1)));
    }
}
