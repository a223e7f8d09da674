//! One flow's inspection: the state detectors keep between packets, and the order they run
//! in. The kernel's fixed-offset fingerprints run first, then the deep detectors.

use peerwarden_common::{
    Confidence, Label,
    fingerprint::{self, SAMPLE_LEN},
};

use crate::{
    engine::{PacketMeta, Verdict},
    flow::Direction,
    hosts::{HostList, HostMatch},
    packet::TCP,
    protocols::{bittorrent, dns, edonkey, gnutella, http, p2ptv, peercast, quic, streaming, tls},
};

/// How many bytes of each direction's TCP stream are kept for detectors that need more
/// than one segment (a ClientHello over several segments, HTTP heads, RTMP's 1537 bytes).
const STREAM_CAP: usize = 8 * 1024;

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

/// A detector's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub verdict: Verdict,
    /// No later packet can change it: inspection stops.
    pub fin: bool,
}

impl Hit {
    fn payload(label: Label) -> Hit {
        Hit {
            verdict: Verdict::new(label, Confidence::Payload),
            fin: true,
        }
    }
    fn tentative(label: Label) -> Hit {
        Hit {
            verdict: Verdict::new(label, Confidence::Payload),
            fin: false,
        }
    }
}

/// A TCP direction's stream head, reassembled in sequence order up to [`STREAM_CAP`].
#[derive(Debug, Default)]
struct Stream {
    buf: Vec<u8>,
    next: Option<u32>,
    /// A gap or the cap was reached: the head is what it is.
    closed: bool,
}

impl Stream {
    /// Adds a segment; whether the head grew.
    fn push(&mut self, seq: u32, data: &[u8]) -> bool {
        if self.closed || data.is_empty() {
            return false;
        }
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next) as i32;
        if ahead > 0 {
            self.closed = true;
            return false;
        }
        // Behind or at `next`: skip what was already taken (a retransmission).
        let skip = (-(ahead as i64)) as usize;
        if skip >= data.len() {
            return false;
        }
        let take = &data[skip..];
        let room = STREAM_CAP - self.buf.len();
        let n = take.len().min(room);
        self.buf.extend_from_slice(&take[..n]);
        self.next = Some(next.wrapping_add(n as u32));
        if self.buf.len() >= STREAM_CAP {
            self.closed = true;
        }
        n > 0
    }
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
    utp_seqs: [Vec<(u16, u32, u16)>; 2],
    /// Peer-wire framing: packets that framed, messages, a telling message seen.
    bt_packets: u8,
    bt_messages: u32,
    bt_telling: bool,
    /// eDonkey framing seen per direction, and UDP datagrams of eDonkey/Kad shape.
    ed_framed: [bool; 2],
    ed_udp: u8,
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
}

impl Inspector {
    /// Notes a payload-less TCP segment: a SYN (without ACK) marks the connection's start.
    pub(crate) fn tcp_control(&mut self, p: &PacketMeta<'_>) {
        if p.tcp_flags & 0x12 == 0x02 && self.seen == [0, 0] {
            self.syn_dir = Some(p.dir);
        }
        if p.tcp_flags & 0x02 != 0 {
            // Data starts one past the SYN's sequence number.
            let s = &mut self.streams[p.dir.index()];
            if s.buf.is_empty() {
                s.next = Some(p.tcp_seq.wrapping_add(1));
            }
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
            if let Some(l) = fingerprint::tcp(sample) {
                return Some(Hit::payload(l));
            }
            if kernel_only {
                return None;
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
                if kernel_only || !loose_announce {
                    return Some(Hit::payload(l));
                }
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
        let grew = self.streams[d].push(p.tcp_seq, pl);
        // The direction's reassembled head if this packet extended it, else the packet.
        let head: &[u8] = if grew { &self.streams[d].buf } else { pl };
        if grew && head.len() > pl.len() && fingerprint::bittorrent_handshake(head) {
            return Some(Hit::payload(Label::Bittorrent));
        }
        if grew || first_in_dir {
            let (hit, other) = stream_start(head, hosts);
            self.known_other |= other;
            if hit.is_some() {
                return hit;
            }
        }
        // Any packet can start an HTTP message; a head split over segments is read whole.
        let mut best = if grew && head.len() > pl.len() {
            http_packet(head, hosts)
        } else {
            None
        };
        if best.as_ref().is_none_or(|h| !h.fin)
            && let Some(h) = http_packet(pl, hosts)
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
        if first_in_dir {
            match edonkey::tcp(pl) {
                Some(edonkey::Tcp::Hello) => return Some(Hit::payload(Label::Edonkey)),
                Some(edonkey::Tcp::Framed) => {
                    self.ed_framed[d] = true;
                    if self.ed_framed[0] && self.ed_framed[1] {
                        return Some(Hit::payload(Label::Edonkey));
                    }
                }
                None => {}
            }
        }
        // Mid-flow peer wire: two packets that frame as messages, three messages, one of a
        // telling size.
        if let Some(f) = bittorrent::framing(pl) {
            self.bt_packets = self.bt_packets.saturating_add(1);
            self.bt_messages += f.messages;
            self.bt_telling |= f.telling;
            if self.bt_packets >= 2 && self.bt_messages >= 3 && self.bt_telling {
                return Some(Hit::payload(Label::Bittorrent));
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
                Some(Hit::payload(Label::BittorrentUtp))
            }
            _ => None,
        }
    }

    fn udp(&mut self, p: &PacketMeta<'_>, hosts: &HostList, first_in_dir: bool) -> Option<Hit> {
        let d = p.dir.index();
        let pl = p.payload;
        // uTP: the kernel's pairing of connection ids across directions, and a run of
        // consecutive sequence numbers in one direction.
        if let Some(h) = self.utp_pairing(pl, d) {
            return Some(h);
        }
        if let Some(f) = bittorrent::utp_fields(pl) {
            if self.utp_seqs[d].len() < 4 {
                self.utp_seqs[d].push(f);
            }
            if bittorrent::utp_one_way(&self.utp_seqs[d]) {
                return Some(Hit::payload(Label::BittorrentUtp));
            }
        }
        if bittorrent::dht_any_order(pl) {
            return Some(Hit::payload(Label::BittorrentDht));
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
                return Some(Hit::payload(Label::P2pTv));
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
        if self.quic_client.is_none_or(|c| c == p.dir)
            && (self.quic.is_some() || quic::looks_like(pl))
        {
            let q = self.quic.get_or_insert_with(Default::default);
            if q.done {
                return None;
            }
            match q.feed(pl) {
                quic::Outcome::Sni(sni) => return Some(by_host(sni, Label::Quic, hosts)),
                quic::Outcome::Quic => {
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
            return Some(Hit::payload(Label::Dns));
        }
        if stun(pl) || sip(pl) {
            self.known_other = true;
        }
        None
    }
}

/// Matchers that need the start of a direction's stream; the flag says the stream is a
/// known protocol that has no label of its own (SSH).
fn stream_start(head: &[u8], hosts: &HostList) -> (Option<Hit>, bool) {
    if tls::is_handshake_record(head) {
        return match tls::from_records(head) {
            tls::Hello::Done(sni) => (Some(by_host(sni, Label::Tls, hosts)), false),
            tls::Hello::Partial | tls::Hello::No => (Some(Hit::tentative(Label::Tls)), false),
        };
    }
    if gnutella::tcp(head) {
        return (Some(Hit::payload(Label::Gnutella)), false);
    }
    if peercast::pcp(head) {
        return (Some(Hit::payload(Label::Peercast)), false);
    }
    (None, head.starts_with(b"SSH-") || sip(head))
}

/// An HTTP request or response head in `p`.
fn http_packet(p: &[u8], hosts: &HostList) -> Option<Hit> {
    if let Some(r) = http::request(p) {
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
        },
        HostMatch::P2p(label) => Hit {
            verdict: Verdict::new(label, Confidence::Hostname),
            fin: true,
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

/// A SIP request or status line (RFC 3261).
fn sip(p: &[u8]) -> bool {
    p.starts_with(b"SIP/2.0 ")
        || [
            &b"INVITE sip:"[..],
            b"REGISTER sip:",
            b"OPTIONS sip:",
            b"ACK sip:",
            b"BYE sip:",
            b"NOTIFY sip:",
            b"SUBSCRIBE sip:",
            b"MESSAGE sip:",
            b"CANCEL sip:",
            b"INFO sip:",
            b"PUBLISH sip:",
        ]
        .iter()
        .any(|m| p.starts_with(m))
}

/// A STUN message (RFC 5389): type with the top bits clear, length fitting the datagram, and
/// the magic cookie.
fn stun(p: &[u8]) -> bool {
    p.len() >= 20
        && p[0] & 0xc0 == 0
        && p[4..8] == [0x21, 0x12, 0xa4, 0x42]
        && u16::from_be_bytes([p[2], p[3]]) as usize + 20 == p.len()
}
