//! Tuning of the Raft group, and its translation into openraft's `Config`.

use std::time::Duration;

use super::error::ConsensusError;

/// Timing and size limits of the pinset's Raft group. Every peer of a cluster should use the same
/// values.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// How often the leader sends AppendEntries when idle; also the time a follower has to answer
    /// one. Defaults to 200 milliseconds.
    pub heartbeat: Duration,
    /// Shortest wait without hearing from a leader before a follower starts an election. Defaults
    /// to 1000 milliseconds.
    pub election_timeout_min: Duration,
    /// Longest such wait; each election picks a random timeout in between. Defaults to 2000
    /// milliseconds.
    pub election_timeout_max: Duration,
    /// Log entries since the last snapshot that trigger a new snapshot, after which older entries
    /// are purged. Defaults to 5000 entries.
    pub snapshot_after: u64,
    /// Most voting members; members added beyond this stay learners until a seat frees up (a
    /// voter removed, or demoted by [`Consensus::rotate_voters`](super::Consensus::rotate_voters)).
    /// Defaults to 7.
    pub max_voters: usize,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            heartbeat: Duration::from_millis(200),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            snapshot_after: 5000,
            max_voters: 7,
        }
    }
}

/// Most entries sent in one AppendEntries. Each entry may be a group commit of up to
/// [`super::group_commit::MAX_BATCH`] operations, so this bounds a message to a few megabytes.
const MAX_PAYLOAD_ENTRIES: u64 = 32;

/// How long one snapshot chunk may take, including installing the snapshot on the receiver
/// after the last chunk (replacing a large pinset takes seconds, not heartbeats).
const INSTALL_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Snapshot chunk size: large enough that a pinset of 100 000 pins takes a dozen messages.
const SNAPSHOT_CHUNK: u64 = 4 * 1024 * 1024;

impl ConsensusConfig {
    /// Checks the values once, at open, naming the offending key.
    pub(crate) fn validate(&self) -> Result<(), ConsensusError> {
        let bad = |key: &str, why: &str| Err(ConsensusError::Config(format!("{key}: {why}")));
        if self.heartbeat.is_zero() {
            return bad("heartbeat", "must be more than 0");
        }
        if self.election_timeout_min <= self.heartbeat {
            return bad(
                "election_timeout_min",
                "must be longer than heartbeat, or followers start elections under a live leader",
            );
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return bad(
                "election_timeout_max",
                "must be longer than election_timeout_min",
            );
        }
        if self.snapshot_after == 0 {
            return bad("snapshot_after", "must be at least 1 entry");
        }
        if self.max_voters == 0 {
            return bad("max_voters", "must be at least 1");
        }
        Ok(())
    }

    /// Logs kept behind a snapshot, so that a follower a little behind gets entries and not a
    /// whole snapshot; the log stays below `snapshot_after + kept` entries.
    fn logs_kept_after_snapshot(&self) -> u64 {
        (self.snapshot_after / 2).min(1000)
    }

    pub(crate) fn to_openraft(&self) -> Result<openraft::Config, ConsensusError> {
        self.validate()?;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: "tessera-pinset".to_string(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            install_snapshot_timeout: millis(INSTALL_SNAPSHOT_TIMEOUT),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot(),
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ConsensusError::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        ConsensusConfig::default().to_openraft().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let config = ConsensusConfig {
            election_timeout_max: Duration::from_millis(500),
            ..Default::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("election_timeout_max"), "{err}");
    }
}
