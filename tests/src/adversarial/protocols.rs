//! Payloads of the protocols the adversarial corpus disguises BitTorrent as, and of the
//! everyday protocols that must never be taken for P2P: each written from its
//! specification, as the direction and bytes of every message of a session.

use peerwarden_common::Direction;

use crate::{payloads::INFO_HASH, rng::SplitMix64};

/// A 10-byte TLS application-data record (type 23, TLS 1.2, 5 bytes of "ciphertext").
pub fn tls_app_data_record() -> Vec<u8> {
    vec![0x17, 0x03, 0x03, 0x00, 0x05, 0x8e, 0x21, 0x4c, 0xd7, 0x93]
}

/// An HTTP GET for YouTube's home page.
pub fn http_get_youtube() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: www.youtube.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\n\r\n".to_vec()
}

/// A BEP 14 local service discovery announce, as one subscriber sends it (unicast) to an
/// endpoint it wants the classifier to take for a BitTorrent peer.
pub fn lsd_announce(port: u16) -> Vec<u8> {
    let hex: String = INFO_HASH.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: {port}\r\nInfohash: {hex}\r\n\r\n"
    )
    .into_bytes()
}

/// WireGuard: handshake initiation (148 bytes), response (92 bytes, receiver = the
/// initiator's sender index), then transport data both ways.
pub fn wireguard(seed: u64) -> Vec<(Direction, Vec<u8>)> {
    let mut out = Vec::new();
    let mut r = SplitMix64::new(seed);
    let init_index = (r.next_u64() as u32).to_le_bytes();
    let resp_index = (r.next_u64() as u32).to_le_bytes();
    let mut init = vec![1, 0, 0, 0];
    init.extend_from_slice(&init_index);
    init.extend(r.bytes(148 - 8));
    let mut resp = vec![2, 0, 0, 0];
    resp.extend_from_slice(&resp_index);
    resp.extend_from_slice(&init_index);
    resp.extend(r.bytes(92 - 12));
    assert_eq!((init.len(), resp.len()), (148, 92));
    out.push((Direction::Up, init));
    out.push((Direction::Down, resp));
    for n in 0..4u64 {
        for (dir, receiver) in [(Direction::Up, resp_index), (Direction::Down, init_index)] {
            let mut data = vec![4, 0, 0, 0];
            data.extend_from_slice(&receiver);
            data.extend_from_slice(&n.to_le_bytes());
            let len = 16 + 16 * r.range(2, 60);
            data.extend(r.bytes(len));
            out.push((dir, data));
        }
    }
    out
}

/// OpenVPN over UDP without tls-auth: hard reset client v2, hard reset server v2, an ACK,
/// then P_DATA_V2 both ways.
pub fn openvpn(seed: u64) -> Vec<(Direction, Vec<u8>)> {
    let mut r = SplitMix64::new(seed);
    let client_sid = r.bytes(8);
    let server_sid = r.bytes(8);
    let mut reset_client = vec![7 << 3];
    reset_client.extend_from_slice(&client_sid);
    reset_client.push(0); // no ACKs
    reset_client.extend_from_slice(&0u32.to_be_bytes()); // packet id
    let mut reset_server = vec![8 << 3];
    reset_server.extend_from_slice(&server_sid);
    reset_server.push(1); // one ACK: the client's packet 0
    reset_server.extend_from_slice(&0u32.to_be_bytes());
    reset_server.extend_from_slice(&client_sid);
    reset_server.extend_from_slice(&0u32.to_be_bytes());
    let mut ack = vec![5 << 3];
    ack.extend_from_slice(&client_sid);
    ack.push(1);
    ack.extend_from_slice(&0u32.to_be_bytes());
    ack.extend_from_slice(&server_sid);
    let mut out = vec![
        (Direction::Up, reset_client),
        (Direction::Down, reset_server),
        (Direction::Up, ack),
    ];
    for n in 1..=4u32 {
        for dir in [Direction::Up, Direction::Down] {
            let mut data = vec![9 << 3, 0, 0, 1]; // key id 0, peer id 1
            data.extend_from_slice(&n.to_be_bytes());
            let len = 16 * r.range(3, 60);
            data.extend(r.bytes(len));
            out.push((dir, data));
        }
    }
    out
}

/// An SSH binary packet (RFC 4253 section 6) around `payload`, padded to 8 bytes.
fn ssh_packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let len = u32::try_from(1 + payload.len() + pad).expect("short packet");
    let mut p = len.to_be_bytes().to_vec();
    p.push(pad as u8);
    p.extend_from_slice(payload);
    p.extend(std::iter::repeat_n(0u8, pad));
    p
}

/// SSH over TCP (after the connection's opening): version strings both ways, KEXINIT both ways, then encrypted-looking packets.
pub fn ssh(seed: u64) -> Vec<(Direction, Vec<u8>)> {
    let mut r = SplitMix64::new(seed);
    let mut out = Vec::new();
    out.push((Direction::Up, b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()));
    out.push((
        Direction::Down,
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
    ));
    let mut kexinit = vec![20];
    kexinit.extend(r.bytes(16));
    for list in [
        "curve25519-sha256,ecdh-sha2-nistp256",
        "ssh-ed25519,rsa-sha2-512",
        "chacha20-poly1305@openssh.com,aes128-ctr",
        "chacha20-poly1305@openssh.com,aes128-ctr",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "none,zlib@openssh.com",
        "none,zlib@openssh.com",
        "",
        "",
    ] {
        kexinit.extend_from_slice(&(list.len() as u32).to_be_bytes());
        kexinit.extend_from_slice(list.as_bytes());
    }
    kexinit.extend_from_slice(&[0, 0, 0, 0, 0]);
    out.push((Direction::Up, ssh_packet(&kexinit)));
    out.push((Direction::Down, ssh_packet(&kexinit)));
    for _ in 0..4 {
        for dir in [Direction::Up, Direction::Down] {
            let len = 4 + 16 * r.range(2, 20) + 16;
            out.push((dir, r.bytes(len)));
        }
    }
    out
}

/// A DNS answer to `query` with one A record.
pub fn dns_answer(query: &[u8]) -> Vec<u8> {
    let mut p = query.to_vec();
    p[2..4].copy_from_slice(&[0x81, 0x80]);
    p[6..8].copy_from_slice(&[0, 1]);
    p.extend_from_slice(&[
        0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 80,
    ]);
    p
}

/// NTP client request (mode 3) and server answer (mode 4), 48 bytes each.
pub fn ntp_exchange(k: u16) -> (Vec<u8>, Vec<u8>) {
    let mut r = SplitMix64::new(0xc2 + u64::from(k));
    let mut req = vec![0x23, 0, 6, 0xec];
    req.extend(std::iter::repeat_n(0u8, 36));
    req.extend(r.bytes(8)); // transmit timestamp
    let mut resp = vec![0x24, 2, 6, 0xe9];
    resp.extend(r.bytes(12));
    resp.extend_from_slice(&req[40..48]); // origin = the request's transmit time
    resp.extend(r.bytes(16));
    (req, resp)
}

/// RADIUS Access-Request (User-Name, User-Password, NAS-IP-Address) and an Access-Reject.
pub fn radius_exchange(k: u16) -> (Vec<u8>, Vec<u8>) {
    let mut r = SplitMix64::new(0xc3 + u64::from(k));
    let id = k as u8;
    let mut attrs = vec![1, 19];
    attrs.extend_from_slice(b"alice@isp.example");
    attrs.extend_from_slice(&[2, 18]);
    attrs.extend(r.bytes(16));
    attrs.extend_from_slice(&[4, 6, 100, 64, 3, 1]);
    let mut req = vec![1, id];
    req.extend_from_slice(&((20 + attrs.len()) as u16).to_be_bytes());
    req.extend(r.bytes(16));
    req.extend(attrs);
    let mut resp = vec![3, id, 0, 20];
    resp.extend(r.bytes(16));
    (req, resp)
}
