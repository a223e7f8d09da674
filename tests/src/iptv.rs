//! IPTV payloads (MPEG-TS over UDP, bare and in RTP/MP2T), written from ISO/IEC 13818-1's
//! packet header and RFC 3550/2250's RTP header, and everyday UDP that must not pass for
//! them: the kernel tests and the agreement test send these.

/// Bytes of one TS packet.
pub const TS_PACKET: usize = 188;

/// One TS packet of `pid` with continuity counter `cc`: payload only, or (with `pcr`) an
/// adaptation field carrying a PCR first. The payload bytes never repeat the sync byte.
pub fn ts_packet(pid: u16, cc: u8, pcr: bool) -> [u8; TS_PACKET] {
    let mut t = [0u8; TS_PACKET];
    t[0] = 0x47;
    t[1] = (pid >> 8) as u8 & 0x1f;
    t[2] = pid as u8;
    t[3] = 0x10 | (cc & 0x0f);
    let mut at = 4;
    if pcr {
        t[3] |= 0x20;
        // adaptation_field_length 7: the flags byte and a 6-byte PCR.
        t[4..12].copy_from_slice(&[7, 0x10, 0, 0, 0x12, 0x34, 0x7e, 0]);
        at = 12;
    }
    let mut x = u32::from(pid) << 8 | u32::from(cc);
    for b in &mut t[at..] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (x >> 16) as u8 | 0x80;
    }
    t
}

/// A datagram of `n` TS packets of `pid` (the first carrying a PCR), continuity counters
/// from `cc`, as `ffmpeg -f mpegts udp://…` sends them (7 to a datagram).
pub fn ts_datagram(pid: u16, cc: u8, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| ts_packet(pid, cc.wrapping_add(i as u8), i == 0))
        .collect()
}

/// An RTP/MP2T datagram (RFC 2250): version 2, payload type 33, sequence `seq`, the given
/// CSRCs, an extension of `ext_words` 32-bit words if `Some`, then `ts`.
pub fn rtp_mp2t(seq: u16, csrcs: &[u32], ext_words: Option<u16>, ts: &[u8]) -> Vec<u8> {
    let cc = u8::try_from(csrcs.len()).expect("at most 15 CSRCs") & 0x0f;
    let x = if ext_words.is_some() { 0x10 } else { 0 };
    let mut p = vec![0x80 | x | cc, 33];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3003).to_be_bytes()); // 90 kHz timestamp
    p.extend_from_slice(&0x1ee7_c0de_u32.to_be_bytes()); // SSRC
    for c in csrcs {
        p.extend_from_slice(&c.to_be_bytes());
    }
    if let Some(words) = ext_words {
        p.extend_from_slice(&[0xbe, 0xde]);
        p.extend_from_slice(&words.to_be_bytes());
        p.extend(std::iter::repeat_n(0x47, 4 * usize::from(words)));
    }
    p.extend_from_slice(ts);
    p
}

/// Everyday UDP payloads a subscriber's flows carry, none of them IPTV, several at TS
/// sizes with a leading `0x47` where the protocol allows one: (what, datagrams of one flow).
pub fn bystanders() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let filler = |len: usize, seed: u8| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(113).wrapping_add(seed))
            .collect()
    };
    let with = |head: &[u8], len: usize, seed: u8| {
        let mut p = head.to_vec();
        p.extend(filler(len - head.len(), seed));
        p
    };
    // QUIC: a long-header Initial padded to 1200, then short headers whose protected first
    // byte is 0x47 now and then, at TS sizes.
    let quic: Vec<Vec<u8>> = [0xc3u8, 0x47, 0x52, 0x47, 0x5d, 0x47, 0x44, 0x47]
        .iter()
        .enumerate()
        .map(|(i, b0)| {
            let len = if i == 0 {
                1200
            } else {
                [188, 1316, 376][i % 3]
            };
            with(&[*b0, 0x1c, 0x31, 0x17], len, i as u8)
        })
        .collect();
    // DNS over UDP: queries with ids 0x47xx and their answers.
    let dns: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            let flags: &[u8] = if i % 2 == 0 {
                &[0x01, 0x20]
            } else {
                &[0x81, 0x80]
            };
            let mut p = vec![0x47, i];
            p.extend_from_slice(flags);
            p.extend_from_slice(&[0, 1, 0, u8::from(i % 2 == 1), 0, 0, 0, 1]);
            p.extend_from_slice(b"\x05video\x07example\x00\x00\x01\x00\x01");
            p.resize(188, 0);
            p
        })
        .collect();
    // WireGuard: initiation, response, then transport data of TS-like sizes.
    let mut wg = vec![with(&[1, 0, 0, 0], 148, 1), with(&[2, 0, 0, 0], 92, 2)];
    wg.extend((0..6u8).map(|i| with(&[4, 0, 0, 0], 32 + 16 * 80, i)));
    // A game: Source engine queries and replies, and 188-byte state updates.
    let mut game = vec![
        with(b"\xff\xff\xff\xffTSource Engine Query\0", 25, 0),
        with(b"\xff\xff\xff\xffI\x11", 188, 1),
    ];
    game.extend((0..6u8).map(|i| with(&[0x47, 0x80 | i, 0x00, 0x10], 188, i)));
    // RTP voice (PCMU) both ways.
    let voice: Vec<Vec<u8>> = (0..6u8)
        .map(|i| with(&[0x80, 0, 0, i, 0, 0, 0, 160, 9, 9, 9, 9], 172, i))
        .collect();
    vec![
        ("quic", quic),
        ("dns", dns),
        ("wireguard", wg),
        ("game", game),
        ("rtp voice", voice),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerwarden_common::fingerprint::iptv::{Carriage, mpegts};

    // The builders against the shared matcher, without the kernel.
    #[test]
    fn builders_match_the_shared_matcher() {
        for n in 1..=7 {
            assert_eq!(mpegts(&ts_datagram(0x100, 0, n)[..]), Some(Carriage::Bare));
        }
        let ts = ts_datagram(0x100, 0, 7);
        for (csrcs, ext) in [(&[][..], None), (&[1, 2][..], Some(2))] {
            let p = rtp_mp2t(1, csrcs, ext, &ts);
            assert_eq!(mpegts(&p[..]), Some(Carriage::Rtp));
        }
        let mut crafted_runs = 0;
        for (what, flow) in bystanders() {
            let mut run = 0;
            for p in &flow {
                run = if mpegts(&p[..]).is_some() { run + 1 } else { 0 };
                assert!(run < 3, "{what}: three TS-shaped datagrams in a row");
                crafted_runs += usize::from(run > 0);
            }
        }
        // Some bystanders pass as one datagram (a 188-byte QUIC packet starting with
        // 0x47): the run is what keeps them out.
        assert!(crafted_runs > 0, "no bystander is even TS-shaped");
    }
}
