//! A subscriber on a PPPoE session (issue 14, item 8): real BitTorrent (libtorrent) and web
//! traffic (curl over HTTP and TLS, IPv4 and IPv6) between a subscriber namespace and the
//! internet namespace, carried in PPPoE session frames over the veth between the subscriber
//! and the gateway, where the probe's downlink program sees them. They are labelled as over
//! plain Ethernet, charged to the subscriber who owns the inner address, and the policy's
//! police rule on the subscriber's p2p uploads holds its rate on the wire.
//!
//! ```text
//!  pwe-sub                      pwe-gw                                  pwe-net
//!  ppp0 100.64.1.10  (TUN)      ppp0 100.64.1.1 (TUN)                   198.51.100.2  tracker
//!   pppoe.py client             pppoe.py ac         uplink 198.51.100.1 198.51.100.7  leechers
//!  eth0 ─── PPPoE frames ─── downlink [xdp_downlink]   [xdp_uplink] ─── 203.0.113.10  web
//! ```
//!
//! Why a user-space PPPoE (lab/pppoe.py) and not Debian's pppd and pppoe-server: the lab
//! machine's kernel is built without PPP (`# CONFIG_PPP is not set`, no /dev/ppp), so pppd
//! cannot open a PPP unit at all, whatever is installed. The script does what they would on
//! the wire: discovery (PADI/PADO/PADR/PADS), LCP, IPCP and IPv6CP in session frames, then
//! IP in session frames (PPP protocols 0x0021 and 0x0057). The gateway terminates the
//! session, as a BNG does, so the probe sees the subscriber's packets going up in PPPoE and
//! the internet's coming down as plain IP on the uplink.
//!
//! Namespaces only, lab addresses only, no default route anywhere; the namespaces and every
//! process started in them go when the test ends, also on failure. Everything is bounded
//! (curl --max-time, the discovery timeout, the measurement windows). Run as root, alone
//! (rates are measured on a two-core machine):
//! `cargo test -p peerwarden-tests --test labs pppoe_lab:: -- --test-threads=1`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use peerwarden_lab::http_get;
use peerwarden_tests::lab::{
    Daemon, HTTP_TIMEOUT, TempDir, require_root, run_bounded, wait_listening,
};
use serde_json::Value;

const PREFIX: &str = "pwe";
const API_PORT: u16 = 9479;
const SUB_V4: &str = "100.64.1.10";
const SUB_V6: &str = "2001:db8:1::10";
const AC_V4: &str = "100.64.1.1";
const AC_V6: &str = "2001:db8:1::1";
const GW_UP_V4: &str = "198.51.100.1";
const GW_UP_V6: &str = "2001:db8:ff::1";
const TRACKER_V4: &str = "198.51.100.2";
const NET_V6: &str = "2001:db8:ff::2";
const LEECHER_V4: &str = "198.51.100.7";
const WEB_V4: &str = "203.0.113.10";
const WEB_V6: &str = "2001:db8:203::10";
const TRACKER_PORT: u16 = 6969;
const SEEDER_PORT: u16 = 6881;
const LEECHERS: u16 = 3;
/// Debian's interpreter: python3-libtorrent is installed for it.
const PYTHON: &str = "/usr/bin/python3";
/// The police rate on alice's p2p uploads, bits per second.
const POLICE_BITS: f64 = 8e6;
/// Bytes a PPPoE session frame carries beyond the same IP packet in plain Ethernet.
const PPPOE_OVERHEAD: u64 = 8;
/// How far below the police rate the measured rate may be: six consecutive runs on
/// 2026-12-07 measured 7.76, 7.92, 7.93, 7.90, 8.00 and 7.79 Mbit/s (3.0% below at worst:
/// TCP does not quite fill a policer's rate); three times that.
const BELOW: f64 = 0.10;
/// How far above: the same runs never went over the rate; the bucket (292 KiB) could add
/// 2.4% to a 12 s window if it had refilled whole just before it.
const ABOVE: f64 = 0.03;

fn ns(role: &str) -> String {
    format!("{PREFIX}-{role}")
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lab")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Runs a command, bounded to 60 s; panics with its output unless it succeeds.
fn sh(args: &[&str]) -> String {
    let out = run_bounded(
        Command::new(args[0]).args(&args[1..]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cmd` inside namespace `role`.
fn in_ns(role: &str, cmd: &[&str]) -> String {
    let n = ns(role);
    let mut args = vec!["ip", "netns", "exec", &n];
    args.extend_from_slice(cmd);
    sh(&args)
}

/// The three namespaces, the processes started in them, and the daemon. Field order is
/// drop order: the daemon stops (detaching the probe), then the processes (by pid), then the
/// namespaces go.
struct PppoeLab {
    daemon: Option<Daemon>,
    children: Vec<(String, Child)>,
    tmp: TempDir,
}

impl Drop for PppoeLab {
    fn drop(&mut self) {
        drop(self.daemon.take());
        for (name, child) in &mut self.children {
            if thread::panicking() {
                let log = self.tmp.0.join(format!("{name}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "--- {name} (last lines):\n{}",
                    lines[lines.len().saturating_sub(15)..].join("\n")
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_namespaces();
    }
}

fn remove_namespaces() {
    for role in ["sub", "gw", "net"] {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns(role)])
            .stderr(Stdio::null())
            .status();
    }
}

impl PppoeLab {
    /// The namespaces, veths, addresses and routes; nothing started yet.
    fn build() -> PppoeLab {
        require_root();
        remove_namespaces();
        let lab = PppoeLab {
            daemon: None,
            children: Vec::new(),
            tmp: TempDir::new("pppoe-lab"),
        };
        for role in ["sub", "gw", "net"] {
            sh(&["ip", "netns", "add", &ns(role)]);
            sh(&["ip", "-n", &ns(role), "link", "set", "lo", "up"]);
            in_ns(role, &["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
            in_ns(
                role,
                &["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"],
            );
        }
        in_ns("gw", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        in_ns("gw", &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        let (sub, gw, net) = (ns("sub"), ns("gw"), ns("net"));
        sh(&[
            "ip", "link", "add", "eth0", "netns", &sub, "type", "veth", "peer", "name", "downlink",
            "netns", &gw,
        ]);
        sh(&[
            "ip", "link", "add", "uplink", "netns", &gw, "type", "veth", "peer", "name", "eth0",
            "netns", &net,
        ]);
        for (role, dev) in [
            ("sub", "eth0"),
            ("gw", "downlink"),
            ("gw", "uplink"),
            ("net", "eth0"),
        ] {
            // Wire-sized frames: no segmentation offloads (as `peerwarden lab up` does).
            in_ns(
                role,
                &[
                    "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
                    "rx", "off",
                ],
            );
            sh(&["ip", "-n", &ns(role), "link", "set", dev, "up"]);
        }
        // The subscriber's line has no IP address: only PPPoE runs on it.
        for (role, dev, a) in [
            ("gw", "uplink", "198.51.100.1/24"),
            ("gw", "uplink", "2001:db8:ff::1/64"),
            ("net", "eth0", "198.51.100.2/24"),
            ("net", "eth0", "198.51.100.7/24"),
            ("net", "eth0", "203.0.113.10/24"),
            ("net", "eth0", "2001:db8:ff::2/64"),
            ("net", "eth0", "2001:db8:203::10/64"),
        ] {
            sh(&["ip", "-n", &ns(role), "addr", "add", a, "dev", dev, "nodad"]);
        }
        // Only lab prefixes, no default route.
        for (role, prefix, via) in [
            (&net, "100.64.0.0/10", GW_UP_V4),
            (&net, "2001:db8:1::/64", GW_UP_V6),
            (&gw, "203.0.113.0/24", TRACKER_V4),
            (&gw, "2001:db8:203::/64", NET_V6),
        ] {
            sh(&["ip", "-n", role, "route", "add", prefix, "via", via]);
        }
        lab
    }

    /// Starts `cmd` in namespace `role`, output to `<tmp>/<name>.log`; stopped on drop.
    fn spawn(&mut self, name: &str, role: &str, cmd: &[&str]) {
        let log = std::fs::File::create(self.log(name)).expect("a log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns(role)])
            .args(cmd)
            .current_dir(&self.tmp.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        self.children.push((name.to_string(), child));
    }

    fn log(&self, name: &str) -> PathBuf {
        self.tmp.0.join(format!("{name}.log"))
    }

    /// Waits (at most `timeout`) for a JSON line with `"event": event` in `name`'s log.
    fn wait_event(&self, name: &str, event: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
            if let Some(v) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["event"] == event)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {event:?} from {name} within {timeout:?}:\n{text}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn api(&self, path: &str) -> Value {
        let addr = SocketAddr::from(([127, 0, 0, 1], API_PORT));
        let (code, body) =
            http_get(addr, path, HTTP_TIMEOUT).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

/// Frames and bytes sent on `dev` in namespace `role` (the interface's own counters).
fn tx_counters(role: &str, dev: &str) -> (u64, u64) {
    let out = sh(&[
        "ip",
        "-j",
        "-s",
        "-n",
        &ns(role),
        "link",
        "show",
        "dev",
        dev,
    ]);
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    let tx = &v[0]["stats64"]["tx"];
    (
        tx["packets"].as_u64().expect("tx packets"),
        tx["bytes"].as_u64().expect("tx bytes"),
    )
}

/// curl from the subscriber; the bytes received and the rate in Mbit/s.
fn fetch(url: &str, extra: &[&str]) -> (u64, f64) {
    let mut cmd = vec![
        "curl",
        "-sS",
        "--max-time",
        "60",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download} %{speed_download}",
    ];
    cmd.extend_from_slice(extra);
    cmd.push(url);
    let out = in_ns("sub", &cmd);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.first().copied(), Some("200"), "{url}: {out}");
    let bytes: u64 = f[1].parse().expect("size");
    let speed: f64 = f[2].parse().expect("speed");
    (bytes, speed * 8e-6)
}

const POLICY: &str = "timezone: UTC\n\
plans:\n\
\x20 lab:\n\
\x20   rate: { down: 10gbit, up: 10gbit }\n\
\x20   classes:\n\
\x20     p2p: { up: 8mbit, burst: 292kb, action: police }\n\
subscribers:\n\
\x20 - { id: alice, prefixes: [100.64.1.10/32, \"2001:db8:1::10/128\"], plan: lab }\n\
default_plan: lab\n";

#[test]
fn bittorrent_and_web_over_pppoe_are_labelled_and_p2p_uploads_policed() {
    let mut lab = PppoeLab::build();
    let dir = lab.tmp.0.clone();

    // The daemon first, so the probe sees the session's discovery and LCP too.
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
             netns: {}\n\
             api: {{ listen: \"127.0.0.1:{API_PORT}\" }}\n\
             policy: {}\n",
            ns("gw"),
            policy.display()
        ),
    )
    .expect("config");
    let api = SocketAddr::from(([127, 0, 0, 1], API_PORT));
    lab.daemon = Some(Daemon::start(&config, &dir.join("daemon.log"), api));

    // The PPPoE session.
    let pppoe = script("pppoe.py");
    lab.spawn(
        "ac",
        "gw",
        &[
            PYTHON, &pppoe, "ac", "--iface", "downlink", "--tun", "ppp0", "--local", AC_V4,
            "--peer", SUB_V4, "--local6", AC_V6, "--peer6", SUB_V6,
        ],
    );
    lab.spawn(
        "client",
        "sub",
        &[
            PYTHON,
            &pppoe,
            "client",
            "--iface",
            "eth0",
            "--tun",
            "ppp0",
            "--local6",
            SUB_V6,
            "--route",
            "198.51.100.0/24",
            "--route",
            "203.0.113.0/24",
            "--route",
            "2001:db8:ff::/64",
            "--route",
            "2001:db8:203::/64",
            "--timeout",
            "20",
        ],
    );
    let up = lab.wait_event("client", "up", Duration::from_secs(30));
    lab.wait_event("ac", "up", Duration::from_secs(10));
    eprintln!("PPPoE session up: {up}");
    assert_eq!(
        up["local"], SUB_V4,
        "IPCP assigned the subscriber's address"
    );
    let stats = lab.api("/api/v1/mix")["probe"].clone();
    assert!(
        stats["non_ip"].as_u64().unwrap_or(0) >= 4,
        "discovery, LCP and IPCP frames pass as non-IP: {stats}"
    );

    // Web: HTTP over IPv4 and IPv6, TLS over IPv4, from the subscriber through the session.
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    let body: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("file.bin"), &body).expect("web file");
    let www_s = www.to_string_lossy().into_owned();
    for (name, bind) in [("http4", WEB_V4), ("http6", WEB_V6)] {
        lab.spawn(
            name,
            "net",
            &[
                PYTHON,
                "-m",
                "http.server",
                "--bind",
                bind,
                "--directory",
                &www_s,
                "80",
            ],
        );
    }
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    sh(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=web.lab",
        "-keyout",
        &key.to_string_lossy(),
        "-out",
        &cert.to_string_lossy(),
    ]);
    lab.spawn(
        "tls",
        "net",
        &[
            "sh", "-c",
            &format!(
                "cd {www_s} && exec openssl s_server -quiet -accept {WEB_V4}:443 -key {} -cert {} -WWW",
                key.display(),
                cert.display()
            ),
        ],
    );
    wait_listening(&ns("net"), 80);
    wait_listening(&ns("net"), 443);
    let (b4, r4) = fetch(&format!("http://{WEB_V4}/file.bin"), &[]);
    let (b6, r6) = fetch(&format!("http://[{WEB_V6}]/file.bin"), &[]);
    let (bt, rt) = fetch(&format!("https://{WEB_V4}/file.bin"), &["-k"]);
    eprintln!("web over PPPoE: http {r4:.1} Mbit/s, http over IPv6 {r6:.1}, tls {rt:.1}");
    for b in [b4, b6, bt] {
        assert_eq!(b, body.len() as u64, "a whole download");
    }

    // The session's upload capacity without a p2p rule on it: iperf3 (class other) from the
    // subscriber. The police rate must be well below it, or the rate seen would say
    // nothing about the policer.
    lab.spawn(
        "iperf",
        "net",
        &["iperf3", "-s", "-B", TRACKER_V4, "-p", "5201"],
    );
    wait_listening(&ns("net"), 5201);
    let out = in_ns(
        "sub",
        &[
            "iperf3", "-c", TRACKER_V4, "-p", "5201", "-t", "4", "-P", "3", "-J",
        ],
    );
    let iperf: Value = serde_json::from_str(&out).expect("iperf3 -J");
    let capacity = iperf["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("iperf3 rate");
    eprintln!(
        "upload capacity of the session (iperf3, 3 streams): {:.1} Mbit/s",
        capacity / 1e6
    );
    assert!(
        capacity > 2.5 * POLICE_BITS,
        "the session carries only {:.1} Mbit/s up: too slow to show a {} Mbit/s policer",
        capacity / 1e6,
        POLICE_BITS / 1e6
    );

    // BitTorrent: alice seeds, three leechers on the internet side download from her.
    let bt = script("bt_peer.py");
    let (seed, tracker_dir) = (dir.join("seed"), dir.join("tracker"));
    std::fs::create_dir_all(&tracker_dir).expect("tracker dir");
    let announce = format!("http://{TRACKER_V4}:{TRACKER_PORT}/announce");
    let made = in_ns(
        "net",
        &[
            PYTHON,
            &bt,
            "make",
            "--out",
            &seed.to_string_lossy(),
            "--name",
            "pwe.bin",
            "--size-mb",
            "48",
            "--tracker",
            &announce,
        ],
    );
    let made: Value = made
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "made")
        .unwrap_or_else(|| panic!("bt_peer.py make: {made}"));
    let torrent = made["torrent"].as_str().expect("torrent").to_string();
    std::fs::write(
        tracker_dir.join("whitelist"),
        format!("{}\n", made["infohash"].as_str().expect("infohash")),
    )
    .expect("whitelist");
    // Debian's opentracker tracks whitelisted info-hashes only; it chroots into -d.
    let tracker_s = tracker_dir.to_string_lossy().into_owned();
    let tport = TRACKER_PORT.to_string();
    lab.spawn(
        "tracker",
        "net",
        &[
            "opentracker",
            "-i",
            TRACKER_V4,
            "-p",
            &tport,
            "-P",
            &tport,
            "-d",
            &tracker_s,
            "-u",
            "nobody",
            "-w",
            "/whitelist",
        ],
    );
    wait_listening(&ns("net"), TRACKER_PORT);
    let sport = SEEDER_PORT.to_string();
    let seed_s = seed.to_string_lossy().into_owned();
    lab.spawn(
        "seeder",
        "sub",
        &[
            PYTHON,
            &bt,
            "seed",
            "--torrent",
            &torrent,
            "--dir",
            &seed_s,
            "--bind",
            SUB_V4,
            "--port",
            &sport,
        ],
    );
    lab.wait_event("seeder", "seeding", Duration::from_secs(60));
    for k in 0..LEECHERS {
        let port = (6891 + k).to_string();
        let leech = dir.join(format!("leech{k}")).to_string_lossy().into_owned();
        lab.spawn(
            &format!("leecher{k}"),
            "net",
            &[
                PYTHON,
                &bt,
                "leech",
                "--torrent",
                &torrent,
                "--dir",
                &leech,
                "--bind",
                LEECHER_V4,
                "--port",
                &port,
                "--transport",
                "tcp",
            ],
        );
    }

    // The rate on the wire: frames the gateway forwards to the internet, which past the
    // policer are alice's uploads (the leechers' acknowledgements go the other way), each
    // counted as the PPPoE frame the police rule measured (8 bytes more). Judged over one
    // 12 s window that starts 4 s after the transfer did (past the bucket's first burst and
    // libtorrent's start); per-second figures are printed to show how it went.
    let start = tx_counters("gw", "uplink");
    let deadline = Instant::now() + Duration::from_secs(60);
    let began = loop {
        thread::sleep(Duration::from_millis(200));
        let now = tx_counters("gw", "uplink");
        if now.1 - start.1 > 512 * 1024 {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no BitTorrent upload within 60 s"
        );
    };
    thread::sleep(Duration::from_secs(4).saturating_sub(began.elapsed()));
    let mut samples = vec![(Instant::now(), tx_counters("gw", "uplink"))];
    for _ in 0..12 {
        thread::sleep(Duration::from_secs(1));
        samples.push((Instant::now(), tx_counters("gw", "uplink")));
    }
    let wire = |a: &(Instant, (u64, u64)), b: &(Instant, (u64, u64))| {
        let bytes = (b.1.1 - a.1.1) + PPPOE_OVERHEAD * (b.1.0 - a.1.0);
        bytes as f64 * 8.0 / b.0.duration_since(a.0).as_secs_f64()
    };
    let per_second: Vec<f64> = samples
        .windows(2)
        .map(|w| wire(&w[0], &w[1]) / 1e6)
        .collect();
    let rate = wire(&samples[0], samples.last().expect("samples"));
    let (low, high) = (POLICE_BITS * (1.0 - BELOW), POLICE_BITS * (1.0 + ABOVE));
    eprintln!(
        "p2p upload on the wire, Mbit/s per second: {per_second:.2?}; over the window: {:.2} \
         (police {} Mbit/s, accepted {:.2}-{:.2})",
        rate / 1e6,
        POLICE_BITS / 1e6,
        low / 1e6,
        high / 1e6
    );
    assert!(
        (low..=high).contains(&rate),
        "p2p uploads at {:.2} Mbit/s on the wire, police {} Mbit/s (accepted {:.2}-{:.2}): \
         {per_second:.2?}",
        rate / 1e6,
        POLICE_BITS / 1e6,
        low / 1e6,
        high / 1e6
    );

    // Labelled, and charged to alice by the inner address.
    let flows = lab.api("/api/v1/flows?limit=10000");
    let flows = flows["flows"].as_array().expect("flows").clone();
    let find = |label: &str, dst: &str, dport: Option<u64>| {
        flows.iter().find(|f| {
            f["label"] == label
                && f["dst"] == dst
                && f["proto"] == "tcp"
                && dport.is_none_or(|p| f["dport"] == p)
        })
    };
    let expected = [
        ("bittorrent", LEECHER_V4, None, SUB_V4),
        ("http", WEB_V4, Some(80), SUB_V4),
        ("http", WEB_V6, Some(80), SUB_V6),
        ("tls", WEB_V4, Some(443), SUB_V4),
    ];
    for (label, dst, dport, src) in expected {
        let f = find(label, dst, dport).unwrap_or_else(|| {
            panic!(
                "no {label} flow to {dst}: {}",
                serde_json::to_string_pretty(&flows).unwrap_or_default()
            )
        });
        assert_eq!(f["src"], src, "{label} to {dst}: {f}");
        assert_eq!(f["subscriber"], "alice", "{label} to {dst}: {f}");
        assert!(
            f["bytes"][0].as_u64().unwrap_or(0) > 0,
            "{label}: bytes up {f}"
        );
    }
    let stats = lab.api("/api/v1/mix")["probe"].clone();
    eprintln!("probe statistics: {stats}");
    assert!(
        stats["policy_drops"].as_u64().unwrap_or(0) > 0,
        "nothing policed: {stats}"
    );
    assert_eq!(stats["malformed"].as_u64(), Some(0), "{stats}");
}
