//! Leases: blocks kept from GC for a while without a pin.
//!
//! Why: a peer receives the cells of an erasure-coded add before the pin is committed (the commit
//! waits for every holder's acknowledgement), and pins them only when the committed pin reaches
//! its tracker. A `repo gc` in between would sweep acknowledged cells. A lease keeps them until
//! they are pinned ([`Blockstore::release`]) or until it runs out, which is how the blocks of an
//! add that never committed become garbage. Leases live in memory: after a restart the blocks of
//! an add still in flight are garbage anyway, since the add's streams broke with the process.

use std::collections::HashMap;
use std::time::Instant;

use cid::Cid;

use crate::store::Blockstore;

/// CID bytes to the end of their lease.
pub(crate) type Leases = HashMap<Vec<u8>, Instant>;

impl Blockstore {
    /// Keeps `cids` from GC until `until`, pinned or not, present yet or not. A later lease of the
    /// same block extends it; an earlier one does not shorten it.
    pub fn lease(&self, cids: &[Cid], until: Instant) {
        let mut leases = self.lock_leases();
        for cid in cids {
            let end = leases.entry(cid.to_bytes()).or_insert(until);
            *end = (*end).max(until);
        }
    }

    /// Ends the leases of `cids` (usually once they are pinned).
    pub fn release(&self, cids: &[Cid]) {
        let mut leases = self.lock_leases();
        for cid in cids {
            leases.remove(&cid.to_bytes());
        }
    }

    /// Blocks under a lease now.
    pub fn leased(&self) -> usize {
        self.lock_leases().len()
    }

    /// The CID bytes of every live lease; drops the expired ones.
    pub(crate) fn live_leases(&self) -> Vec<Vec<u8>> {
        let now = Instant::now();
        let mut leases = self.lock_leases();
        leases.retain(|_, end| *end > now);
        leases.keys().cloned().collect()
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.inner.leases.lock().unwrap_or_else(|e| e.into_inner())
    }
}
