//! Everyday protocols that must never be throttled by mistake (issue 11): SSH, WireGuard,
//! OpenVPN, IPsec, WebRTC (STUN/TURN/DTLS), VoIP (SIP, RTP/RTCP), RDP and common games.
//!
//! Each is confirmed two ways where the protocol allows it: the answer echoes the
//! question's ids (WireGuard's sender index, OpenVPN's session id, IKE's initiator SPI,
//! STUN's transaction id), or both directions show the protocol's own sequencing (RTP's
//! SSRC and sequence numbers, ESP's SPI and sequence, SSH's banner). A confirmed match is
//! final; a one-way match is a provisional label that any P2P payload finding on the flow
//! replaces, and that still keeps the cache and behaviour guesses away.

use peerwarden_common::Label;

use crate::{
    protocols::{
        game::{self, Game},
        remote::{self, Rdp},
        rtc,
        vpn::{self, NatT, Wg},
    },
    verdict::{Hit, PacketMeta},
};

/// A per-direction run of packets sharing an id with a counter moving forward (WireGuard
/// transport data, ESP, RTP).
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    id: u64,
    last: u64,
    n: u8,
}

impl Run {
    /// Adds a packet: a forward step of at most `max_step` with the same id extends the
    /// run; a repeat or a small step back (reordering) leaves it; anything else restarts it.
    fn add(&mut self, id: u64, counter: u64, max_step: u64) {
        if self.n > 0 && id == self.id {
            let step = counter.wrapping_sub(self.last);
            if (1..=max_step).contains(&step) {
                self.n = self.n.saturating_add(1);
                self.last = counter;
                return;
            }
            if self.last.wrapping_sub(counter) <= max_step {
                return;
            }
        }
        *self = Run {
            id,
            last: counter,
            n: 1,
        };
    }
}

/// Per-flow state of the everyday detectors.
#[derive(Debug, Default)]
pub(crate) struct Everyday {
    wg_init: Option<(usize, [u8; 4])>,
    wg_data: [Run; 2],
    ovpn_client: Option<(usize, [u8; 8])>,
    ovpn_server: bool,
    ike_init: Option<(usize, [u8; 8])>,
    esp: [Run; 2],
    stun_req: [Option<[u8; 12]>; 2],
    stun_seen: bool,
    sip: [bool; 2],
    rtp: [Run; 2],
    rtcp: [Option<u32>; 2],
    game_query: [bool; 2],
    ssh: [bool; 2],
    rdp_req: [bool; 2],
    mc_hs: [bool; 2],
}

impl Everyday {
    /// Inspects one UDP datagram going `d` (0 up, 1 down).
    pub(crate) fn udp(&mut self, p: &PacketMeta<'_>, d: usize) -> Option<Hit> {
        let pl = p.payload;
        let on_port = |x: u16| p.key.src.port() == x || p.key.dst.port() == x;
        if let Some(m) = vpn::wireguard(pl) {
            return self.wireguard(m, d);
        }
        if let Some(h) = self.openvpn_udp(pl, d, on_port(1194)) {
            return Some(h);
        }
        if on_port(500)
            && let Some(i) = vpn::ike(pl)
        {
            return Some(self.ike(i, d));
        }
        if on_port(4500)
            && let Some(m) = vpn::nat_t(pl)
        {
            match m {
                NatT::Ike(i) => return Some(self.ike(i, d)),
                NatT::Esp { spi, seq } => {
                    self.esp[d].add(spi as u64, seq as u64, 4);
                    if self.ike_init.is_some() || self.esp[0].n >= 2 && self.esp[1].n >= 2 {
                        return Some(Hit::confirmed(Label::VpnIpsec));
                    }
                    if self.esp[d].n >= 3 {
                        return Some(Hit::one_way(Label::VpnIpsec));
                    }
                }
                NatT::Keepalive => {}
            }
        }
        if let Some(s) = rtc::stun(pl) {
            self.stun_seen = true;
            if s.request {
                self.stun_req[d] = Some(s.txid);
                return Some(Hit::one_way(Label::Webrtc));
            }
            if self.stun_req[1 - d] == Some(s.txid) {
                return Some(Hit::confirmed(Label::Webrtc));
            }
            return Some(Hit::one_way(Label::Webrtc));
        }
        if self.stun_seen && (rtc::dtls(pl) || rtc::turn_channel_data(pl)) {
            return Some(Hit::confirmed(Label::Webrtc));
        }
        if let Some(h) = self.sip(pl, d) {
            return Some(h);
        }
        // Payload type 33 is an MPEG transport stream (RFC 3551): video, the IPTV rule's.
        if let Some(r) = rtc::rtp(pl).filter(|r| r.pt != 33) {
            self.rtp[d].add((r.ssrc as u64) << 8 | r.pt as u64, r.seq as u64 & 0xffff, 3);
            let (a, b) = (self.rtp[0].n, self.rtp[1].n);
            if a >= 2 && b >= 2 || self.rtp[d].n >= 2 && (self.sip[0] || self.sip[1]) {
                return Some(Hit::confirmed(Label::Voip));
            }
            if self.rtp[d].n >= 4 {
                return Some(Hit::one_way(Label::Voip));
            }
        }
        if let Some(ssrc) = rtc::rtcp(pl) {
            self.rtcp[d] = Some(ssrc);
            if self.rtcp[1 - d].is_some() && self.rtp.iter().any(|r| r.n >= 2) {
                return Some(Hit::confirmed(Label::Voip));
            }
        }
        match game::connectionless(pl) {
            Some(Game::Query) => {
                self.game_query[d] = true;
                return Some(Hit::one_way(Label::Game));
            }
            Some(Game::Answer) if self.game_query[1 - d] => {
                return Some(Hit::confirmed(Label::Game));
            }
            Some(Game::Answer) => return Some(Hit::one_way(Label::Game)),
            None => {}
        }
        None
    }

    fn wireguard(&mut self, m: Wg, d: usize) -> Option<Hit> {
        let answers = |me: &Self, receiver: [u8; 4]| {
            me.wg_init.is_some_and(|(id, s)| id != d && s == receiver)
        };
        match m {
            Wg::Init { sender } => {
                self.wg_init = Some((d, sender));
                Some(Hit::one_way(Label::VpnWireguard))
            }
            Wg::Response { receiver, .. } | Wg::Cookie { receiver } => {
                Some(if answers(self, receiver) {
                    Hit::confirmed(Label::VpnWireguard)
                } else {
                    Hit::one_way(Label::VpnWireguard)
                })
            }
            Wg::Data { receiver, counter } => {
                self.wg_data[d].add(u32::from_le_bytes(receiver) as u64, counter, 64);
                if self.wg_data[0].n >= 2 && self.wg_data[1].n >= 2 {
                    return Some(Hit::confirmed(Label::VpnWireguard));
                }
                (self.wg_data[d].n >= 3).then(|| Hit::one_way(Label::VpnWireguard))
            }
        }
    }

    /// OpenVPN control packets. A client reset alone is a label only in its exact
    /// no-tls-auth form (14 bytes, empty ACK array) or on port 1194: one byte of opcode is
    /// too little to name random datagrams.
    fn openvpn_udp(&mut self, pl: &[u8], d: usize, port_1194: bool) -> Option<Hit> {
        let c = vpn::openvpn_control(pl)?;
        self.openvpn(c, pl, d, port_1194 || pl.len() == 14 && pl[9] == 0)
    }

    fn openvpn(
        &mut self,
        c: vpn::OvpnControl,
        pkt: &[u8],
        d: usize,
        plausible: bool,
    ) -> Option<Hit> {
        match c.opcode {
            vpn::op::RESET_CLIENT_V2 | vpn::op::RESET_CLIENT_V3 => {
                self.ovpn_client = Some((d, c.session));
                plausible.then(|| Hit::one_way(Label::VpnOpenvpn))
            }
            vpn::op::RESET_SERVER_V2 => {
                let (cd, sid) = self.ovpn_client?;
                if cd == d {
                    return None;
                }
                if vpn::openvpn_echoes(pkt, &sid) {
                    return Some(Hit::confirmed(Label::VpnOpenvpn));
                }
                // tls-crypt encrypts the ACK array: wait for the client's next control
                // packet under the same session id.
                self.ovpn_server = true;
                Some(Hit::one_way(Label::VpnOpenvpn))
            }
            _ => {
                let (cd, sid) = self.ovpn_client?;
                (self.ovpn_server && cd == d && sid == c.session)
                    .then(|| Hit::confirmed(Label::VpnOpenvpn))
            }
        }
    }

    fn ike(&mut self, i: vpn::Ike, d: usize) -> Hit {
        if !i.response && i.rspi == [0; 8] {
            self.ike_init = Some((d, i.ispi));
            return Hit::one_way(Label::VpnIpsec);
        }
        match self.ike_init {
            Some((id, ispi)) if id != d && ispi == i.ispi => Hit::confirmed(Label::VpnIpsec),
            _ => Hit::one_way(Label::VpnIpsec),
        }
    }

    fn sip(&mut self, head: &[u8], d: usize) -> Option<Hit> {
        if rtc::sip_request(head) {
            self.sip[d] = true;
            return Some(Hit::one_way(Label::Voip));
        }
        if rtc::sip_response(head) {
            return Some(if self.sip[1 - d] {
                Hit::confirmed(Label::Voip)
            } else {
                Hit::one_way(Label::Voip)
            });
        }
        None
    }

    /// Inspects the start of a TCP direction's stream (`head`, reassembled so far).
    pub(crate) fn tcp_head(&mut self, head: &[u8], d: usize) -> Option<Hit> {
        if remote::ssh_banner(head) {
            self.ssh[d] = true;
            return Some(if self.ssh[1 - d] {
                Hit::confirmed(Label::Ssh)
            } else {
                Hit::one_way(Label::Ssh)
            });
        }
        match remote::rdp(head) {
            Some(Rdp::Request) => {
                self.rdp_req[d] = true;
                return Some(Hit::one_way(Label::Rdp));
            }
            Some(Rdp::Confirm) if self.rdp_req[1 - d] => return Some(Hit::confirmed(Label::Rdp)),
            _ => {}
        }
        if let Some((c, pkt)) = vpn::openvpn_tcp(head)
            && let Some(h) = self.openvpn(c, pkt, d, true)
        {
            return Some(h);
        }
        if game::minecraft_handshake(head) {
            self.mc_hs[d] = true;
            return Some(Hit::one_way(Label::Game));
        }
        if self.mc_hs[1 - d] && game::minecraft_answer(head) {
            return Some(Hit::confirmed(Label::Game));
        }
        self.sip(head, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        flow::{Direction, FlowKey},
        protocols::{rtc::tests as r, vpn::tests as v},
    };

    fn meta<'a>(src: u16, dst: u16, dir: Direction, payload: &'a [u8]) -> PacketMeta<'a> {
        PacketMeta {
            ts_ns: 0,
            key: FlowKey {
                proto: 17,
                src: ([100, 64, 1, 10], src).into(),
                dst: ([198, 51, 100, 7], dst).into(),
            },
            dir,
            payload,
            tcp_flags: 0,
            tcp_seq: 0,
        }
    }

    fn run(pkts: &[(usize, Vec<u8>)], sport: u16, dport: u16) -> Vec<Option<(Label, bool)>> {
        let mut e = Everyday::default();
        pkts.iter()
            .map(|(d, p)| {
                let dir = if *d == 0 {
                    Direction::Up
                } else {
                    Direction::Down
                };
                e.udp(&meta(sport, dport, dir, p), *d)
                    .map(|h| (h.verdict.label, h.fin))
            })
            .collect()
    }

    #[test]
    fn wireguard_pairs_the_indices() {
        let got = run(
            &[
                (0, v::wg_init([1, 2, 3, 4])),
                (1, v::wg_response([9; 4], [1, 2, 3, 4])),
            ],
            40000,
            51820,
        );
        assert_eq!(
            got,
            [
                Some((Label::VpnWireguard, false)),
                Some((Label::VpnWireguard, true))
            ]
        );
        // A response answering another initiation is not a confirmation.
        let got = run(
            &[
                (0, v::wg_init([1, 2, 3, 4])),
                (1, v::wg_response([9; 4], [7; 4])),
            ],
            40000,
            51820,
        );
        assert_eq!(got[1], Some((Label::VpnWireguard, false)));
        // Mid-flow: transport data both ways with steady indices and counters.
        let pkts: Vec<(usize, Vec<u8>)> = (0..4u64)
            .map(|i| {
                (
                    (i % 2) as usize,
                    v::wg_data([(i % 2) as u8; 4], 100 + i, 128),
                )
            })
            .collect();
        assert_eq!(
            run(&pkts, 40000, 51820)[3],
            Some((Label::VpnWireguard, true))
        );
    }

    #[test]
    fn openvpn_ipsec_stun_rtp_games() {
        let c = v::ovpn_reset(7, [5; 8], None);
        let s = v::ovpn_reset(8, [6; 8], Some([5; 8]));
        assert_eq!(
            run(&[(0, c), (1, s)], 40000, 1194)[1],
            Some((Label::VpnOpenvpn, true))
        );
        // An opcode byte alone on a random port and size says nothing.
        let mut junk = vec![0x38u8; 100];
        junk[1] = 1;
        assert_eq!(run(&[(0, junk)], 40000, 40001)[0], None);
        let ike = [
            (0, v::ike_sa_init([3; 8], [0; 8], false)),
            (1, v::ike_sa_init([3; 8], [4; 8], true)),
        ];
        assert_eq!(run(&ike, 500, 500)[1], Some((Label::VpnIpsec, true)));
        assert_eq!(
            run(&ike, 40000, 40001),
            [None, None],
            "IKE only on 500/4500"
        );
        let stun = [
            (0, r::stun_msg(1, [2; 12], 2)),
            (1, r::stun_msg(0x0101, [2; 12], 3)),
        ];
        assert_eq!(run(&stun, 40000, 3478)[1], Some((Label::Webrtc, true)));
        let rtp: Vec<(usize, Vec<u8>)> = (0..4u16)
            .map(|i| {
                (
                    (i % 2) as usize,
                    r::rtp_pkt(0x1000 + (i % 2) as u32, 10 + i / 2, 172),
                )
            })
            .collect();
        assert_eq!(run(&rtp, 40000, 40002)[3], Some((Label::Voip, true)));
        // RTP-shaped datagrams whose SSRC changes every time are not a stream.
        let noise: Vec<(usize, Vec<u8>)> = (0..6u16)
            .map(|i| ((i % 2) as usize, r::rtp_pkt(i as u32, i, 172)))
            .collect();
        assert!(run(&noise, 40000, 40002).iter().all(|h| h.is_none()));
        let game = [
            (0, b"\xff\xff\xff\xffTSource Engine Query\0".to_vec()),
            (1, b"\xff\xff\xff\xffA\x01\x02\x03\x04".to_vec()),
        ];
        assert_eq!(run(&game, 40000, 27015)[1], Some((Label::Game, true)));
    }

    #[test]
    fn tcp_heads() {
        let mut e = Everyday::default();
        assert_eq!(
            e.tcp_head(b"SSH-2.0-OpenSSH_9.6\r\n", 1).map(|h| h.fin),
            Some(false)
        );
        assert_eq!(
            e.tcp_head(b"SSH-2.0-PuTTY_0.80\r\n", 0)
                .map(|h| (h.verdict.label, h.fin)),
            Some((Label::Ssh, true))
        );
        let mut e = Everyday::default();
        let cr = crate::protocols::remote::tests::tpkt(0xe0, b"Cookie: mstshash=a\r\n");
        let cc = crate::protocols::remote::tests::tpkt(0xd0, &[]);
        assert_eq!(e.tcp_head(&cr, 0).map(|h| h.fin), Some(false));
        assert_eq!(
            e.tcp_head(&cc, 1).map(|h| (h.verdict.label, h.fin)),
            Some((Label::Rdp, true))
        );
        let mut e = Everyday::default();
        let hs = crate::protocols::game::tests::mc_handshake("mc.example.org");
        assert_eq!(
            e.tcp_head(&hs, 0).map(|h| h.verdict.label),
            Some(Label::Game)
        );
        assert_eq!(
            e.tcp_head(b"\x30\x00\x2e{\"version\":1}", 1).map(|h| h.fin),
            Some(true)
        );
    }
}
