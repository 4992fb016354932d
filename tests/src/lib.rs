//! Harness for tests that start real `tessera` processes.
