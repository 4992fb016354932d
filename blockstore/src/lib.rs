//! Content-addressed block store for tessera.
#![warn(missing_docs)]
