//! Running redb work off the async runtime, and turning its failures into openraft's
//! `StorageError` (which stops the Raft node: a storage failure must not be papered over).

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

use super::types::{NodeId, StorageError};

/// Any failure inside a redb closure: redb itself, or a value that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DbError(pub(crate) String);

macro_rules! db_error_from {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError(e.to_string())
            }
        })*
    };
}

db_error_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    serde_json::Error,
);

/// Runs `work` on the blocking pool and reports its failure as `verb` on `subject`.
pub(crate) async fn blocking<T, F>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    work: F,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DbError> + Send + 'static,
{
    let failed = |subject, verb, msg: String| -> StorageError {
        StorageIOError::new(subject, verb, AnyError::error(msg)).into()
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(failed(subject, verb, e.0)),
        Err(join) => Err(failed(
            subject,
            verb,
            format!("storage task failed: {join}"),
        )),
    }
}
