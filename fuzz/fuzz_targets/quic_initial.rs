//! QUIC Initial packets: header protection, the Initial keys (RFC 9001), CRYPTO frame
//! reassembly across datagrams and the ClientHello's server name inside, plus Google QUIC's
//! CHLO. The input is a run of client datagrams of one flow, each prefixed by a 2-byte length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerwarden_classifier::protocols::quic::{self, Initials};

fuzz_target!(|p: &[u8]| {
    let mut flow = Initials::default();
    let mut rest = p;
    let mut fed = 0;
    while rest.len() >= 2 && fed < 16 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let dgram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let _ = quic::looks_like(dgram);
        let _ = flow.feed(dgram);
        fed += 1;
        if flow.done {
            break;
        }
    }
    // A whole input as one datagram too (the seeds are single datagrams).
    let _ = Initials::default().feed(p);
});
