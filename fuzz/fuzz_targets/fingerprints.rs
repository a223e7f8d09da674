//! Every protocol matcher on arbitrary payload bytes: the kernel's fixed-offset fingerprints
//! (common/src/fingerprint.rs, on the whole payload and on the sample the kernel copies) and
//! the deep classifier's detectors (classifier/src/protocols). None may panic; the kernel's
//! matchers must say the same on the kernel's sample as the kernel would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerwarden_classifier::protocols::{
    bittorrent, dns, edonkey, game, gnutella, http, p2ptv, peercast, quic, remote, rtc,
    streaming, tls, vpn,
};
use peerwarden_common::fingerprint::{self, SAMPLE_LEN};

fuzz_target!(|p: &[u8]| {
    // The kernel copies at most SAMPLE_LEN bytes of a payload and runs the same code on them.
    let sample = &p[..p.len().min(SAMPLE_LEN)];
    for q in [p, sample] {
        let _ = fingerprint::tcp(q);
        let _ = fingerprint::udp(q);
        let _ = fingerprint::bittorrent_handshake(q);
        let _ = fingerprint::http_tracker(q);
        let _ = fingerprint::udp_tracker_connect(q);
        let _ = fingerprint::udp_tracker_announce(q);
        let _ = fingerprint::dht_krpc(q);
        let _ = fingerprint::utp_syn(q);
        if let Some(id) = fingerprint::utp_header(q) {
            let _ = fingerprint::utp_pair(id, id.wrapping_add(1));
        }
    }
    // The handshake is a 20-byte prefix: the sample must see it whenever the payload has it.
    assert_eq!(
        fingerprint::bittorrent_handshake(p),
        fingerprint::bittorrent_handshake(sample)
    );

    let _ = bittorrent::framing(p);
    let _ = bittorrent::mse_key_size(p.len());
    let _ = bittorrent::looks_random(p);
    let _ = bittorrent::lsd(p);
    let _ = bittorrent::udp_tracker_announce(p);
    let _ = bittorrent::dht_any_order(p);
    let _ = bittorrent::structured_start(p);
    let fields: Vec<(u16, u32, u16, u16)> = p.chunks(20).filter_map(bittorrent::utp_fields).collect();
    let _ = bittorrent::utp_one_way(&fields);
    // The everyday protocols' detectors (issue 11).
    let _ = game::connectionless(p);
    let _ = game::minecraft_handshake(p);
    let _ = game::minecraft_answer(p);
    let _ = remote::ssh_banner(p);
    let _ = remote::ssh_banner_prefix(p);
    let _ = remote::rdp(p);
    let _ = rtc::stun(p);
    let _ = rtc::turn_channel_data(p);
    let _ = rtc::sip_request(p);
    let _ = rtc::sip_response(p);
    let _ = rtc::rtp(p);
    let _ = rtc::rtcp(p);
    let _ = vpn::wireguard(p);
    let _ = vpn::openvpn_control(p);
    if p.len() >= 8 {
        let client: [u8; 8] = p[..8].try_into().unwrap_or_default();
        let _ = vpn::openvpn_echoes(&p[8..], &client);
    }
    let _ = vpn::openvpn_tcp(p);
    let _ = vpn::ike(p);
    let _ = vpn::nat_t(p);
    let _ = dns::udp(p);
    let _ = edonkey::tcp(p);
    let _ = edonkey::udp(p);
    let _ = gnutella::tcp(p);
    let _ = gnutella::udp(p);
    let _ = http::starts_request(p);
    let _ = http::starts_response(p);
    if let Some(r) = http::request(p) {
        let _ = http::request_label(&r);
    }
    if let Some(r) = http::response(p) {
        let _ = http::response_label(&r);
    }
    if let Some((needle, hay)) = p.split_first() {
        let n = (*needle as usize).min(hay.len());
        let _ = http::find(&hay[n..], &hay[..n]);
    }
    let _ = p2ptv::pplive_head(p);
    let _ = p2ptv::tvants(p);
    if p.len() >= 4 {
        let sport = u16::from_be_bytes([p[0], p[1]]);
        let dport = u16::from_be_bytes([p[2], p[3]]);
        let _ = p2ptv::ppstream(&p[4..], sport, dport);
    }
    let _ = peercast::pcp(p);
    let _ = quic::looks_like(p);
    let half = p.len() / 2;
    let _ = streaming::rtmp(&p[..half], &p[half..]);
    let _ = streaming::rtsp(p);
    let _ = tls::is_handshake_record(p);
    let _ = tls::is_record(p);
});
