//! The snapshot's byte format: the whole pinset as JSON lines.
//!
//! Version 1: a header line `{"format":"tessera-pinset","version":1}`, then one `Pin` as JSON per
//! line, in CID-bytes order, each line ending in `\n`. JSON never holds a raw newline, so lines
//! split unambiguously. The Raft metadata (last log id, membership) travels beside the bytes, in
//! openraft's `SnapshotMeta`.

use serde::{Deserialize, Serialize};

use crate::pin::Pin;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
}

const FORMAT: &str = "tessera-pinset";
const VERSION: u32 = 1;

/// Builds snapshot bytes from the stored pins' JSON, copied as is (the state machine stores each
/// pin as the same JSON a snapshot line holds).
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Result<Self, serde_json::Error> {
        let mut bytes = serde_json::to_vec(&Header {
            format: FORMAT.to_string(),
            version: VERSION,
        })?;
        bytes.push(b'\n');
        Ok(Writer { bytes })
    }

    pub(crate) fn push(&mut self, pin_json: &[u8]) {
        self.bytes.extend_from_slice(pin_json);
        self.bytes.push(b'\n');
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Why snapshot bytes were refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("snapshot has no header line")]
    NoHeader,
    #[error("snapshot format {format:?} version {version} is not {FORMAT:?} version {VERSION}")]
    Version { format: String, version: u32 },
    #[error("snapshot line {line}: {source}")]
    Json {
        line: usize,
        source: serde_json::Error,
    },
}

/// One pin as the pin table stores it: (CID bytes, pin JSON).
pub(crate) type Record = (Vec<u8>, Vec<u8>);

/// The pins in `bytes`, each checked to decode as a `Pin`.
pub(crate) fn read(bytes: &[u8]) -> Result<Vec<Record>, ReadError> {
    let mut lines = bytes.split(|b| *b == b'\n');
    let header = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(ReadError::NoHeader)?;
    let header: Header =
        serde_json::from_slice(header).map_err(|source| ReadError::Json { line: 1, source })?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(ReadError::Version {
            format: header.format,
            version: header.version,
        });
    }
    let mut pins = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let pin: Pin = serde_json::from_slice(line).map_err(|source| ReadError::Json {
            line: i + 2,
            source,
        })?;
        pins.push((pin.cid.to_bytes(), line.to_vec()));
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use cid::Cid;
    use cid::multihash::Multihash;

    use super::*;

    fn pin(n: u8) -> Pin {
        let cid = Cid::new_v1(0x55, Multihash::wrap(0x12, &[n; 32]).unwrap());
        Pin::new(cid, -1, -1)
    }

    #[test]
    fn round_trips_pins() {
        let mut writer = Writer::new().unwrap();
        for n in 0..3 {
            writer.push(&serde_json::to_vec(&pin(n)).unwrap());
        }
        let pins = read(&writer.finish()).unwrap();
        assert_eq!(pins.len(), 3);
        for (n, (key, json)) in pins.iter().enumerate() {
            let back: Pin = serde_json::from_slice(json).unwrap();
            assert_eq!(back, pin(n as u8));
            assert_eq!(key, &back.cid.to_bytes());
        }
    }

    #[test]
    fn empty_pinset_is_just_the_header() {
        let bytes = Writer::new().unwrap().finish();
        assert!(read(&bytes).unwrap().is_empty());
    }

    #[test]
    fn refuses_garbage() {
        assert!(read(b"").is_err());
        assert!(read(b"{\"format\":\"other\",\"version\":1}\n").is_err());
        let mut bytes = Writer::new().unwrap().finish();
        bytes.extend_from_slice(b"{not json\n");
        assert!(read(&bytes).is_err());
    }
}
