//! Floods of new 5-tuples for the probe, through `BPF_PROG_TEST_RUN`: frames made in place
//! from one template (no allocation per packet), and the flow map's size and memory as the
//! kernel reports them in `/proc/self/fdinfo`.

use std::net::Ipv4Addr;

use peerwarden_common::{
    FlowKey,
    flow::{FAMILY_V4, PROTO_UDP},
};

use crate::packets::{Vlan, udp_frame};

/// A UDP frame whose 5-tuple changes with a counter: subscriber address and port from the
/// counter (addresses from 100.65.0.0 up, inside the lab's 100.64.0.0/10, none of them a
/// test subscriber's), to one DNS-like server in 203.0.113.0/24. Every index below
/// [`FloodFrames::MAX`] is a distinct flow.
pub struct FloodFrames {
    frame: Vec<u8>,
}

/// Offset of the IPv4 source address in an untagged frame.
const SRC_ADDR: usize = 14 + 12;
/// Offset of the UDP source port.
const SRC_PORT: usize = 14 + 20;

impl FloodFrames {
    /// Distinct tuples: 65,536 ports for each of 4,096 addresses.
    pub const MAX: u64 = 1 << 28;
    /// The first subscriber address used.
    pub const FIRST_ADDR: Ipv4Addr = Ipv4Addr::new(100, 65, 0, 0);
    /// The server every flood packet goes to.
    pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);

    /// The template: 32 bytes of zeros as payload (no fingerprint matches them).
    pub fn new() -> FloodFrames {
        let src = (Self::FIRST_ADDR, 1).into();
        let dst = (Self::SERVER, 53).into();
        FloodFrames {
            frame: udp_frame(Vlan::Untagged, src, dst, &[0u8; 32]),
        }
    }

    /// The frame of flow number `i` going up (from the subscriber side). The IPv4 and UDP
    /// checksums are left stale: the probe does not check them.
    pub fn up(&mut self, i: u64) -> &[u8] {
        assert!(i < Self::MAX, "flood index {i} past {}", Self::MAX);
        let addr = u32::from(Self::FIRST_ADDR) + (i >> 16) as u32;
        self.frame[SRC_ADDR..SRC_ADDR + 4].copy_from_slice(&addr.to_be_bytes());
        self.frame[SRC_PORT..SRC_PORT + 2].copy_from_slice(&(i as u16).to_be_bytes());
        &self.frame
    }

    /// The flow key the probe files flow number `i` under.
    pub fn key(i: u64) -> FlowKey {
        let addr = u32::from(Self::FIRST_ADDR) + (i >> 16) as u32;
        let mut k = FlowKey {
            sub_port: i as u16,
            remote_port: 53,
            proto: PROTO_UDP,
            family: FAMILY_V4,
            ..FlowKey::default()
        };
        k.sub_addr[..4].copy_from_slice(&addr.to_be_bytes());
        k.remote_addr[..4].copy_from_slice(&Self::SERVER.octets());
        k
    }
}

impl Default for FloodFrames {
    fn default() -> Self {
        FloodFrames::new()
    }
}

/// A BPF map of this process as `/proc/self/fdinfo` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// `map_type` (9: LRU hash).
    pub map_type: u32,
    /// `key_size` and `value_size`, bytes.
    pub key_value: (u32, u32),
    /// `max_entries`.
    pub max_entries: u32,
    /// `memlock`: bytes of kernel memory charged to the map.
    pub memlock: u64,
}

/// BPF map type of an LRU hash map.
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

/// Every BPF map this process holds a descriptor of.
pub fn bpf_maps() -> Vec<MapInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(t), Some(k), Some(v), Some(n), Some(m)) = (
            field("map_type"),
            field("key_size"),
            field("value_size"),
            field("max_entries"),
            field("memlock"),
        ) {
            out.push(MapInfo {
                map_type: t as u32,
                key_value: (k as u32, v as u32),
                max_entries: n as u32,
                memlock: m,
            });
        }
    }
    out
}

/// The flow map of a probe loaded with `entries`: the LRU hash of that size keyed by a
/// `FlowKey` to a `FlowValue`.
pub fn flow_map_info(entries: u32) -> Option<MapInfo> {
    let kv = (
        std::mem::size_of::<FlowKey>() as u32,
        std::mem::size_of::<peerwarden_common::FlowValue>() as u32,
    );
    bpf_maps().into_iter().find(|m| {
        m.map_type == BPF_MAP_TYPE_LRU_HASH && m.max_entries == entries && m.key_value == kv
    })
}

/// This process's resident set, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
