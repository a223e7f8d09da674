//! Flow identity: the 5-tuple as seen from the flow's `Up` side, and a canonical form that
//! both directions of a flow share.

use std::{
    hash::{BuildHasherDefault, Hasher},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

pub use peerwarden_common::Direction;

/// A flow's 5-tuple, written from its `Up` side: `src` sends the `Up` packets. Offline that
/// is the flow's initiator (the sender of its first packet); in the daemon it is the
/// subscriber. Both directions of a flow use the same key, and [`Direction`] tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// IP protocol: [`crate::packet::TCP`] or [`crate::packet::UDP`].
    pub proto: u8,
    /// The `Up` side.
    pub src: SocketAddr,
    /// The `Down` side.
    pub dst: SocketAddr,
}

impl FlowKey {
    /// The key of the kernel's flow map entry: the subscriber side is `Up`.
    pub fn from_kernel(k: &peerwarden_common::FlowKey) -> FlowKey {
        let addr = |b: &[u8; 16]| -> IpAddr {
            if k.family == peerwarden_common::flow::FAMILY_V4 {
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(*b))
            }
        };
        FlowKey {
            proto: k.proto,
            src: SocketAddr::new(addr(&k.sub_addr), k.sub_port),
            dst: SocketAddr::new(addr(&k.remote_addr), k.remote_port),
        }
    }

    /// The same flow seen from the other side.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
        }
    }

    /// The endpoint that sends packets going `dir`.
    pub fn sender(&self, dir: Direction) -> SocketAddr {
        match dir {
            Direction::Up => self.src,
            Direction::Down => self.dst,
        }
    }
}

/// FxHash (rustc's hasher): flow keys are not attacker-chosen in a way that matters for an
/// offline tool, and the table is probed for every packet. The daemon bounds its table by
/// size, so a collision flood costs it time on one flow table, not memory.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.add(u64::from_le_bytes(a));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The other direction.
pub(crate) fn opposite(d: Direction) -> Direction {
    match d {
        Direction::Up => Direction::Down,
        Direction::Down => Direction::Up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_key_converts() {
        let mut k = peerwarden_common::FlowKey {
            proto: 6,
            family: 4,
            sub_port: 51413,
            remote_port: 6881,
            ..Default::default()
        };
        k.sub_addr[..4].copy_from_slice(&[100, 64, 1, 10]);
        k.remote_addr[..4].copy_from_slice(&[198, 51, 100, 7]);
        let f = FlowKey::from_kernel(&k);
        assert_eq!(f.src.to_string(), "100.64.1.10:51413");
        assert_eq!(f.sender(Direction::Down).to_string(), "198.51.100.7:6881");
        assert_eq!(f.reversed().src, f.dst);
    }
}
