//! Common game protocols: the connectionless "out-of-band" packets of Valve's Source engine
//! (A2S server queries, developer.valvesoftware.com "Server queries") and of id Tech 2/3
//! (`getstatus`, `getinfo`, `getchallenge`, `connect` and their responses), both starting
//! with four 0xff bytes, and Minecraft Java Edition's handshake (wiki.vg "Protocol":
//! VarInt length, packet id 0, protocol version, server address, port, next state).

/// Which side of an exchange a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Game {
    /// A client's query or connection request.
    Query,
    /// A server's answer.
    Answer,
}

const OOB: &[u8] = b"\xff\xff\xff\xff";

/// A Source engine or id Tech connectionless packet.
pub fn connectionless(p: &[u8]) -> Option<Game> {
    let body = p.strip_prefix(OOB)?;
    // Source A2S: INFO (with its fixed string), PLAYER and RULES (4-byte challenge).
    if body.starts_with(b"TSource Engine Query\0") {
        return Some(Game::Query);
    }
    if matches!(body.first(), Some(b'U' | b'V')) && body.len() == 5 {
        return Some(Game::Query);
    }
    // Source answers: info (I, or GoldSrc's m), a challenge (A + 4 bytes), players (D),
    // rules (E).
    match body.first() {
        Some(b'I') if body.len() >= 6 => return Some(Game::Answer),
        Some(b'A') if body.len() == 5 => return Some(Game::Answer),
        Some(b'm' | b'D' | b'E') if body.len() >= 2 => return Some(Game::Answer),
        _ => {}
    }
    const QUERIES: &[&[u8]] = &[b"getstatus", b"getinfo", b"getchallenge", b"connect "];
    const ANSWERS: &[&[u8]] = &[
        b"statusResponse",
        b"infoResponse",
        b"challengeResponse",
        b"connectResponse",
        b"print\n",
    ];
    if QUERIES.iter().any(|q| body.starts_with(q)) {
        return Some(Game::Query);
    }
    if ANSWERS.iter().any(|a| body.starts_with(a)) {
        return Some(Game::Answer);
    }
    None
}

fn varint(p: &[u8], o: &mut usize) -> Option<u32> {
    let mut v = 0u32;
    for i in 0..5 {
        let b = *p.get(*o)?;
        *o += 1;
        v |= ((b & 0x7f) as u32) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A Minecraft handshake at the start of a client stream: the packet's length covers
/// exactly id 0, a VarInt protocol version, a 1..=255-byte printable server address, a
/// port and a next state of 1 (status), 2 (login) or 3 (transfer).
pub fn minecraft_handshake(head: &[u8]) -> bool {
    let mut o = 0;
    let Some(len) = varint(head, &mut o) else {
        return false;
    };
    let start = o;
    let end = start + len as usize;
    if !(7..=300).contains(&len) || end > head.len() || head[o] != 0 {
        return false;
    }
    o += 1;
    if varint(head, &mut o).is_none() {
        return false;
    }
    let Some(alen) = varint(head, &mut o) else {
        return false;
    };
    let alen = alen as usize;
    let Some(addr) = head.get(o..o + alen) else {
        return false;
    };
    if alen == 0 || alen > 255 || !addr.iter().all(|c| c.is_ascii_graphic()) {
        return false;
    }
    o += alen + 2;
    o < end && matches!(head[o], 1..=3) && o + 1 == end
}

/// A Minecraft server's first packet: a VarInt length, then a packet id the status or
/// login state answers with (0 status response or disconnect, 1 encryption request,
/// 2 login success, 3 set compression), and for a status response its JSON.
pub fn minecraft_answer(head: &[u8]) -> bool {
    let mut o = 0;
    let Some(len) = varint(head, &mut o) else {
        return false;
    };
    if !(1..=2_097_151).contains(&len) {
        return false;
    }
    match head.get(o) {
        Some(0) => {
            let mut j = o + 1;
            varint(head, &mut j).is_some() && head.get(j) == Some(&b'{')
        }
        Some(1..=3) => true,
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn mc_handshake(host: &str) -> Vec<u8> {
        let mut body = vec![0u8, 0xfd, 0x05]; // id 0, protocol 765
        body.push(host.len() as u8);
        body.extend_from_slice(host.as_bytes());
        body.extend_from_slice(&25565u16.to_be_bytes());
        body.push(1);
        let mut p = vec![body.len() as u8];
        p.extend(body);
        p.extend_from_slice(&[1, 0]); // status request
        p
    }

    #[test]
    fn source_and_quake_queries() {
        assert_eq!(
            connectionless(b"\xff\xff\xff\xffTSource Engine Query\0"),
            Some(Game::Query)
        );
        assert_eq!(
            connectionless(b"\xff\xff\xff\xffA\x01\x02\x03\x04"),
            Some(Game::Answer)
        );
        assert_eq!(
            connectionless(b"\xff\xff\xff\xffgetstatus\n"),
            Some(Game::Query)
        );
        assert_eq!(
            connectionless(b"\xff\xff\xff\xffstatusResponse\n\\sv_hostname\\x"),
            Some(Game::Answer)
        );
        assert_eq!(connectionless(b"\xff\xff\xff\xffZZZ"), None);
        assert_eq!(connectionless(b"\xff\xff\xff\xfe getstatus"), None);
    }

    #[test]
    fn minecraft_handshake_and_answer() {
        assert!(minecraft_handshake(&mc_handshake("mc.example.org")));
        let mut bad = mc_handshake("mc.example.org");
        let n = bad.len();
        bad[n - 3] = 9; // next state
        assert!(!minecraft_handshake(&bad));
        assert!(!minecraft_handshake(
            b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0"
        ));
        assert!(!minecraft_handshake(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(minecraft_answer(
            b"\x30\x00\x2e{\"version\":{\"name\":\"1.20\"}}"
        ));
        assert!(!minecraft_answer(b"\x30\x00\x2eNOPE"));
    }
}
