//! Integration tests of tessera-blockstore, one binary for all of them (one
//! link step instead of five on a busy 2-core machine). A test crate's root
//! resolves modules beside itself, hence the `#[path]`s into `suite/`.

// Helpers shared by tests are not `#[test]` functions, which clippy's
// allow-unwrap-in-tests does not cover; a failing unwrap here is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "suite/conformance.rs"]
mod conformance;
#[path = "suite/crash.rs"]
mod crash;
#[path = "suite/dag.rs"]
mod dag;
#[path = "suite/disk.rs"]
mod disk;
#[path = "suite/model.rs"]
mod model;
