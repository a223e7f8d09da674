//! Synthetic timelines, each seen two ways: packet by packet (the offline classifier) and
//! as per-second sums (the daemon's flow walk).

use super::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const MTU: u64 = 1514;
const ACK: u64 = 66;

/// `(time, up, down)` events, packet by packet.
#[derive(Default)]
struct Timeline(Vec<(u64, u64, u64)>);

impl Timeline {
    /// A request of `req` bytes at `t`, answered after 20 ms by `bytes` at `mbps`, an ACK
    /// up for every two full packets down.
    fn fetch(&mut self, t: u64, req: u64, bytes: u64, mbps: u64) {
        self.fetch_in(t, req, bytes, mbps, MTU);
    }

    /// [`Self::fetch`] in pieces of `chunk` bytes (64 KB: a receive offload's aggregate),
    /// for timelines too long to follow frame by frame.
    fn fetch_in(&mut self, t: u64, req: u64, bytes: u64, mbps: u64, chunk: u64) {
        self.0.push((t, req, 0));
        let per_packet = chunk * 8 * 1000 / mbps; // ns per packet
        let (mut sent, mut at, mut n) = (0, t + 20 * MS, 0u64);
        while sent < bytes {
            let b = chunk.min(bytes - sent);
            self.0.push((at, 0, b));
            n += 1;
            if n % 2 == 0 {
                self.0.push((at + 100_000, ACK, 0));
            }
            sent += b;
            at += per_packet;
        }
    }

    /// An upload: the same, the other way.
    fn upload(&mut self, t: u64, bytes: u64, mbps: u64) {
        let mut down = Timeline::default();
        down.fetch(t, 400, bytes, mbps);
        self.0
            .extend(down.0.into_iter().map(|(t, up, down)| (t, down, up)));
    }

    fn packets(&self) -> Shape {
        let mut ev = self.0.clone();
        ev.sort_by_key(|e| e.0);
        let mut s = Shape::default();
        for (t, up, down) in ev {
            s.observe(t, up, down);
        }
        s
    }

    /// The daemon's view: sums over each second of the walk (`phase` its offset from the
    /// timeline's clock), stamped with the time of the second's last packet as the kernel's
    /// `last_seen_ns` has it.
    fn ticks(&self, phase: u64) -> Shape {
        let end = self.0.iter().map(|e| e.0).max().unwrap_or(0) + 2 * S;
        let mut sums = vec![(0u64, 0u64, 0u64); (end / S + 2) as usize];
        for &(t, up, down) in &self.0 {
            let i = ((t + phase) / S) as usize;
            sums[i].0 += up;
            sums[i].1 += down;
            sums[i].2 = sums[i].2.max(t + phase);
        }
        let mut s = Shape::default();
        for (up, down, last) in sums {
            if up + down > 0 {
                s.observe(last, up, down);
            }
        }
        s
    }

    /// Video both ways, whatever the walk's phase.
    fn is_video_everywhere(&self) -> bool {
        self.packets().is_video() && (0..10).all(|k| self.ticks(k * 100 * MS).is_video())
    }

    /// Video in neither view, whatever the walk's phase.
    fn is_video_nowhere(&self) -> bool {
        !self.packets().is_video() && (0..10).all(|k| !self.ticks(k * 100 * MS).is_video())
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// Log-uniform between `lo` and `hi`.
    fn log(&mut self, lo: u64, hi: u64) -> u64 {
        let f = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        (lo as f64 * (hi as f64 / lo as f64).powf(f)) as u64
    }
}

/// A player: `n` segments of about `bytes`, one per `period`, with jitter of up to
/// `jitter` on the fetch time and up to +/-20% on the size.
fn player(n: u64, period: u64, bytes: u64, mbps: u64, jitter: u64, seed: u64) -> Timeline {
    let mut rng = Rng(seed);
    let mut t = Timeline::default();
    for i in 0..n {
        let size = bytes * rng.range(80, 120) / 100;
        t.fetch(i * period + rng.range(0, jitter), 450, size, mbps);
    }
    t
}

#[test]
fn hls_six_second_segments_of_1_2_mb() {
    for seed in 1..6 {
        let t = player(8, 6 * S, 1_200_000, 20, 300 * MS, seed);
        assert!(t.is_video_everywhere(), "seed {seed}");
    }
}

#[test]
fn dash_two_second_segments() {
    for seed in 1..6 {
        // 400 KB every 2 s (1.6 Mbit/s), fetched at 50 Mbit/s.
        let t = player(10, 2 * S, 400_000, 50, 100 * MS, seed);
        assert!(t.is_video_everywhere(), "seed {seed}");
    }
}

#[test]
fn decided_on_the_fifth_cycle_not_before() {
    // Five segments close four cycles; the sixth's start closes the fifth.
    let t = player(5, 4 * S, 800_000, 20, 0, 7);
    assert!(!t.packets().is_video());
    assert_eq!(t.packets().run(), CYCLES - 1);
    let t = player(6, 4 * S, 800_000, 20, 0, 7);
    assert!(t.packets().is_video());
}

#[test]
fn a_rate_switch_keeps_the_run() {
    // Adaptive streaming stepping up from 500 KB to 1.5 MB segments.
    let mut t = Timeline::default();
    for i in 0..8u64 {
        let size = if i < 4 { 500_000 } else { 1_500_000 };
        t.fetch(i * 4 * S, 450, size, 30);
    }
    assert!(t.is_video_everywhere());
}

#[test]
fn a_trickle_between_segments_leaves_the_gaps_idle() {
    // 4 s segments of 600 KB, and between them a player reading its socket slowly: the
    // server sends 1.3 KB (a window opened) 2.7 s into each period. Counted as activity,
    // each would be a burst of its own, too small for a segment, and break the run.
    let mut t = Timeline::default();
    for i in 0..10u64 {
        let start = i * 4 * S;
        t.fetch(start, 450, 600_000, 20);
        t.0.push((start + 2_700 * MS, 54, 1_318));
    }
    assert!(t.is_video_everywhere());
}

#[test]
fn a_player_drawing_each_segment_in_two_pieces() {
    // ffmpeg's player reading a 2 s segment of 300 KB through its socket: 250 KB arrive at
    // once (the receive window), the rest when it has read them, 2 s later, as the next
    // segment's first piece is due: pieces of 250 and 50 KB alternate every 2 s.
    let mut t = Timeline::default();
    for i in 0..16u64 {
        let (bytes, req) = if i % 2 == 0 {
            (250_000, 450)
        } else {
            (50_000, 120)
        };
        t.fetch(i * 2 * S, req, bytes, 20);
    }
    assert!(t.is_video_everywhere());
}

#[test]
fn live_playlists_between_segments_on_the_same_connection() {
    // Live HLS over one kept connection: a 6 s segment of 1.2 MB, and 3 s later the
    // playlist, 20 KB, fetched again.
    let mut t = Timeline::default();
    for i in 0..8u64 {
        t.fetch(i * 6 * S, 450, 1_200_000, 20);
        t.fetch(i * 6 * S + 3 * S, 450, 20_000, 20);
    }
    assert!(t.is_video_everywhere());
}

#[test]
fn a_stream_that_never_falls_below_the_trickle_rate_is_one_burst() {
    // A dodger filling every gap above the trickle rate (2 KB every 100 ms, 160 kbit/s): no
    // gap, one burst, not video; the cover costs about 13% of a 1.2 Mbit/s stream.
    let mut t = Timeline::default();
    for i in 0..12u64 {
        let start = i * 2 * S;
        t.fetch(start, 450, 300_000, 20);
        for k in 3..20 {
            t.0.push((start + k * 100 * MS, 54, 2_000));
        }
    }
    assert!(t.is_video_nowhere());
}

#[test]
fn a_large_download_is_one_burst() {
    let mut t = Timeline::default();
    t.fetch(0, 300, 200_000_000, 50);
    assert!(t.is_video_nowhere());
    assert_eq!(t.packets().run(), 0);
}

#[test]
fn a_throttled_download_with_regular_pauses_has_too_large_bursts() {
    // A download paced in 10 MB chunks every 5 s: regular, but no segment is that big.
    let mut t = Timeline::default();
    for i in 0..20 {
        t.fetch(i * 5 * S, 300, 10_000_000, 100);
    }
    assert!(t.is_video_nowhere());
}

#[test]
fn page_loads_of_many_small_objects() {
    let mut rng = Rng(11);
    for _ in 0..20 {
        let mut t = Timeline::default();
        let mut at = 0;
        for _page in 0..15 {
            // A page: 30 to 80 objects of 2 to 60 KB, a few ms apart.
            for _ in 0..rng.range(30, 80) {
                t.fetch(at, 500, rng.range(2_000, 60_000), 50);
                at += rng.range(5, 40) * MS;
            }
            // A reader's time on the page: 5 s to a minute. (With 2 to 30 s, 3 flows of these
            // 20 are taken for video: docs/classifier.md, "Video by its shape".)
            at += rng.range(5, 60) * S;
        }
        assert!(t.is_video_nowhere());
    }
}

#[test]
fn iperf3_constant_streams() {
    // Down: 10 Mbit/s without a pause; up: the same, the other way.
    let mut down = Timeline::default();
    down.fetch(0, 200, 40_000_000, 10);
    assert!(down.is_video_nowhere());
    let mut up = Timeline::default();
    up.upload(0, 40_000_000, 10);
    assert!(up.is_video_nowhere());
}

#[test]
fn photo_sync_uploads_segment_sized_files_regularly() {
    // 1 MB up every 4 s: the shape of a segment, the wrong way.
    let mut t = Timeline::default();
    for i in 0..15 {
        t.upload(i * 4 * S, 1_000_000, 20);
    }
    assert!(t.is_video_nowhere());
}

#[test]
fn random_bursts_at_random_intervals_stay_under_a_thousandth() {
    // Bursts of 10 KB to 20 MB at 0.2 to 20 s from each other, 30 per flow, delivered in
    // 64 KB pieces (20,000 flows frame by frame would take minutes in a debug build).
    let mut rng = Rng(0x5eed);
    let (mut flows, mut video) = (0, 0);
    for _ in 0..20_000 {
        let mut t = Timeline::default();
        let mut at = 0;
        for _ in 0..30 {
            let bytes = rng.log(10_000, 20_000_000);
            t.fetch_in(at, rng.range(200, 2000), bytes, 100, 64_000);
            at += bytes * 8 * 1000 / 100 + rng.range(200, 20_000) * MS;
        }
        flows += 1;
        video += u32::from(t.packets().is_video());
    }
    println!("{video} of {flows} random flows taken for video");
    assert!(
        video * 1000 <= flows,
        "{video} of {flows} random flows taken for video"
    );
}

#[test]
fn an_irregular_period_breaks_the_run() {
    // Segments 2, 5, 9, 3, 11 and 4 s apart, over and over: each period is within bounds,
    // no four in a row are alike.
    let mut t = Timeline::default();
    let mut at = 0;
    for i in 0..24 {
        t.fetch(at, 450, 900_000, 30);
        at += [2, 5, 9, 3, 11, 4][i % 6] * S;
    }
    assert!(t.is_video_nowhere());
}

#[test]
fn state_stays_a_few_counters() {
    assert!(std::mem::size_of::<Shape>() <= 96);
}
