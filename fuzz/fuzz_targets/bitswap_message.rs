//! Fuzzes the Bitswap message decoder (one frame, without its length prefix).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tessera_fuzz::bitswap_message(data);
});
