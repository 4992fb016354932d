//! The fuzz target's checks over random bytes and over mutations of valid
//! messages, for machines without cargo-fuzz or nightly.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use tessera_bitswap_ec::bitswap::{
    Entry, Message, Payload, Prefix, Presence, PresenceKind, Version, WantType,
};
use tessera_blockstore::{Block, RAW};

fn seeds() -> Vec<Vec<u8>> {
    let a = Block::from_data_v1(RAW, Bytes::from_static(b"fuzz"));
    let b = Block::from_dag_pb_v0(Bytes::from_static(b"\x0a\x02\x08\x02"));
    let mut m = Message::new();
    m.wantlist.push(Entry {
        cid: *a.cid(),
        priority: -1,
        cancel: false,
        want_type: WantType::Have,
        send_dont_have: true,
    });
    m.full = true;
    m.payload.push(Payload {
        prefix: Prefix::of(b.cid()),
        data: b.data().clone(),
    });
    m.blocks.push(a.data().clone());
    m.presences.push(Presence {
        cid: *b.cid(),
        kind: PresenceKind::DontHave,
    });
    m.pending_bytes = 42;
    vec![
        m.to_bytes(Version::V1_2_0).to_vec(),
        m.to_bytes(Version::V1_0_0).to_vec(),
        Vec::new(),
    ]
}

#[test]
fn random_bytes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..256);
        let data: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        tessera_fuzz::bitswap_message(&data);
    }
}

#[test]
fn mutated_messages() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for seed in seeds() {
        tessera_fuzz::bitswap_message(&seed);
        for _ in 0..20_000 {
            let mut data = seed.clone();
            for _ in 0..rng.gen_range(1..4) {
                match rng.gen_range(0..3) {
                    0 if !data.is_empty() => {
                        let i = rng.gen_range(0..data.len());
                        data[i] ^= 1 << rng.gen_range(0..8);
                    }
                    1 if !data.is_empty() => {
                        let i = rng.gen_range(0..data.len());
                        data.truncate(i);
                    }
                    _ => {
                        let i = rng.gen_range(0..=data.len());
                        data.insert(i, rng.r#gen());
                    }
                }
            }
            tessera_fuzz::bitswap_message(&data);
        }
    }
}
