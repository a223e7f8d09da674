//! Label ids, their names and classes (DESIGN.md, "Labels").
//!
//! Ids are stable: they index the per-CPU counter array and are stored in the flow map,
//! so a new label takes a new id at the end and old ids are never reused.

/// How many label slots the counter array holds. Room to grow without a map resize.
pub const MAX_LABELS: u32 = 64;

/// A flow label. `repr(u16)` because the flow map stores it as `u16`.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// Undecided, or undecided when inspection ended.
    Unknown = 0,
    /// BitTorrent peer wire over TCP.
    Bittorrent = 1,
    /// BitTorrent over uTP (BEP 29).
    BittorrentUtp = 2,
    /// Mainline DHT KRPC (BEP 5).
    BittorrentDht = 3,
    /// HTTP or UDP (BEP 15) tracker, webseed.
    BittorrentTracker = 4,
    /// Local service discovery.
    BittorrentLsd = 5,
    /// Message stream encryption, inferred.
    BittorrentEncrypted = 6,
    /// eDonkey / eMule / Kad.
    Edonkey = 7,
    /// Gnutella.
    Gnutella = 8,
    /// PeerCast.
    Peercast = 9,
    /// A host acting as a P2P node, no payload match.
    P2pBehavioural = 10,
    /// HTTP Live Streaming.
    Hls = 11,
    /// MPEG-DASH.
    Dash = 12,
    /// Progressive HTTP video.
    HttpVideo = 13,
    /// RTMP.
    Rtmp = 14,
    /// RTSP.
    Rtsp = 15,
    /// TLS or QUIC to a video service (the service name lives in user space).
    VideoService = 16,
    /// Plain HTTP.
    Http = 17,
    /// TLS.
    Tls = 18,
    /// QUIC.
    Quic = 19,
    /// DNS.
    Dns = 20,
    /// P2P TV other than PeerCast (PPLive/PPTV, PPStream, TVAnts), from the payload.
    P2pTv = 21,
    /// SSH.
    Ssh = 22,
    /// WireGuard.
    VpnWireguard = 23,
    /// OpenVPN over UDP or TCP.
    VpnOpenvpn = 24,
    /// IPsec: IKE, NAT traversal (UDP 4500), ESP and AH.
    VpnIpsec = 25,
    /// WebRTC and its NAT traversal: STUN, TURN, DTLS-SRTP.
    Webrtc = 26,
    /// Voice over IP: SIP and RTP/RTCP.
    Voip = 27,
    /// Remote desktop (RDP).
    Rdp = 28,
    /// Online games' own protocols.
    Game = 29,
    /// ICMP and ICMPv6.
    Icmp = 30,
    /// GRE tunnels (PPTP, carrier tunnels).
    Gre = 31,
    /// IPTV: MPEG transport stream over UDP, bare or in RTP (payload type 33), unicast or
    /// multicast.
    Iptv = 32,
}

/// Every label, in id order.
pub const ALL_LABELS: [Label; 33] = [
    Label::Unknown,
    Label::Bittorrent,
    Label::BittorrentUtp,
    Label::BittorrentDht,
    Label::BittorrentTracker,
    Label::BittorrentLsd,
    Label::BittorrentEncrypted,
    Label::Edonkey,
    Label::Gnutella,
    Label::Peercast,
    Label::P2pBehavioural,
    Label::Hls,
    Label::Dash,
    Label::HttpVideo,
    Label::Rtmp,
    Label::Rtsp,
    Label::VideoService,
    Label::Http,
    Label::Tls,
    Label::Quic,
    Label::Dns,
    Label::P2pTv,
    Label::Ssh,
    Label::VpnWireguard,
    Label::VpnOpenvpn,
    Label::VpnIpsec,
    Label::Webrtc,
    Label::Voip,
    Label::Rdp,
    Label::Game,
    Label::Icmp,
    Label::Gre,
    Label::Iptv,
];

impl Label {
    /// The label for a stored id; unknown ids read as `Unknown`.
    pub const fn from_id(id: u16) -> Label {
        if (id as usize) < ALL_LABELS.len() {
            ALL_LABELS[id as usize]
        } else {
            Label::Unknown
        }
    }

    /// The stored id.
    pub const fn id(self) -> u16 {
        self as u16
    }

    /// The name printed in reports and accepted in filters.
    pub const fn name(self) -> &'static str {
        match self {
            Label::Unknown => "unknown",
            Label::Bittorrent => "bittorrent",
            Label::BittorrentUtp => "bittorrent.utp",
            Label::BittorrentDht => "bittorrent.dht",
            Label::BittorrentTracker => "bittorrent.tracker",
            Label::BittorrentLsd => "bittorrent.lsd",
            Label::BittorrentEncrypted => "bittorrent.encrypted",
            Label::Edonkey => "edonkey",
            Label::Gnutella => "gnutella",
            Label::Peercast => "peercast",
            Label::P2pBehavioural => "p2p.behavioural",
            Label::Hls => "hls",
            Label::Dash => "dash",
            Label::HttpVideo => "http.video",
            Label::Rtmp => "rtmp",
            Label::Rtsp => "rtsp",
            Label::VideoService => "video",
            Label::Http => "http",
            Label::Tls => "tls",
            Label::Quic => "quic",
            Label::Dns => "dns",
            Label::P2pTv => "p2p.tv",
            Label::Ssh => "ssh",
            Label::VpnWireguard => "vpn.wireguard",
            Label::VpnOpenvpn => "vpn.openvpn",
            Label::VpnIpsec => "vpn.ipsec",
            Label::Webrtc => "webrtc",
            Label::Voip => "voip",
            Label::Rdp => "rdp",
            Label::Game => "game",
            Label::Icmp => "icmp",
            Label::Gre => "gre",
            Label::Iptv => "iptv",
        }
    }

    /// The label with this name, if any.
    pub fn from_name(name: &str) -> Option<Label> {
        let mut i = 0;
        while i < ALL_LABELS.len() {
            if str_eq(ALL_LABELS[i].name(), name) {
                return Some(ALL_LABELS[i]);
            }
            i += 1;
        }
        None
    }

    /// The class policies and reports use by default.
    pub const fn class(self) -> Class {
        match self {
            Label::Bittorrent
            | Label::BittorrentUtp
            | Label::BittorrentDht
            | Label::BittorrentTracker
            | Label::BittorrentLsd
            | Label::BittorrentEncrypted
            | Label::Edonkey
            | Label::Gnutella
            | Label::Peercast
            | Label::P2pBehavioural
            | Label::P2pTv => Class::P2p,
            Label::Hls
            | Label::Dash
            | Label::HttpVideo
            | Label::Rtmp
            | Label::Rtsp
            | Label::VideoService
            | Label::Iptv => Class::Video,
            Label::Http | Label::Tls | Label::Quic => Class::Web,
            Label::Dns
            | Label::Unknown
            | Label::Ssh
            | Label::VpnWireguard
            | Label::VpnOpenvpn
            | Label::VpnIpsec
            | Label::Webrtc
            | Label::Voip
            | Label::Rdp
            | Label::Game
            | Label::Icmp
            | Label::Gre => Class::Other,
        }
    }
}

fn str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().iter().zip(b.as_bytes()).all(|(x, y)| x == y)
}

/// The class of a label: what policies and reports use by default.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Peer-to-peer file sharing and P2P TV.
    P2p = 0,
    /// Streamed video.
    Video = 1,
    /// Web: HTTP, TLS, QUIC that is not video.
    Web = 2,
    /// Everything else, including undecided flows.
    Other = 3,
}

/// Every class, in id order.
pub const ALL_CLASSES: [Class; 4] = [Class::P2p, Class::Video, Class::Web, Class::Other];

impl Class {
    /// The name printed in reports and accepted in filters and policies.
    pub const fn name(self) -> &'static str {
        match self {
            Class::P2p => "p2p",
            Class::Video => "video",
            Class::Web => "web",
            Class::Other => "other",
        }
    }

    /// The class with this name, if any.
    pub fn from_name(name: &str) -> Option<Class> {
        ALL_CLASSES.iter().copied().find(|c| str_eq(c.name(), name))
    }
}

/// How a label was decided.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Confidence {
    /// Not decided.
    None = 0,
    /// From the payload (a protocol fingerprint).
    Payload = 1,
    /// From a host name (TLS SNI, QUIC, HTTP Host).
    Hostname = 2,
    /// From an endpoint cache: the endpoint was seen speaking the protocol.
    Cache = 3,
    /// From the host's behaviour.
    Behaviour = 4,
    /// Guessed from the port.
    PortGuess = 5,
}

impl Confidence {
    /// The confidence for a stored id.
    pub const fn from_id(id: u8) -> Confidence {
        match id {
            1 => Confidence::Payload,
            2 => Confidence::Hostname,
            3 => Confidence::Cache,
            4 => Confidence::Behaviour,
            5 => Confidence::PortGuess,
            _ => Confidence::None,
        }
    }

    /// The name printed in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Confidence::None => "none",
            Confidence::Payload => "payload",
            Confidence::Hostname => "hostname",
            Confidence::Cache => "cache",
            Confidence::Behaviour => "behaviour",
            Confidence::PortGuess => "port",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_names_are_unique() {
        for (i, l) in ALL_LABELS.iter().enumerate() {
            assert_eq!(l.id() as usize, i, "{l:?} is out of id order");
            assert_eq!(Label::from_id(l.id()), *l);
            assert_eq!(Label::from_name(l.name()), Some(*l));
        }
        assert!((ALL_LABELS.len() as u32) <= MAX_LABELS);
        assert_eq!(Label::from_id(999), Label::Unknown);
    }

    #[test]
    fn bittorrent_forms_are_p2p() {
        assert_eq!(Label::BittorrentUtp.class(), Class::P2p);
        assert_eq!(Label::Hls.class(), Class::Video);
        assert_eq!(Label::Iptv.class(), Class::Video);
        assert_eq!(Label::from_name("iptv"), Some(Label::Iptv));
        assert_eq!(Label::Iptv.id(), 32, "ids are stable");
        assert_eq!(Label::Unknown.class(), Class::Other);
        assert_eq!(Class::from_name("video"), Some(Class::Video));
    }
}
