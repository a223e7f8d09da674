//! One flow's inspection: the state detectors keep between packets, and the order they run
//! in. The kernel's fixed-offset fingerprints run first, then the deep detectors.

use peerwarden_common::{
    Confidence, Label,
    fingerprint::{self, SAMPLE_LEN, iptv},
};

use crate::{
    everyday::Everyday,
    flow::Direction,
    hosts::{HostList, HostMatch},
    packet::TCP,
    protocols::{bittorrent, dns, edonkey, gnutella, http, p2ptv, peercast, quic, streaming, tls},
    stream::{Push, Stream},
    verdict::{Hit, PacketMeta, Verdict},
};

/// The peer-wire handshake's fixed start: length 19 and the protocol string.
const HANDSHAKE: &[u8] = b"\x13BitTorrent protocol";
/// The whole handshake: that, 8 reserved bytes, the info hash and the peer id.
const HANDSHAKE_LEN: usize = 68;

/// Ports whose services encrypt from the first byte, so a random-looking exchange there
/// is not taken for MSE (SSH, HTTPS, IMAPS, POP3S, OpenVPN, RDP, XMPP over TLS, Spotify's
/// access points, Tor, Ethereum's RLPx, ...).
const ENCRYPTED_SERVICE_PORTS: &[u16] = &[
    22, 443, 465, 563, 853, 990, 993, 995, 1194, 1723, 3389, 4070, 5061, 5223, 5228, 8443, 9001,
    30303,
];

/// Ports of services that are neither BitTorrent-like P2P nor video and that talk to many
/// peers on high ports (SIP, STUN/TURN, Dropbox LAN sync, Ethereum devp2p, SSDP, mDNS,
/// LLMNR): their undecided flows get no cache or behaviour fallback.
pub(crate) const NON_P2P_SERVICE_PORTS: &[u16] =
    &[1900, 3478, 5060, 5061, 5349, 5353, 5355, 17500, 30303];

/// Where a direction's stream showed the peer-wire handshake.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hs {
    #[default]
    No,
    /// After other bytes (a prefix), or in a packet off the reassembled head.
    Later,
    /// At the stream's first byte.
    Start,
}

/// Per-flow detector state, dropped when inspection ends.
#[derive(Debug, Default)]
pub(crate) struct Inspector {
    streams: [Stream; 2],
    /// Payload packets seen per direction.
    seen: [u8; 2],
    /// The direction that sent the first payload.
    first_dir: Option<Direction>,
    /// Size and randomness of each direction's first payload (MSE shape).
    first: [Option<(usize, bool)>; 2],
    /// uTP connection ids per direction (the kernel's pairing rule) and sequence runs.
    utp_id: [Option<u16>; 2],
    utp_seqs: [Vec<(u16, u32, u16, u16)>; 2],
    /// Peer-wire framing: packets that framed, messages, a telling message seen.
    bt_packets: u8,
    bt_messages: u32,
    bt_telling: bool,
    /// eDonkey framing seen per direction, and UDP datagrams of eDonkey/Kad shape.
    ed_framed: [bool; 2],
    /// An eDonkey hello (or hello answer) per direction.
    ed_hello: [bool; 2],
    ed_udp: u8,
    /// Obfuscated Kad: requests answered in the grammar's sizes.
    kad: edonkey::KadPairs,
    /// P2P TV: a PPLive header seen per direction; PPStream datagrams seen.
    pplive: [bool; 2],
    ppstream: u8,
    quic: Option<Box<quic::Initials>>,
    quic_client: Option<Direction>,
    /// Something that is neither P2P nor video was recognised (STUN, SSH, ...): no cache or
    /// behaviour fallback for this flow.
    pub known_other: bool,
    /// The direction of the connection's SYN, if it was seen.
    syn_dir: Option<Direction>,
    /// The flow named its server (a TLS or QUIC SNI, an HTTP Host): a DNS answer for the
    /// address never labels it (`crate::dns_hints`).
    pub named: bool,
    /// A hello is being read (TLS records or QUIC Initials so far incomplete): its name
    /// may still come.
    pub name_pending: bool,
    /// The hello offered ECH: its SNI (lower case), which is either the service's real name
    /// (GREASE ECH) or its ECH front's public name (real ECH).
    pub ech_outer: Option<String>,
    /// The everyday protocols' state (SSH, VPNs, WebRTC, VoIP, RDP, games).
    everyday: Everyday,
    /// Peer-wire handshake evidence per direction, and how far each head was searched.
    hs: [Hs; 2],
    searched: [usize; 2],
    /// A direction framed as peer-wire messages (after its handshake, or mid-flow).
    framed: [bool; 2],
    /// Peer-wire framing counts per direction (packets that framed).
    bt_dir_packets: [u8; 2],
    /// A direction's stream head was decided by `stream_start` (TLS hello read, ...).
    head_done: [bool; 2],
    /// DHT queries and answers seen per direction.
    dht_q: [bool; 2],
    dht_r: [bool; 2],
    /// A uTP SYN: its direction, connection id and sequence number.
    utp_syn: Option<(usize, u16, u16)>,
    /// MPEG-TS datagrams in a row (the kernel's IPTV rule, both tiers).
    ts_run: u8,
}

impl Inspector {
    /// Notes a payload-less TCP segment: a SYN (without ACK) marks the connection's start.
    pub(crate) fn tcp_control(&mut self, p: &PacketMeta<'_>) {
        if p.tcp_flags & 0x12 == 0x02 && self.seen == [0, 0] {
            self.syn_dir = Some(p.dir);
        }
        if p.tcp_flags & 0x02 != 0 {
            // Data starts one past the SYN's sequence number.
            self.streams[p.dir.index()].start_at(p.tcp_seq.wrapping_add(1));
        }
    }

    /// Inspects one payload packet. The best finding, if any.
    pub(crate) fn inspect(
        &mut self,
        p: &PacketMeta<'_>,
        hosts: &HostList,
        current: Label,
        kernel_only: bool,
    ) -> Option<Hit> {
        let d = p.dir.index();
        self.seen[d] = self.seen[d].saturating_add(1);
        let first_in_dir = self.seen[d] == 1;
        if self.first_dir.is_none() {
            self.first_dir = Some(p.dir);
        }
        let sample = &p.payload[..p.payload.len().min(SAMPLE_LEN)];
        if p.key.proto == TCP {
            if kernel_only {
                // The kernel reads TCP fingerprints in a flow's first two payload packets
                // only (its fixed offsets cannot tell a stream's start from a later
                // segment that happens to begin with the same bytes).
                if self.seen[0] as u16 + self.seen[1] as u16 > 2 {
                    return None;
                }
                return fingerprint::tcp(sample).map(Hit::payload);
            }
            // The handshake fingerprint is the stream's business here (it must stand at
            // the stream's start, or be answered); the tracker one is the packet's.
            if fingerprint::http_tracker(sample) {
                return Some(Hit::payload(Label::BittorrentTracker));
            }
            self.tcp(p, hosts, first_in_dir, current)
        } else {
            if let Some(l) = fingerprint::udp(sample) {
                // The kernel's announce rule (action 1 at 8, an event at 80) also matches
                // DNS-shaped datagrams (DNScrypt certificate queries on UDP/443: 234 flows
                // of the corpus); the deep tier confirms an announce by its port, num_want
                // and peer id before believing it.
                let loose_announce = l == Label::BittorrentTracker
                    && !fingerprint::udp_tracker_connect(sample)
                    && !bittorrent::udp_tracker_announce(p.payload);
                if kernel_only {
                    return Some(Hit::payload(l));
                }
                match l {
                    Label::BittorrentDht => return Some(self.dht(p.payload, d)),
                    Label::BittorrentUtp => {
                        if let Some((id, _, seq, _)) = bittorrent::utp_fields(p.payload) {
                            self.utp_syn = Some((d, id, seq));
                        }
                        return Some(Hit::one_way(l));
                    }
                    _ if !loose_announce => return Some(Hit::payload(l)),
                    _ => {}
                }
            }
            // IPTV, the kernel's rule in both tiers: before the everyday protocols, whose
            // RTP rule would take a one-way RTP stream for voice.
            let (run, hit) = iptv::run_step(self.ts_run, iptv::mpegts(p.payload).is_some());
            self.ts_run = run;
            if hit {
                return Some(Hit::payload(Label::Iptv));
            }
            if kernel_only {
                return self.utp_pairing(p.payload, d);
            }
            self.udp(p, hosts, first_in_dir)
        }
    }

    fn tcp(
        &mut self,
        p: &PacketMeta<'_>,
        hosts: &HostList,
        first_in_dir: bool,
        current: Label,
    ) -> Option<Hit> {
        let d = p.dir.index();
        let pl = p.payload;
        let push = self.streams[d].push(p.tcp_seq, pl);
        let grew = push.grew;
        if let Some(h) = self.handshake(d, pl, &push) {
            return Some(h);
        }
        // The direction's reassembled head if this packet extended it, else the packet.
        let head: &[u8] = if grew { &self.streams[d].buf } else { pl };
        if grew || first_in_dir {
            if let Some(h) = self.everyday.tcp_head(head, d) {
                self.known_other = true;
                return Some(h);
            }
            if !self.head_done[d] {
                let hit = stream_start(head, hosts, &mut self.named);
                if self.named && self.ech_outer.is_none() && tls::records_offer_ech(head) {
                    self.ech_outer = tls_sni_lower(head);
                }
                self.name_pending = hit
                    .as_ref()
                    .is_some_and(|h| !h.fin && h.verdict.label == Label::Tls);
                if let Some(h) = hit {
                    self.head_done[d] = h.fin;
                    return Some(h);
                }
            }
        }
        // Any packet can start an HTTP message; a head split over segments is read whole.
        let mut best = if grew && head.len() > pl.len() {
            http_packet(head, hosts, &mut self.named)
        } else {
            None
        };
        if best.as_ref().is_none_or(|h| !h.fin)
            && let Some(h) = http_packet(pl, hosts, &mut self.named)
            && (h.fin || best.is_none())
        {
            best = Some(h);
        }
        if best.is_some() {
            return best;
        }
        if streaming::rtsp(pl) {
            return Some(Hit::payload(Label::Rtsp));
        }
        // A flow picked up mid-way: TLS records (application data, alerts) at a packet start.
        if current == Label::Unknown && tls::is_record(pl) && pl[0] != 22 {
            return Some(Hit::tentative(Label::Tls));
        }
        let (up, down) = (&self.streams[0].buf, &self.streams[1].buf);
        let client_dir = self.first_dir.unwrap_or(Direction::Up).index();
        let (c, s) = if client_dir == 0 {
            (up, down)
        } else {
            (down, up)
        };
        if streaming::rtmp(c, s) {
            return Some(Hit::payload(Label::Rtmp));
        }
        if first_in_dir && let Some(m) = edonkey::tcp(pl) {
            // A hello labels the flow at once, provisionally; answered (the other direction's
            // first payload frames as eDonkey too), it is confirmed both ways, and its
            // endpoints teach the cache: a client's port seen speaking plain eDonkey makes
            // its later obfuscated connections eDonkey.
            self.ed_framed[d] = true;
            self.ed_hello[d] |= m == edonkey::Tcp::Hello;
            let o = 1 - d;
            if self.ed_hello[d] && self.ed_framed[o] || self.ed_hello[o] && self.ed_framed[d] {
                return Some(Hit::confirmed(Label::Edonkey));
            }
            if self.ed_hello[d] {
                return Some(Hit::one_way(Label::Edonkey));
            }
            if self.ed_framed[o] {
                return Some(Hit::payload(Label::Edonkey));
            }
        }
        // Mid-flow peer wire: two packets that frame as messages, three messages, one of a
        // telling size. Not in a flow that opened with an eDonkey hello, whose file data
        // may frame by chance.
        if let Some(f) = bittorrent::framing(pl)
            && !self.ed_hello.contains(&true)
        {
            self.bt_packets = self.bt_packets.saturating_add(1);
            self.bt_dir_packets[d] = self.bt_dir_packets[d].saturating_add(1);
            self.bt_messages += f.messages;
            self.bt_telling |= f.telling;
            self.framed[d] = true;
            if self.bt_packets >= 2 && self.bt_messages >= 3 && self.bt_telling {
                return Some(if self.framed[0] && self.framed[1] {
                    Hit::confirmed(Label::Bittorrent)
                } else {
                    Hit::one_way(Label::Bittorrent)
                });
            }
        }
        if first_in_dir {
            let random = bittorrent::looks_random(pl) && !bittorrent::structured_start(pl);
            self.first[d] = Some((pl.len(), random));
            if current == Label::Unknown
                && !self.known_other
                && let Some(h) = self.mse(p)
            {
                return Some(h);
            }
        }
        None
    }

    /// MSE/PE: the initiator's first payload is a DH key plus padding (96..=608 random
    /// bytes), and the responder's answer is the same shape. Decided when the second of the
    /// two first payloads arrives.
    fn mse(&self, p: &PacketMeta<'_>) -> Option<Hit> {
        // Only from the connection's start: mid-flow, "first payloads" are arbitrary.
        let init = self.first_dir?;
        if self.syn_dir != Some(init) {
            return None;
        }
        let (Some((li, ri)), Some((lr, rr))) =
            (self.first[init.index()], self.first[1 - init.index()])
        else {
            return None;
        };
        let server_port = p
            .key
            .sender(match init {
                Direction::Up => Direction::Down,
                Direction::Down => Direction::Up,
            })
            .port();
        let client_port = p.key.sender(init).port();
        if ENCRYPTED_SERVICE_PORTS.contains(&server_port)
            || ENCRYPTED_SERVICE_PORTS.contains(&client_port)
        {
            return None;
        }
        if server_port < 1024 {
            return None;
        }
        (bittorrent::mse_key_size(li) && ri && bittorrent::mse_key_size(lr) && rr)
            .then(|| Hit::payload(Label::BittorrentEncrypted))
    }

    /// The kernel's uTP rule: uTP-shaped headers both ways whose connection ids pair up.
    fn utp_pairing(&mut self, pl: &[u8], d: usize) -> Option<Hit> {
        let id = fingerprint::utp_header(pl)?;
        if self.utp_id[d].is_none() {
            self.utp_id[d] = Some(id);
        }
        match (self.utp_id[0], self.utp_id[1]) {
            (Some(a), Some(b)) if fingerprint::utp_pair(a, b) => {
                Some(Hit::confirmed(Label::BittorrentUtp))
            }
            _ => None,
        }
    }

    fn udp(&mut self, p: &PacketMeta<'_>, hosts: &HostList, first_in_dir: bool) -> Option<Hit> {
        let d = p.dir.index();
        let pl = p.payload;
        // Everyday protocols first: a confirmed one is final; a one-way one stands unless a
        // P2P detector below finds something on this packet.
        let everyday = self.everyday.udp(p, d);
        if let Some(h) = everyday.as_ref() {
            self.known_other = true;
            if h.fin {
                return everyday;
            }
        }
        // uTP: the kernel's pairing of connection ids across directions, a SYN answered by
        // a STATE on its connection id acknowledging its sequence number, and a run of
        // consecutive sequence numbers in one direction.
        if let Some(h) = self.utp_pairing(pl, d) {
            return Some(h);
        }
        if let Some(f) = bittorrent::utp_fields(pl) {
            if let Some((sd, id, seq)) = self.utp_syn
                && sd != d
                && pl[0] >> 4 == 2
                && f.0 == id
                && pl.get(18..20) == Some(&seq.to_be_bytes()[..])
            {
                return Some(Hit::confirmed(Label::BittorrentUtp));
            }
            if self.utp_seqs[d].len() < 4 {
                self.utp_seqs[d].push(f);
            }
            if bittorrent::utp_one_way(&self.utp_seqs[d]) {
                return Some(Hit::one_way(Label::BittorrentUtp));
            }
        }
        if bittorrent::dht_any_order(pl) {
            return Some(self.dht(pl, d));
        }
        if bittorrent::lsd(pl) {
            return Some(Hit::payload(Label::BittorrentLsd));
        }
        if bittorrent::udp_tracker_announce(pl) {
            return Some(Hit::payload(Label::BittorrentTracker));
        }
        if gnutella::udp(pl) {
            return Some(Hit::payload(Label::Gnutella));
        }
        if p2ptv::tvants(pl) {
            return Some(Hit::payload(Label::P2pTv));
        }
        if first_in_dir && p2ptv::pplive_head(pl) {
            self.pplive[d] = true;
            if self.pplive[0] && self.pplive[1] {
                return Some(Hit::confirmed(Label::P2pTv));
            }
        }
        if p2ptv::ppstream(pl, p.key.src.port(), p.key.dst.port()) {
            self.ppstream += 1;
            if self.ppstream >= 2 {
                return Some(Hit::payload(Label::P2pTv));
            }
        }
        if edonkey::udp(pl) {
            self.ed_udp += 1;
            if self.ed_udp >= 2 {
                return Some(Hit::payload(Label::Edonkey));
            }
        }
        // Inferred from sizes, like MSE: final for the flow, but it teaches no endpoint.
        if !self.known_other && self.kad.feed(d, pl) {
            return Some(Hit::payload(Label::Edonkey));
        }
        if self.quic_client.is_none_or(|c| c == p.dir)
            && (self.quic.is_some() || quic::looks_like(pl))
        {
            let q = self.quic.get_or_insert_with(Default::default);
            if q.done {
                return everyday;
            }
            match q.feed(pl) {
                quic::Outcome::Sni(sni) => {
                    self.name_pending = false;
                    self.named |= sni.is_some();
                    if q.ech {
                        self.ech_outer = sni.as_deref().map(str::to_ascii_lowercase);
                    }
                    return Some(by_host(sni, Label::Quic, hosts));
                }
                quic::Outcome::Quic => {
                    self.name_pending = true;
                    self.quic_client = Some(p.dir);
                    return Some(Hit::tentative(Label::Quic));
                }
                quic::Outcome::NotInitial => {
                    if first_in_dir && quic::looks_like(pl) {
                        return Some(Hit::tentative(Label::Quic));
                    }
                }
            }
        }
        let ports = [p.key.src.port(), p.key.dst.port()];
        if ports.iter().any(|p| matches!(p, 53 | 5353 | 5355)) && dns::udp(pl) {
            // A query keeps the flow under inspection until its response: the kernel
            // samples a flow until the deep tier calls it final, and the response is what
            // the DNS-assisted labels read (`crate::dns_hints`).
            let query_to_resolver = pl[2] & 0x80 == 0 && p.key.dst.port() == 53;
            return Some(if !query_to_resolver {
                Hit::payload(Label::Dns)
            } else {
                Hit::one_way(Label::Dns)
            });
        }
        if crate::protocols::rtc::dtls(pl) {
            self.known_other = true;
        }
        everyday
    }

    /// A DHT message: a query one way answered (a response or an error) the other way is
    /// confirmed; one message alone is a provisional label.
    fn dht(&mut self, pl: &[u8], d: usize) -> Hit {
        let has = |pat: &[u8]| pl.windows(pat.len()).any(|w| w == pat);
        // The canonical order puts `y` last, so its value is near the end.
        if has(b"1:y1:q") {
            self.dht_q[d] = true;
        } else if has(b"1:y1:r") || has(b"1:y1:e") {
            self.dht_r[d] = true;
        }
        let o = 1 - d;
        if self.dht_q[d] && self.dht_r[o] || self.dht_r[d] && self.dht_q[o] {
            Hit::confirmed(Label::BittorrentDht)
        } else {
            Hit::one_way(Label::BittorrentDht)
        }
    }

    /// The peer-wire handshake in a direction's stream. At the stream's first byte it labels
    /// the flow at once (provisionally); after a prefix, or only in a conflicting copy of
    /// retransmitted bytes, it needs the other direction too. Both directions showing it,
    /// or one showing it and the other framing as peer wire, confirm the flow.
    fn handshake(&mut self, d: usize, pl: &[u8], push: &Push) -> Option<Hit> {
        // A packet that frames as peer-wire messages is the other side's answer, if the
        // handshake stood in the other direction.
        self.framed[d] |= bittorrent::framing(pl).is_some();
        let s = &self.streams[d];
        let mut found = Hs::No;
        if push.grew {
            let from = self.searched[d].saturating_sub(HANDSHAKE.len() - 1);
            if let Some(i) = find(&s.buf[from..], HANDSHAKE) {
                let at = from + i;
                found = if at == 0 { Hs::Start } else { Hs::Later };
                let after = &s.buf[(at + HANDSHAKE_LEN).min(s.buf.len())..];
                self.framed[d] |= bittorrent::framing(after).is_some();
            }
            self.searched[d] = s.buf.len();
        } else if find(pl, HANDSHAKE).is_some() {
            // Off the head: held out of order, or past the cap. Its place is unknown.
            found = Hs::Later;
        }
        for (at, copy) in &push.conflicts {
            let mut alt = s.buf[..(*at).min(s.buf.len())].to_vec();
            alt.extend_from_slice(copy);
            match find(&alt, HANDSHAKE) {
                Some(0) => found = found.max(Hs::Start),
                Some(_) => found = found.max(Hs::Later),
                None => {}
            }
        }
        self.hs[d] = self.hs[d].max(found);
        let o = 1 - d;
        let evidence = |x: usize| self.hs[x] != Hs::No || self.framed[x];
        if self.hs[d] != Hs::No && evidence(o) || self.hs[o] != Hs::No && evidence(d) {
            return Some(Hit::confirmed(Label::Bittorrent));
        }
        (self.hs[d] == Hs::Start || self.hs[o] == Hs::Start)
            .then(|| Hit::one_way(Label::Bittorrent))
    }
}

/// Where `pat` first stands in `hay`.
fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    hay.windows(pat.len()).position(|w| w == pat)
}

/// Matchers that need the start of a direction's stream. A hit that is `fin` decided the
/// head (its ClientHello was read): the head is not parsed again.
fn stream_start(head: &[u8], hosts: &HostList, named: &mut bool) -> Option<Hit> {
    if tls::is_handshake_record(head) {
        return Some(match tls::from_records(head) {
            tls::Hello::Done(sni) => {
                *named |= sni.is_some();
                by_host(sni, Label::Tls, hosts)
            }
            tls::Hello::No => Hit::payload(Label::Tls),
            tls::Hello::Partial => Hit::tentative(Label::Tls),
        });
    }
    if gnutella::tcp(head) {
        return Some(Hit::payload(Label::Gnutella));
    }
    if peercast::pcp(head) {
        return Some(Hit::payload(Label::Peercast));
    }
    None
}

/// The SNI of the hello in a stream head, lower case.
fn tls_sni_lower(head: &[u8]) -> Option<String> {
    match tls::from_records(head) {
        tls::Hello::Done(Some(s)) => Some(s.to_ascii_lowercase()),
        _ => None,
    }
}

/// An HTTP request or response head in `p`.
fn http_packet(p: &[u8], hosts: &HostList, named: &mut bool) -> Option<Hit> {
    if let Some(r) = http::request(p) {
        *named |= r.host.is_some();
        if let Some(l) = http::request_label(&r) {
            return Some(Hit::payload(l));
        }
        if let Some(host) = r.host
            && let Some(m) = hosts.lookup(&String::from_utf8_lossy(host))
        {
            return Some(host_hit(m));
        }
        return Some(Hit::tentative(Label::Http));
    }
    if let Some(r) = http::response(p) {
        if let Some(l) = http::response_label(&r) {
            return Some(Hit::payload(l));
        }
        return Some(Hit::tentative(Label::Http));
    }
    None
}

fn host_hit(m: HostMatch) -> Hit {
    match m {
        HostMatch::Video(service) => Hit {
            verdict: Verdict {
                label: Label::VideoService,
                service: Some(service),
                confidence: Confidence::Hostname,
            },
            fin: true,
            two_way: false,
        },
        HostMatch::P2p(label) => Hit {
            verdict: Verdict::new(label, Confidence::Hostname),
            fin: true,
            two_way: false,
        },
    }
}

/// A server name decides the label when it is on a list; else the transport's own label.
fn by_host(sni: Option<String>, otherwise: Label, hosts: &HostList) -> Hit {
    match sni.as_deref().and_then(|s| hosts.lookup(s)) {
        Some(m) => host_hit(m),
        None => Hit::payload(otherwise),
    }
}
