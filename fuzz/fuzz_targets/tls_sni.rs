//! The TLS ClientHello's server name, from a TCP stream head (records, which may split the
//! hello anywhere) and from bare handshake bytes (as QUIC's CRYPTO frames carry them). A name
//! from bare handshake bytes must be printable bytes of the input: the parser may not invent
//! one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerwarden_classifier::protocols::tls::{self, Hello};

fuzz_target!(|p: &[u8]| {
    let _ = tls::offers_ech(p);
    let _ = tls::records_offer_ech(p);
    if let Hello::Done(Some(name)) = tls::from_records(p) {
        assert!(!name.is_empty() && name.bytes().all(|c| c.is_ascii_graphic()));
    }
    if let Hello::Done(Some(name)) = tls::client_hello(p) {
        let n = name.as_bytes();
        assert!(
            !n.is_empty() && p.windows(n.len()).any(|w| w == n),
            "server name {name:?} is not in the input"
        );
    }
});
