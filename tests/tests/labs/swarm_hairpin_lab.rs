//! The swarm view on real BitTorrent clients (issue 15): alice and bob leech one torrent
//! from a libtorrent seeder on the internet side (opentracker beside it) and trade pieces
//! with each other through the gateway. The swarm is listed with both subscribers; its
//! transit bytes each way and its local bytes agree with tcpdump within 1%; a second
//! daemon run with `swarms.enabled: false` on the same lab serves no swarm and writes no
//! swarm row to the history store.
//!
//! Hairpin. In the default lab alice and bob share a bridge, so their traffic to each other
//! never reaches the gateway. Here, as an ISP's access network does, it is sent through the
//! gateway: alice's and bob's switch ports are isolated (`bridge link ... isolated on`: they
//! only reach the gateway's port), and the gateway answers ARP for the subscribers' segment
//! on its downlink (`proxy_arp` with `proxy_arp_pvlan`, which allows answering back out of
//! the interface the request came in on) and routes the packet back out of the same
//! interface (`send_redirects` off, so no ICMP redirect tells alice to go direct).
//!
//! What the probe sees of a hairpinned conversation: both of its directions enter the
//! gateway on `downlink`, so the kernel keys each from its sender (alice → bob as subscriber
//! alice, bob → alice as subscriber bob) and counts it once, as `up`, at XDP ingress; the
//! copy routed back out of `downlink` is not seen again (no ingress). The swarm view adds
//! those two `up` counts as the swarm's local bytes (swarms/src/table.rs).
//!
//! Ground truth, from captures on the peer ends of the gateway's veths, outbound only (the
//! frames the probe sees at ingress, each once, whole, with offloads off):
//! - local: TCP frames between alice and bob sent by switch port `gw` in `<prefix>-sw`
//!   (both directions enter `downlink` there; the hairpinned copies come back in on `gw`
//!   and are not captured outbound);
//! - transit up: TCP frames from alice or bob to the seeder, on the same capture;
//! - transit down: TCP frames from the seeder, sent by `eth0` in `<prefix>-net`.
//!
//! Only peer-wire frames (TCP and uTP) count: tracker announces tell the view who takes part
//! in a swarm but their bytes are not the swarm's. Each leecher runs a uTP and a TCP session
//! (as `peerwarden lab traffic` does), each refusing its own address, so alice and bob trade
//! through the gateway and never with themselves over loopback. Which transport carries their
//! trade is libtorrent's choice (seen: almost all TCP in one run, almost all uTP in another),
//! so the split is printed, not asserted.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs swarm_hairpin_lab::`.

use std::{
    net::IpAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use peerwarden_lab::{
    http_get,
    swarm::{self, PYTHON, Torrent},
};
use peerwarden_tests::{
    captures::IngressCaptures,
    lab::{HTTP_TIMEOUT, Lab, Procs, TempDir, run_bounded, spawn_in, until_still},
};

const PREFIX: &str = "swh";
const API_PORT: u16 = 9707;

const ALICE: &str = "100.64.1.10";
const BOB: &str = "100.64.1.20";
const SEEDER: &str = "198.51.100.7";
const BT_PORT: u16 = 6881;
/// The torrent's size, and the seeder's upload limit (bytes a second): slow enough that
/// alice and bob fetch most pieces from each other.
const SIZE_MB: u32 = 6;
const SEED_RATE: u32 = 1_000_000;
/// Every peer-wire frame between the subscribers, and between them and the seeder.
const FILTER: &str = "(tcp or udp) and (host 100.64.1.10 or host 100.64.1.20) and \
                      (host 198.51.100.7 or (host 100.64.1.10 and host 100.64.1.20))";

/// `ip netns exec <ns> <args>`, bounded; panics with its output unless it succeeds.
fn run_in(ns: &str, args: &[&str]) {
    let out = run_bounded(
        Command::new("ip").args(["netns", "exec", ns]).args(args),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{args:?} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends alice ↔ bob through the gateway (see the module doc).
fn hairpin(lab: &Lab) {
    for port in ["alice", "bob"] {
        run_in(
            &lab.netns("sw"),
            &["bridge", "link", "set", "dev", port, "isolated", "on"],
        );
    }
    for kv in [
        "net.ipv4.conf.downlink.proxy_arp=1",
        "net.ipv4.conf.downlink.proxy_arp_pvlan=1",
        "net.ipv4.neigh.downlink.proxy_delay=0",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.downlink.send_redirects=0",
    ] {
        run_in(&lab.netns("gw"), &["sysctl", "-qw", kv]);
    }
}

/// The seeder, rate-limited, once it seeds `torrent` (the lab's own seeder runs unlimited).
fn start_seeder(lab: &Lab, dir: &Path, script: &str, torrent: &Torrent, procs: &mut Procs) {
    let net = lab.netns("net");
    let log = dir.join("seeder.log");
    let seeder = spawn_in(
        &net,
        &[
            PYTHON,
            script,
            "seed",
            "--torrent",
            &torrent.torrent.to_string_lossy(),
            "--dir",
            &torrent.payload.parent().unwrap_or(dir).to_string_lossy(),
            "--bind",
            SEEDER,
            "--port",
            &BT_PORT.to_string(),
            "--upload-limit",
            &SEED_RATE.to_string(),
        ],
        &log,
    );
    procs.0.push(("seeder".into(), seeder));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("\"seeding\"")
    {
        assert!(
            Instant::now() < deadline,
            "the seeder is not seeding after 30 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Alice and bob leech the torrent into `dir/<run>-<who>` (a uTP and a TCP session each,
/// on consecutive ports, refusing their own address) and all four finish within 60 s.
fn leech(lab: &Lab, dir: &Path, script: &str, torrent: &Torrent, run: &str) {
    let mut procs = Procs(Vec::new());
    for (who, addr) in [("alice", ALICE), ("bob", BOB)] {
        let save = dir.join(format!("{run}-{who}"));
        std::fs::create_dir_all(&save).expect("leech dir");
        let child = spawn_in(
            &lab.netns(who),
            &[
                PYTHON,
                script,
                "leech",
                "--torrent",
                &torrent.torrent.to_string_lossy(),
                "--dir",
                &save.to_string_lossy(),
                "--bind",
                addr,
                "--port",
                &BT_PORT.to_string(),
                "--transport",
                "utp",
                "--transport",
                "tcp",
                "--block",
                &format!("{addr}/32"),
            ],
            &dir.join(format!("{run}-{who}.log")),
        );
        procs.0.push((format!("{who}'s leecher"), child));
    }
    let t0 = Instant::now();
    procs.wait_all(Duration::from_secs(60));
    for (who, child) in &mut procs.0 {
        let status = child.wait().expect("leecher status");
        assert!(status.success(), "{who} exited {status}");
    }
    eprintln!(
        "{run}: both leechers done in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// The swarm's (subscribers, transit up, transit down, local) in `/api/v1/swarms`.
fn listed(lab: &Lab, hash: &str) -> Option<(u64, u64, u64, u64)> {
    let list = lab.api("/api/v1/swarms");
    let s = list["swarms"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == hash)?
        .clone();
    let b = |k: &str| s["bytes"][k].as_u64().unwrap_or(0);
    Some((
        s["subscribers"].as_u64().unwrap_or(0),
        b("transit_up"),
        b("transit_down"),
        b("local"),
    ))
}

/// Every row of the store's swarm table, as text (the sqlite3 shell, read-only).
fn swarm_rows(db: &Path) -> String {
    let out = run_bounded(
        Command::new("sqlite3").arg("-readonly").arg(db).arg(
            "SELECT t, hex(swarm), local, transit_up, transit_down FROM swarm_minute \
             ORDER BY t, swarm",
        ),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "reading swarm_minute: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn two_subscribers_and_a_remote_seeder_local_and_transit_bytes_match_the_wire() {
    let tmp = TempDir::new("swarm-hairpin");
    let lab = Lab::up(PREFIX, API_PORT, &["--no-daemon"]);
    hairpin(&lab);
    // The lab's torrent (HTTP and UDP trackers) and opentracker, from `peerwarden lab`.
    let pw_lab = peerwarden_lab::Lab::new(PREFIX).expect("prefix");
    let script = swarm::install_script(&pw_lab).expect("bt_peer.py");
    let torrent = swarm::make_torrent(&pw_lab, &script, 1, SIZE_MB).expect("torrent");
    let hash = torrent.infohash.clone();
    let _tracker = swarm::start_tracker(&pw_lab, &torrent).expect("opentracker");
    let mut seeder = Procs(Vec::new());
    start_seeder(&lab, &tmp.0, &script, &torrent, &mut seeder);

    // The view on.
    let d = lab.daemon_with_store(&tmp.0, 1, "swarms: { enabled: true }\n");
    let captures = IngressCaptures::start(&lab, FILTER, &tmp.0);
    leech(&lab, &tmp.0, &script, &torrent, "on");
    let (up_frames, down_frames) = captures.stop();

    let subs: [IpAddr; 2] = [ALICE.parse().expect("ip"), BOB.parse().expect("ip")];
    let seeder: IpAddr = SEEDER.parse().expect("ip");
    let (mut local, mut up, mut down, mut other) = (0u64, 0u64, 0u64, 0u64);
    let mut local_utp = 0u64;
    for f in up_frames {
        let len = u64::from(f.len);
        match f.tuple {
            Some((proto, s, _, d, _)) if subs.contains(&s) && subs.contains(&d) => {
                local += len;
                if proto == "udp" {
                    local_utp += len;
                }
            }
            Some((_, s, _, d, _)) if subs.contains(&s) && d == seeder => up += len,
            _ => other += len,
        }
    }
    for f in down_frames {
        match f.tuple {
            Some((_, s, _, d, _)) if s == seeder && subs.contains(&d) => down += u64::from(f.len),
            _ => other += u64::from(f.len),
        }
    }

    let got = until_still(
        || listed(&lab, &hash),
        Duration::from_secs(3),
        Duration::from_secs(20),
    );
    eprintln!(
        "swarm {hash}: listed (subscribers, transit up, transit down, local) {got:?}; \
         captured transit up {up}, transit down {down}, local {local} ({local_utp} of it uTP; \
         other frames {other})"
    );
    let (subscribers, got_up, got_down, got_local) =
        got.unwrap_or_else(|| panic!("swarm {hash} not listed: {}", lab.api("/api/v1/swarms")));
    assert_eq!(subscribers, 2, "alice and bob take part in the swarm");
    assert!(
        local > 1_000_000 && down > 1_000_000,
        "alice and bob traded {local} bytes with each other ({local_utp} over uTP) and got \
         {down} from the seeder: not the swarm this test needs"
    );
    let near = |got: u64, truth: u64| (got as f64 - truth as f64).abs() <= truth as f64 * 0.01;
    let ratio = |got: u64, truth: u64| got as f64 / truth.max(1) as f64;
    eprintln!(
        "listed / captured: transit up {:.5}, transit down {:.5}, local {:.5}",
        ratio(got_up, up),
        ratio(got_down, down),
        ratio(got_local, local)
    );
    assert!(
        near(got_up, up) && near(got_down, down) && near(got_local, local),
        "the swarm's bytes (transit up {got_up}, down {got_down}, local {got_local}) vs \
         captured (up {up}, down {down}, local {local})"
    );
    d.stop_cleanly("the view on");
    let db = tmp.0.join("history.db");
    let before = swarm_rows(&db);
    eprintln!("swarm rows after the view-on run:\n{before}");

    // The view off: the same swarm again (fresh downloads), across a minute boundary, when
    // the view would write its rows.
    let d = lab.daemon_with_store(&tmp.0, 2, "swarms: { enabled: false }\n");
    let started = unix_now();
    leech(&lab, &tmp.0, &script, &torrent, "off");
    let (code, body) =
        http_get(lab.api_addr(), "/api/v1/swarms", HTTP_TIMEOUT).expect("GET /api/v1/swarms");
    assert_eq!(code, 404, "no swarm view when it is off: {body}");
    // The daemon saw the swarm (its flows are listed), it just keeps no swarm view.
    let flows = lab.api("/api/v1/flows?limit=10000");
    let bt = flows["flows"].as_array().map_or(0, |a| {
        a.iter().filter(|f| f["label"] == "bittorrent").count()
    });
    assert!(bt > 0, "the second run's peer flows are listed: {flows}");
    // A walk in the daemon's first minute, then one in the next: the boundary between.
    let boundary = (started + 2) / 60 * 60 + 60;
    let wait = (boundary + 3).saturating_sub(unix_now());
    eprintln!("waiting {wait} s for a minute boundary with the view off");
    thread::sleep(Duration::from_secs(wait));
    d.stop_cleanly("the view off");
    let after = swarm_rows(&db);
    assert_eq!(
        after, before,
        "the view off wrote swarm rows (before:\n{before}\nafter:\n{after})"
    );
}
