//! Application payloads: each BitTorrent form the kernel fingerprints, written from its
//! specification (BEP 3, 5, 15, 29, 42), and look-alikes that must not match.

use std::net::SocketAddr;

/// An info hash for the test torrent.
pub const INFO_HASH: [u8; 20] =
    *b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc";
/// A peer id in Azureus style, as libtorrent sends it.
pub const PEER_ID: [u8; 20] = *b"-LT2090-abcdefghijkl";

/// BEP 3 peer-wire handshake: `0x13 "BitTorrent protocol"`, 8 reserved bytes (here the
/// extension protocol and DHT bits), the info hash and the peer id. 68 bytes.
pub fn peer_wire_handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut p = Vec::with_capacity(68);
    p.push(19);
    p.extend_from_slice(b"BitTorrent protocol");
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    p.extend_from_slice(info_hash);
    p.extend_from_slice(peer_id);
    p
}

/// A peer-wire message after the handshake: `len id payload` (e.g. 5 = have, 7 = piece).
pub fn peer_wire_message(id: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(1 + payload.len()).expect("message too long");
    let mut p = len.to_be_bytes().to_vec();
    p.push(id);
    p.extend_from_slice(payload);
    p
}

/// uTP packet types (BEP 29).
pub mod utp_type {
    /// Data.
    pub const DATA: u8 = 0;
    /// Finalize.
    pub const FIN: u8 = 1;
    /// State (an ACK without data).
    pub const STATE: u8 = 2;
    /// Reset.
    pub const RESET: u8 = 3;
    /// Connection request.
    pub const SYN: u8 = 4;
}

/// A uTP packet (BEP 29): version 1, no extension, the 20-byte header, then `data`.
pub fn utp_packet(ty: u8, conn_id: u16, ts_diff: u32, seq: u16, ack: u16, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(20 + data.len());
    p.push((ty << 4) | 1);
    p.push(0);
    p.extend_from_slice(&conn_id.to_be_bytes());
    p.extend_from_slice(&0x1a2b_3c4d_u32.to_be_bytes()); // timestamp, microseconds
    p.extend_from_slice(&ts_diff.to_be_bytes());
    p.extend_from_slice(&1_048_576_u32.to_be_bytes()); // window
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// The SYN a uTP initiator sends: connection id = its receive id, nothing received yet so
/// no timestamp difference, no data.
pub fn utp_syn(recv_id: u16) -> Vec<u8> {
    utp_packet(utp_type::SYN, recv_id, 0, 1, 0, &[])
}

/// Mainline DHT `ping` query (BEP 5) from `node_id`.
pub fn dht_ping_query(node_id: &[u8; 20]) -> Vec<u8> {
    let mut p = b"d1:ad2:id20:".to_vec();
    p.extend_from_slice(node_id);
    p.extend_from_slice(b"e1:q4:ping1:t2:aa1:y1:qe");
    p
}

/// Mainline DHT `get_peers` query for `info_hash` from `node_id`.
pub fn dht_get_peers_query(node_id: &[u8; 20], info_hash: &[u8; 20]) -> Vec<u8> {
    let mut p = b"d1:ad2:id20:".to_vec();
    p.extend_from_slice(node_id);
    p.extend_from_slice(b"9:info_hash20:");
    p.extend_from_slice(info_hash);
    p.extend_from_slice(b"e1:q9:get_peers1:t2:bb1:y1:qe");
    p
}

/// Compact address of BEP 5/42: 4 or 16 address bytes, then the port.
pub fn compact_addr(addr: SocketAddr) -> Vec<u8> {
    let mut b = match addr {
        SocketAddr::V4(a) => a.ip().octets().to_vec(),
        SocketAddr::V6(a) => a.ip().octets().to_vec(),
    };
    b.extend_from_slice(&addr.port().to_be_bytes());
    b
}

/// A DHT response as BEP 42 nodes send it: the `ip` key with the querier's compact address
/// (6 bytes for IPv4, 18 for IPv6) sorts before `r`.
pub fn dht_response_with_ip(querier: SocketAddr, node_id: &[u8; 20]) -> Vec<u8> {
    let ip = compact_addr(querier);
    let mut p = format!("d2:ip{}:", ip.len()).into_bytes();
    p.extend_from_slice(&ip);
    p.extend_from_slice(b"1:rd2:id20:");
    p.extend_from_slice(node_id);
    p.extend_from_slice(b"e1:t2:aa1:y1:re");
    p
}

/// BEP 15 protocol id of a UDP tracker connect request.
pub const UDP_TRACKER_MAGIC: u64 = 0x417_2710_1980;

/// A UDP tracker connect request (BEP 15): protocol id, action 0, transaction id. 16 bytes.
pub fn udp_tracker_connect(magic: u64, transaction_id: u32) -> Vec<u8> {
    let mut p = magic.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&transaction_id.to_be_bytes());
    p
}

/// The tracker's answer to a connect: action 0, transaction id, connection id.
pub fn udp_tracker_connect_response(transaction_id: u32, connection_id: u64) -> Vec<u8> {
    let mut p = 0u32.to_be_bytes().to_vec();
    p.extend_from_slice(&transaction_id.to_be_bytes());
    p.extend_from_slice(&connection_id.to_be_bytes());
    p
}

/// `bytes` percent-encoded, every byte, as clients encode info hashes.
pub fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// An HTTP tracker announce (BEP 3).
pub fn http_announce(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    format!(
        "GET /announce?info_hash={}&peer_id={}&port=6881&uploaded=0&downloaded=0&left=1000&compact=1&event=started HTTP/1.1\r\n\
         Host: tracker.example.net:6969\r\nUser-Agent: qBittorrent/4.6.2\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        percent_encode(info_hash),
        percent_encode(peer_id),
    )
    .into_bytes()
}

/// An HTTP tracker scrape.
pub fn http_scrape(info_hash: &[u8; 20]) -> Vec<u8> {
    format!(
        "GET /scrape?info_hash={} HTTP/1.1\r\nHost: tracker.example.net:6969\r\nUser-Agent: Transmission/4.0.5\r\n\r\n",
        percent_encode(info_hash),
    )
    .into_bytes()
}

/// A tracker's (or any web server's) response header.
pub fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut p = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    p.extend_from_slice(body);
    p
}

/// An HTTP GET of an ordinary web page.
pub fn http_get_page() -> Vec<u8> {
    b"GET /news/index.html?page=2&sort=date HTTP/1.1\r\nHost: www.example.com\r\n\
      User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
      Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-GB,en;q=0.5\r\n\r\n"
        .to_vec()
}

/// A TLS 1.2/1.3 ClientHello record with an SNI extension for `host`.
pub fn tls_client_hello(host: &str) -> Vec<u8> {
    let name = host.as_bytes();
    let name_len = u16::try_from(name.len()).expect("host name too long");
    // server_name extension: list length, type host_name (0), name length, name.
    let mut sni = Vec::new();
    sni.extend_from_slice(&(name_len + 3).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&name_len.to_be_bytes());
    sni.extend_from_slice(name);
    let mut exts = vec![0x00, 0x00];
    exts.extend_from_slice(&u16::try_from(sni.len()).expect("sni").to_be_bytes());
    exts.extend_from_slice(&sni);
    // supported_versions: TLS 1.3, 1.2.
    exts.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);

    let mut hello = vec![0x03, 0x03]; // legacy_version TLS 1.2
    hello.extend((0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11))); // random
    hello.push(32); // session id
    hello.extend((0u8..32).map(|i| i ^ 0x5a));
    let suites: [u16; 5] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];
    hello.extend_from_slice(
        &u16::try_from(suites.len() * 2)
            .expect("suites")
            .to_be_bytes(),
    );
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null
    hello.extend_from_slice(&u16::try_from(exts.len()).expect("exts").to_be_bytes());
    hello.extend_from_slice(&exts);

    let hs_len = u32::try_from(hello.len()).expect("hello").to_be_bytes();
    let mut hs = vec![0x01, hs_len[1], hs_len[2], hs_len[3]]; // ClientHello
    hs.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 on the record layer
    record.extend_from_slice(&u16::try_from(hs.len()).expect("record").to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// A DNS query (recursion desired) for the A record of `name`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        p.push(u8::try_from(label.len()).expect("label too long"));
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p
}

/// The answer to `dns_query(id, name)`: the question again, then one A record for `addr`
/// (its owner a compression pointer to the question's name) with `ttl` seconds.
pub fn dns_answer(id: u16, name: &str, addr: std::net::Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut p = dns_query(id, name);
    p[2] = 0x81; // a response, recursion desired
    p[3] = 0x80; // recursion available
    p[7] = 1; // one answer
    p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    p.extend_from_slice(&ttl.to_be_bytes());
    p.extend_from_slice(&[0, 4]);
    p.extend_from_slice(&addr.octets());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerwarden_common::{Label, fingerprint};

    // The builders against the shared fingerprints, without the kernel: when a kernel test
    // fails, these say whether the payload or the kernel path is to blame.
    #[test]
    fn builders_match_the_shared_fingerprints() {
        let v4: SocketAddr = "100.64.1.10:51413".parse().expect("addr");
        let v6: SocketAddr = "[2001:db8:1::10]:51413".parse().expect("addr");
        let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
        assert_eq!(hs.len(), 68);
        assert_eq!(fingerprint::tcp(&hs), Some(Label::Bittorrent));
        assert_eq!(
            fingerprint::tcp(&http_announce(&INFO_HASH, &PEER_ID)),
            Some(Label::BittorrentTracker)
        );
        assert_eq!(
            fingerprint::tcp(&http_scrape(&INFO_HASH)),
            Some(Label::BittorrentTracker)
        );
        assert_eq!(
            fingerprint::udp(&utp_syn(0x4321)),
            Some(Label::BittorrentUtp)
        );
        assert_eq!(
            fingerprint::udp(&dht_ping_query(&PEER_ID)),
            Some(Label::BittorrentDht)
        );
        assert_eq!(
            fingerprint::udp(&dht_get_peers_query(&PEER_ID, &INFO_HASH)),
            Some(Label::BittorrentDht)
        );
        assert_eq!(
            fingerprint::udp(&dht_response_with_ip(v4, &PEER_ID)),
            Some(Label::BittorrentDht)
        );
        assert_eq!(
            fingerprint::udp(&dht_response_with_ip(v6, &PEER_ID)),
            Some(Label::BittorrentDht)
        );
        let connect = udp_tracker_connect(UDP_TRACKER_MAGIC, 7);
        assert_eq!(connect.len(), 16);
        assert_eq!(fingerprint::udp(&connect), Some(Label::BittorrentTracker));
        assert_eq!(fingerprint::tcp(&http_get_page()), None);
        assert_eq!(fingerprint::tcp(&tls_client_hello("www.example.com")), None);
        assert_eq!(fingerprint::udp(&dns_query(1, "www.example.com")), None);
    }

    #[test]
    fn utp_header_layout() {
        let p = utp_packet(utp_type::STATE, 0xbeef, 5, 9, 8, b"xy");
        assert_eq!(p.len(), 22);
        assert_eq!(p[0], 0x21);
        assert_eq!(&p[2..4], &[0xbe, 0xef]);
        assert_eq!(&p[16..20], &[0, 9, 0, 8]);
        assert_eq!(fingerprint::utp_header(&p), Some(0xbeef));
    }
}
