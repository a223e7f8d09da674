//! Framing for the adversarial corpus: a UDP conversation, and a TCP connection with real
//! sequence numbers so that segmentation, reordering and overlapping retransmissions mean
//! what they say.

use std::net::{IpAddr, SocketAddr};

use peerwarden_common::Direction;
use pnet_packet::{
    ip::IpNextHeaderProtocols,
    tcp::{self, MutableTcpPacket},
};

use super::Case;
use crate::packets::{TcpFlags, Vlan, ip_frame, tcp_segment, udp_frame};

/// A UDP conversation between a subscriber and a remote end.
#[derive(Clone, Copy)]
pub(super) struct Udp {
    pub(super) sub: SocketAddr,
    pub(super) remote: SocketAddr,
}

impl Udp {
    pub(super) fn frame(&self, dir: Direction, payload: &[u8]) -> Vec<u8> {
        match dir {
            Direction::Up => udp_frame(Vlan::Untagged, self.sub, self.remote, payload),
            Direction::Down => udp_frame(Vlan::Untagged, self.remote, self.sub, payload),
        }
    }
}

/// A TCP connection with real sequence numbers, so that segmentation, reordering and
/// overlapping retransmissions mean what they say.
pub(super) struct Tcp {
    sub: SocketAddr,
    remote: SocketAddr,
    /// Next sequence number of each direction (`Up`, `Down`).
    pub(super) next: [u32; 2],
}

impl Tcp {
    pub(super) fn new(sub: SocketAddr, remote: SocketAddr) -> Tcp {
        Tcp {
            sub,
            remote,
            next: [0x1000_0000, 0x5000_0000],
        }
    }

    /// A segment going `dir` at `seq`, acknowledging what the other side sent so far.
    pub(super) fn segment(&self, dir: Direction, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
        let (src, dst, ack) = match dir {
            Direction::Up => (self.sub, self.remote, self.next[1]),
            Direction::Down => (self.remote, self.sub, self.next[0]),
        };
        let mut seg = tcp_segment(src, dst, flags, payload);
        {
            let mut t = MutableTcpPacket::new(&mut seg).expect("a TCP header");
            t.set_sequence(seq);
            t.set_acknowledgement(if flags & TcpFlags::ACK != 0 { ack } else { 0 });
            let sum = match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&t.to_immutable(), &s, &d),
                (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&t.to_immutable(), &s, &d),
                _ => unreachable!("one family per connection"),
            };
            t.set_checksum(sum);
        }
        ip_frame(
            Vlan::Untagged,
            src.ip(),
            dst.ip(),
            IpNextHeaderProtocols::Tcp,
            &seg,
        )
    }

    /// SYN, SYN-ACK, ACK.
    pub(super) fn open(&mut self, case: &mut Case) {
        case.push(
            Direction::Up,
            self.segment(Direction::Up, TcpFlags::SYN, self.next[0], &[]),
        );
        self.next[0] += 1;
        case.push(
            Direction::Down,
            self.segment(
                Direction::Down,
                TcpFlags::SYN | TcpFlags::ACK,
                self.next[1],
                &[],
            ),
        );
        self.next[1] += 1;
        case.push(
            Direction::Up,
            self.segment(Direction::Up, TcpFlags::ACK, self.next[0], &[]),
        );
    }

    /// One in-order data segment going `dir`.
    pub(super) fn send(&mut self, case: &mut Case, dir: Direction, payload: &[u8]) {
        let i = dir as usize;
        let f = self.segment(dir, TcpFlags::PSH | TcpFlags::ACK, self.next[i], payload);
        self.next[i] = self.next[i].wrapping_add(payload.len() as u32);
        case.push(dir, f);
    }

    /// `payload` going `dir` as segments of `sizes` bytes (the last takes the rest), sent
    /// in the order `order` gives (indices into the segments); the stream then continues
    /// after the whole payload.
    pub(super) fn send_pieces(
        &mut self,
        case: &mut Case,
        dir: Direction,
        payload: &[u8],
        size: usize,
        order: &[usize],
    ) {
        let i = dir as usize;
        let start = self.next[i];
        let pieces: Vec<(u32, &[u8])> = payload
            .chunks(size)
            .enumerate()
            .map(|(k, c)| (start.wrapping_add((k * size) as u32), c))
            .collect();
        assert_eq!(order.len(), pieces.len(), "an order for every piece");
        for &k in order {
            let (seq, bytes) = pieces[k];
            let f = self.segment(dir, TcpFlags::PSH | TcpFlags::ACK, seq, bytes);
            case.push(dir, f);
        }
        self.next[i] = start.wrapping_add(payload.len() as u32);
    }

    /// Two different copies of the same stretch of `dir`'s stream, `first` then `second`
    /// (an overlapping retransmission whose content changed); the stream continues after.
    pub(super) fn send_twice(
        &mut self,
        case: &mut Case,
        dir: Direction,
        first: &[u8],
        second: &[u8],
    ) {
        let i = dir as usize;
        let seq = self.next[i];
        for copy in [first, second] {
            let f = self.segment(dir, TcpFlags::PSH | TcpFlags::ACK, seq, copy);
            case.push(dir, f);
        }
        self.next[i] = seq.wrapping_add(first.len().max(second.len()) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{adversarial::Group, packets::Family};
    use pnet_packet::{Packet as _, ipv6::Ipv6Packet, tcp::TcpPacket};

    /// `(seq, payload)` of each frame's TCP segment (IPv6, no extension headers), after
    /// checking its checksum.
    fn segments(case: &Case) -> Vec<(u32, Vec<u8>)> {
        case.frames
            .iter()
            .map(|s| {
                let ip = Ipv6Packet::new(&s.frame[14..]).expect("ipv6");
                let t = TcpPacket::new(ip.payload()).expect("tcp");
                assert_eq!(
                    t.get_checksum(),
                    tcp::ipv6_checksum(&t, &ip.get_source(), &ip.get_destination())
                );
                (t.get_sequence(), t.payload().to_vec())
            })
            .collect()
    }

    /// An empty IPv6 case and a connection in it.
    fn connection() -> (Case, Tcp) {
        let sub: SocketAddr = "[2001:db8:2::10]:40000".parse().expect("addr");
        let remote: SocketAddr = "[2001:db8:ffff::100]:20000".parse().expect("addr");
        (
            Case::new("t", Group::Disguise, Family::V6),
            Tcp::new(sub, remote),
        )
    }

    #[test]
    fn pieces_sent_out_of_order_reassemble_by_sequence_number() {
        let (mut case, mut tcp) = connection();
        let data: Vec<u8> = (0u8..68).collect();
        tcp.send_pieces(&mut case, Direction::Up, &data, 17, &[1, 3, 0, 2]);
        tcp.send(&mut case, Direction::Up, b"after");
        let segs = segments(&case);
        assert_eq!(segs[0].1, data[17..34]);
        let start = segs[2].0;
        let mut stream = vec![0u8; 68];
        for (seq, p) in &segs[..4] {
            let at = seq.wrapping_sub(start) as usize;
            stream[at..at + p.len()].copy_from_slice(p);
        }
        assert_eq!(stream, data);
        assert_eq!(segs[4], (start.wrapping_add(68), b"after".to_vec()));
    }

    #[test]
    fn both_copies_of_an_overlap_share_one_sequence_number() {
        let (mut case, mut tcp) = connection();
        tcp.send_twice(&mut case, Direction::Up, b"junkjunk", b"realdata");
        tcp.send(&mut case, Direction::Up, b"next");
        let segs = segments(&case);
        assert_eq!(segs[0].0, segs[1].0);
        assert_eq!(
            (segs[0].1.as_slice(), segs[1].1.as_slice()),
            (&b"junkjunk"[..], &b"realdata"[..])
        );
        assert_eq!(segs[2].0, segs[0].0.wrapping_add(8));
    }
}
