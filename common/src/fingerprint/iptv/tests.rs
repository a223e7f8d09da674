extern crate std;

use std::{vec, vec::Vec};

use super::*;

/// A TS packet: PID, continuity counter, and an adaptation field of `af` bytes (its
/// length byte included) when `af > 0` (184: adaptation only); the rest filled with bytes that are not `0x47`.
fn ts(pid: u16, cc: u8, af: usize) -> [u8; TS_PACKET] {
    let mut t = [0u8; TS_PACKET];
    t[0] = SYNC;
    t[1] = 0x40 | (pid >> 8) as u8;
    t[2] = pid as u8;
    t[3] = match af {
        0 => 0x10,
        184 => 0x20,
        _ => 0x30,
    } | (cc & 0x0f);
    if af > 0 {
        t[4] = (af - 1) as u8;
        t[5] = 0x10; // PCR flag
    }
    for (i, b) in t.iter_mut().enumerate().skip(4 + af) {
        *b = (i as u8).wrapping_mul(37) | 0x80;
    }
    t
}

/// `n` TS packets of one video PID, the first with an adaptation field.
fn bare(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| ts(0x100, i as u8, if i == 0 { 8 } else { 0 }))
        .collect()
}

/// An RTP/MP2T datagram: `cc` CSRCs, an extension of `ext` words if `Some`, `n` TS packets.
fn rtp(cc: u8, ext: Option<u16>, n: usize) -> Vec<u8> {
    let mut p = vec![
        0x80 | cc,
        RTP_MP2T,
        0x12,
        0x34,
        0,
        1,
        0x5f,
        0x90,
        0xde,
        0xad,
        0xbe,
        0xef,
    ];
    if ext.is_some() {
        p[0] |= 0x10;
    }
    for i in 0..cc {
        p.extend_from_slice(&[0, 0, 0, i + 1]);
    }
    if let Some(words) = ext {
        p.extend_from_slice(&[0xbe, 0xde]);
        p.extend_from_slice(&words.to_be_bytes());
        p.extend(std::iter::repeat_n(0x47, 4 * words as usize));
    }
    p.extend(bare(n));
    p
}

#[test]
fn bare_transport_streams_of_one_to_seven_packets() {
    for n in 1..=TS_MAX_PACKETS {
        assert_eq!(mpegts(&bare(n)[..]), Some(Carriage::Bare), "{n} packets");
    }
    assert_eq!(mpegts(&bare(8)[..]), None, "more than fits a frame");
    // PAT, null packets and an adaptation-only packet (a PCR carrier) are all fine.
    let mut mix = ts(0x0000, 0, 0).to_vec();
    mix.extend(ts(0x1fff, 0, 0));
    mix.extend(ts(0x0101, 3, TS_PACKET - 4));
    assert_eq!(mpegts(&mix[..]), Some(Carriage::Bare));
}

#[test]
fn rtp_mp2t_with_csrcs_extension_and_padding() {
    assert_eq!(mpegts(&rtp(0, None, 7)[..]), Some(Carriage::Rtp));
    assert_eq!(mpegts(&rtp(2, None, 7)[..]), Some(Carriage::Rtp));
    assert_eq!(mpegts(&rtp(15, Some(3), 1)[..]), Some(Carriage::Rtp));
    assert_eq!(mpegts(&rtp(1, Some(0), 4)[..]), Some(Carriage::Rtp));
    let mut padded = rtp(0, None, 2);
    padded[0] |= 0x20;
    padded.extend_from_slice(&[0, 0, 0, 4]);
    assert_eq!(mpegts(&padded[..]), Some(Carriage::Rtp));
    let mut zero_pad = padded.clone();
    *zero_pad.last_mut().expect("padded") = 0;
    assert_eq!(mpegts(&zero_pad[..]), None, "a padding count of 0");
    let mut marked = rtp(0, None, 7);
    marked[1] |= 0x80; // the marker bit leaves the payload type alone
    assert_eq!(mpegts(&marked[..]), Some(Carriage::Rtp));
}

#[test]
fn rtp_of_other_payload_types_or_versions_is_not_iptv() {
    let mut p = rtp(0, None, 7);
    p[1] = 96; // a dynamic type (H.264 and friends): not MP2T
    assert_eq!(mpegts(&p[..]), None);
    p[1] = 0; // PCMU voice, same length
    assert_eq!(mpegts(&p[..]), None);
    let mut v1 = rtp(0, None, 7);
    v1[0] = 0x40;
    assert_eq!(mpegts(&v1[..]), None, "version 1");
    // The CSRC count or the extension length point elsewhere than the TS start.
    let mut cc = rtp(2, None, 3);
    cc[0] = 0x83;
    assert_eq!(mpegts(&cc[..]), None);
    let mut ext = rtp(0, Some(2), 3);
    ext[15] = 3;
    assert_eq!(mpegts(&ext[..]), None);
    let mut huge = rtp(0, Some(2), 3);
    huge[14..16].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(mpegts(&huge[..]), None, "an extension past the end");
}

#[test]
fn broken_headers_truncation_and_stray_sync_bytes() {
    let good = bare(7);
    let at = |i: usize| i * TS_PACKET;
    let mut lost_sync = good.clone();
    lost_sync[at(6)] = 0x46;
    assert_eq!(
        mpegts(&lost_sync[..]),
        None,
        "the seventh packet's sync byte"
    );
    let mut tei = good.clone();
    tei[at(3) + 1] |= 0x80;
    assert_eq!(mpegts(&tei[..]), None, "transport error indicator");
    let mut reserved_pid = good.clone();
    reserved_pid[at(2) + 1] = 0x40;
    reserved_pid[at(2) + 2] = 0x07;
    assert_eq!(mpegts(&reserved_pid[..]), None, "PID 7 is reserved");
    let mut afc0 = good.clone();
    afc0[at(1) + 3] &= 0x0f;
    assert_eq!(mpegts(&afc0[..]), None, "adaptation_field_control 00");
    let mut af_long = good.clone();
    af_long[3] = 0x30;
    af_long[4] = 183;
    assert_eq!(
        mpegts(&af_long[..]),
        None,
        "an adaptation field leaving no room"
    );
    let mut af_only = good.clone();
    af_only[3] = 0x20;
    assert_eq!(
        mpegts(&af_only[..]),
        None,
        "adaptation only, but 7 bytes long"
    );
    for cut in [1, 4, 187, 189, 1315] {
        assert_eq!(mpegts(&good[..cut]), None, "cut to {cut} bytes");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(mpegts(&longer[..]), None, "one byte too many");
    assert_eq!(mpegts(&rtp(0, None, 7)[..12 + 1000]), None);
    assert_eq!(mpegts(&[][..]), None);
    assert_eq!(mpegts(&[SYNC][..]), None);
    // One 0x47 in an otherwise ordinary datagram, at the start and at 188.
    let mut stray = vec![0u8; 376];
    stray[0] = SYNC;
    assert_eq!(mpegts(&stray[..]), None);
    stray[188] = SYNC;
    assert_eq!(
        mpegts(&stray[..]),
        None,
        "sync bytes but no plausible headers"
    );
}

/// Payloads of everyday UDP a subscriber's flows carry, none of them TS.
fn bystanders() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    // QUIC long header (Initial, v1), padded to 1200 bytes.
    let mut initial = vec![0xc3, 0, 0, 0, 1, 8];
    initial.resize(1200, 0x5a);
    v.push(("quic initial", initial));
    // QUIC short headers that start with 0x47 (1 in 32 after header protection), at TS
    // sizes of more than one packet, with a connection id whose bits pass as a TS header.
    for len in [376, 1316] {
        v.push(("quic short 0x47", quic_short(0x47, len)));
    }
    // DNS: a query (id 0x4711) and a response padded to 188 bytes.
    let mut q = vec![0x47, 0x11, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    q.resize(188, 0);
    v.push(("dns query", q.clone()));
    let mut r = q;
    r[2] = 0x81;
    r[3] = 0x80;
    v.push(("dns response", r));
    // WireGuard: an initiation (148 bytes), a transport data message of 1316 bytes.
    let mut init = vec![1, 0, 0, 0];
    init.resize(148, 0x47);
    v.push(("wireguard initiation", init));
    let mut data = vec![4, 0, 0, 0];
    data.resize(1316, 0x47);
    v.push(("wireguard data", data));
    // Games: a Source engine query, a 188-byte id Tech 3 status response.
    let mut a2s = b"\xff\xff\xff\xffTSource Engine Query\0".to_vec();
    a2s.resize(188, 0);
    v.push(("a2s query", a2s));
    let mut q3 = b"\xff\xff\xff\xffstatusResponse\n".to_vec();
    q3.resize(376, b'G');
    v.push(("q3 status", q3));
    // RTP voice (PCMU, 160 samples) and an RTCP sender report.
    let mut voice = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
    voice.resize(172, 0xff);
    v.push(("rtp pcmu", voice));
    let mut sr = vec![0x80, 200, 0, 6];
    sr.resize(28, 0);
    v.push(("rtcp sr", sr));
    // Plain text that happens to start with 'G' (0x47) at a TS size.
    let mut get = b"GET / HTTP/1.1\r\n".to_vec();
    get.resize(188, b' ');
    v.push(("text 'G'", get));
    v
}

/// A QUIC short-header packet of `len` bytes with first byte `b0` and a connection id
/// that reads as a TS header (TEI clear, PID 0x1c31, payload only).
fn quic_short(b0: u8, len: usize) -> Vec<u8> {
    let mut p = vec![b0, 0x1c, 0x31, 0x17];
    p.extend((0..len - 4).map(|i| (i * 131 % 251) as u8));
    p
}

#[test]
fn a_quic_flow_does_not_make_a_run() {
    // One 188-byte short packet starting with 0x47 passes as a datagram: the weak
    // evidence the run is for.
    assert_eq!(mpegts(&quic_short(0x47, 188)[..]), Some(Carriage::Bare));
    // A QUIC flow's first bytes change packet by packet (header protection masks the low
    // five bits), so a run of three needs 0x47 three times in a row.
    let mut run = 0;
    for (i, b0) in [0x47u8, 0x52, 0x47, 0x4d, 0x47, 0x41, 0x5e]
        .iter()
        .enumerate()
    {
        let (r, hit) = run_step(run, mpegts(&quic_short(*b0, 188)[..]).is_some());
        run = r;
        assert!(!hit, "labelled at packet {i}");
    }
}

#[test]
fn everyday_udp_is_not_iptv() {
    for (what, p) in bystanders() {
        assert_eq!(mpegts(&p[..]), None, "{what}");
    }
}

#[test]
fn a_run_of_three_datagrams_labels_and_a_miss_resets_it() {
    assert_eq!(run_step(0, true), (1, false));
    assert_eq!(run_step(1, true), (2, false));
    assert_eq!(run_step(2, true), (3, true));
    assert_eq!(run_step(3, true), (3, true));
    assert_eq!(run_step(2, false), (0, false));
    // A flow of one crafted datagram among others never gets there.
    let mut run = 0;
    let mut labelled = false;
    for (i, p) in [bare(7), bare(3), vec![0u8; 100], bare(1), vec![1u8; 40]]
        .iter()
        .enumerate()
    {
        let (r, hit) = run_step(run, mpegts(&p[..]).is_some());
        run = r;
        labelled |= hit;
        assert!(!labelled, "labelled at datagram {i}");
    }
}
