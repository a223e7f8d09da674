//! The stores and tables the scale benches fill: minutes of rows for many subscribers, all
//! active (`history_scale`, `api_scale`), and a live swarm table with its store rows
//! (`swarms_scale`, `api_scale`).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::Ordering,
    time::{Duration, Instant, UNIX_EPOCH},
};

use peerwarden::{
    history::{History, SwarmBytes},
    probe::LabelCounters,
};
use peerwarden_common::{
    CounterValue, Direction, Label,
    flow::{FAMILY_V4, FlowKey, PROTO_TCP},
    label::ALL_LABELS,
    policy::SubUsage,
};
use peerwarden_swarms::{InfoHash, ListenPort, Sighting, Source, SwarmTable, SwarmsConfig};

/// Subscribers in each swarm of [`swarm_table`].
pub const SUBS_PER_SWARM: u32 = 4;

/// The subscribers' owner ids (`sub-0`, `sub-1`...) with their indexes.
pub fn owners(subscribers: u32) -> Vec<(String, u32)> {
    (0..subscribers).map(|i| (format!("sub-{i}"), i)).collect()
}

/// Records `minutes` whole minutes from `first` (a minute's start, unix seconds) for
/// `subscribers` subscribers, every one active in every minute (a BitTorrent download and
/// a TLS upload: two label rows and two class rows per subscriber and minute), and the
/// label totals, flushed once a minute as the daemon does it. Returns the time it took.
pub fn fill_subscribers(history: &History, subscribers: u32, first: i64, minutes: u32) -> Duration {
    let starts: Vec<i64> = (0..i64::from(minutes)).map(|m| first + m * 60).collect();
    fill_subscribers_at(history, subscribers, &starts)
}

/// [`fill_subscribers`] at the minutes starting at `starts` (in time order, not
/// necessarily one after the other).
pub fn fill_subscribers_at(history: &History, subscribers: u32, starts: &[i64]) -> Duration {
    fill_subscribers_leaving(history, subscribers, starts, false)
}

/// [`fill_subscribers_at`], the last minute's rows left in memory when `leave_last` (as
/// the daemon holds the current minute's rows until it has ended). Panics if recording the
/// last minute flushed after all (a write fell due): the figures would be a flushed store's.
pub fn fill_subscribers_leaving(
    history: &History,
    subscribers: u32,
    starts: &[i64],
    leave_last: bool,
) -> Duration {
    let owners = owners(subscribers);
    let (bt, tls) = (Label::Bittorrent.id() as usize, Label::Tls.id() as usize);
    let mut kernel = vec![SubUsage::default(); subscribers as usize];
    let mut labels: LabelCounters = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
    let start = Instant::now();
    for (i, first) in starts.iter().enumerate() {
        let flushes = history.flushes.load(Ordering::Relaxed);
        let at = UNIX_EPOCH + Duration::from_secs((first + 30) as u64);
        for (i, u) in kernel.iter_mut().enumerate() {
            let n = 1 + (i as u64 % 97);
            u.labels[bt][1].bytes += 1500 * 1000 * n;
            u.labels[bt][1].packets += 1000 * n;
            u.labels[tls][0].bytes += 80 * 200 * n;
            u.labels[tls][0].packets += 200 * n;
        }
        history.record_subscribers_with(at, &owners, |i| Some(kernel[i as usize]));
        for (l, dir) in [(bt, 1), (tls, 0)] {
            let c = &mut labels[l][dir];
            c.bytes = kernel.iter().map(|u| u.labels[l][dir].bytes).sum::<u64>();
            c.packets += 1;
            c.flows += 1;
        }
        history.record_labels(at, &labels);
        if !(leave_last && i + 1 == starts.len()) {
            history.flush().expect("flush");
        } else {
            assert_eq!(
                history.flushes.load(Ordering::Relaxed),
                flushes,
                "recording the last minute flushed its rows (a flush fell due)"
            );
        }
    }
    start.elapsed()
}

/// Swarm `i`'s 20-byte id.
pub fn swarm_id(i: u32) -> [u8; 20] {
    let mut h = [0x5a; 20];
    h[..4].copy_from_slice(&i.to_be_bytes());
    h
}

/// One minute's store rows of `swarms` swarms.
pub fn swarm_rows(swarms: u32, minute: u32) -> Vec<SwarmBytes> {
    (0..swarms)
        .map(|i| SwarmBytes {
            swarm: swarm_id(i),
            local: u64::from(i % 7) * 100_000,
            transit_up: u64::from(i) * 1_000 + u64::from(minute),
            transit_down: u64::from(i) * 9_000 + 1_500_000,
        })
        .collect()
}

fn swarm_flow(sub: u32, peer: u32) -> FlowKey {
    let mut k = FlowKey {
        family: FAMILY_V4,
        proto: PROTO_TCP,
        sub_port: 50_000 + (peer % 10_000) as u16,
        remote_port: 6881,
        ..Default::default()
    };
    let s = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + sub);
    let r = Ipv4Addr::from(u32::from(Ipv4Addr::new(203, 0, 113, 0)) + (peer % 250));
    k.sub_addr[..4].copy_from_slice(&s.octets());
    k.remote_addr[..4].copy_from_slice(&r.octets());
    k
}

/// A live swarm table of `swarms` swarms with [`SUBS_PER_SWARM`] subscribers each (one
/// flow each to a remote peer), seen at `now` (unix seconds), built through
/// `SwarmTable::observe` and `account`.
pub fn swarm_table(swarms: u32, now: u64) -> SwarmTable {
    let config = SwarmsConfig {
        enabled: true,
        ..SwarmsConfig::default()
    };
    let mut t = SwarmTable::new(&config, None).expect("table");
    let subs = |a: IpAddr| matches!(a, IpAddr::V4(v) if v.octets()[0] == 100);
    for i in 0..swarms {
        let s = Sighting {
            info_hash: InfoHash(swarm_id(i)),
            source: Source::PeerWire,
            listen_port: ListenPort::None,
        };
        for j in 0..SUBS_PER_SWARM {
            let k = swarm_flow(i * SUBS_PER_SWARM + j, i + j);
            t.observe(&k, Direction::Up, &s, now, &subs);
            let down = u64::from(i % 1000) * 10_000 + u64::from(j);
            t.account(&k, u64::from(j) * 1_000, down, now + 1, &subs);
        }
    }
    t
}
