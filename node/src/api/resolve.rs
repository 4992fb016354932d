//! Resolving `/ipfs/CID/a/b` paths to the CID they name.

use cid::Cid;

use super::args::parse_ipfs_path;
use super::error::{ApiError, ApiResult};
use crate::node::Node;

/// The CID at an IPFS path (a bare CID, `CID/a/b`, or `/ipfs/CID/a/b`), walking UnixFS directories.
pub(crate) async fn resolve(node: &Node, path: &str) -> ApiResult<Cid> {
    let (root, rest) = parse_ipfs_path(path)?;
    if rest.is_empty() {
        return Ok(root);
    }
    let joined = rest.join("/");
    crate::unixfs::resolve_path(node.dag(), root, &joined)
        .await
        .map_err(|e| ApiError::normal(format!("no link named \"{joined}\" under {root}: {e}")))
}
