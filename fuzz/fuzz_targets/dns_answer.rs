//! DNS messages read in full (the DNS-assisted labels): any bytes as one message, and as a
//! DNS-over-TCP stream of length-prefixed messages. Names read back must be printable and
//! at most 255 bytes; a CNAME chain never repeats a name; the TCP framing never claims more
//! bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerwarden_classifier::protocols::dns_message::{self, MAX_CHAIN, MAX_RECORDS};

fn check(m: &[u8]) {
    let Some(msg) = dns_message::parse(m) else {
        return;
    };
    assert!(msg.answers.len() <= MAX_RECORDS);
    for r in &msg.answers {
        assert!(
            r.name.len() <= 255
                && r.name
                    .bytes()
                    .all(|c| c.is_ascii_graphic() && !c.is_ascii_uppercase())
        );
    }
    if let Some(res) = dns_message::resolve(&msg) {
        assert!(res.names.len() <= MAX_CHAIN + 1);
        for (i, n) in res.names.iter().enumerate() {
            assert!(!res.names[..i].contains(n), "the chain repeats {n:?}");
        }
    }
}

fuzz_target!(|p: &[u8]| {
    check(p);
    let (msgs, used) = dns_message::tcp_messages(p);
    assert!(used <= p.len());
    assert_eq!(used, msgs.iter().map(|m| m.len() + 2).sum::<usize>());
    for m in msgs {
        check(m);
    }
});
