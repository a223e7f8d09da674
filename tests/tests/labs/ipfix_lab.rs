//! IPFIX export against a real collector: the daemon exports finished flows of real lab
//! traffic (a BitTorrent swarm and HTTP downloads) to nfdump's `nfcapd`, running in the
//! lab's internet namespace on a lab address; the test reads back what nfcapd stored
//! (`nfdump -o json`) and checks it against the daemon's own flow list, byte for byte,
//! and the application label. nfdump keeps applicationId (as its "nbar" id) but not
//! applicationName, applicationCategoryName or userName, so those are read back from a
//! capture of the export with tshark's IPFIX dissector, a second decoder written by other
//! people than ours.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs ipfix_lab:: -- --test-threads=1`.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use peerwarden_common::Label;
use peerwarden_lab::http_get;
use peerwarden_tests::lab::{
    Daemon, HTTP_TIMEOUT, Lab, TempDir, kill, peerwarden_bin, run_bounded,
};

const PREFIX: &str = "ix";
const PORT: u16 = 9614;
/// The collector: the lab's tracker host address in the internet namespace.
const COLLECTOR: &str = "198.51.100.2";
const COLLECTOR_PORT: u16 = 4739;
/// The web server's address, where the long transfer goes.
const IPERF_SERVER: &str = "203.0.113.10";
/// Alice's port for the long transfer's data connection.
const IPERF_CLIENT_PORT: u16 = 45201;

/// A process the test started in a namespace, stopped by its pid with `signal` (and
/// killed on drop if it did not stop).
struct Bg {
    child: Option<Child>,
    name: &'static str,
}

impl Bg {
    /// Starts `args` in `ns` with output to `log`, and waits up to 10 s until `ready`
    /// appears in the log.
    fn start(name: &'static str, ns: &str, args: &[&str], log: &Path, ready: &str) -> Bg {
        let out = std::fs::File::create(log).expect("creating a log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut bg = Bg {
            child: Some(child),
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(ready) {
                return bg;
            }
            if let Some(Some(status)) = bg.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("{name} exited ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready after 10 s:\n{text}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` and waits up to 10 s for the exit.
    fn stop(mut self, signal: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        kill(child.id(), signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop on SIG{signal} within 10 s", self.name);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A flow's identity: protocol number, subscriber address and port, remote address and port.
type Tuple = (u8, IpAddr, u16, IpAddr, u16);

/// What the collector holds for one flow: sums over its records, and the last record's
/// applicationId.
#[derive(Debug, Default)]
struct Stored {
    bytes: [u64; 2],
    packets: [u64; 2],
    records: usize,
    app_id: Option<String>,
}

fn num(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// What nfdump prints for each record it stored: protocol, addresses and ports, packets
/// and bytes in (the source's, here the subscriber's upload) and out (the reverse
/// counters), and the application id as `selector..engine`.
const NFDUMP_FORMAT: &str = "fmt:%pr,%sa,%sp,%da,%dp,%ipkt,%opkt,%ibyt,%obyt,%nbid";

/// `nfdump -R dir`: every record, summed per flow; and the number of records.
fn read_nfdump(dir: &Path) -> (HashMap<Tuple, Stored>, usize) {
    // -N: plain numbers (no "4.2 M"), -q: no header or summary.
    let out = run_bounded(
        Command::new("nfdump")
            .args(["-N", "-q", "-R"])
            .arg(dir)
            .args(["-o", NFDUMP_FORMAT]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nfdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flows: HashMap<Tuple, Stored> = HashMap::new();
    let mut records = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        assert_eq!(f.len(), 10, "nfdump line: {line}");
        let n = |i: usize| -> u64 {
            f[i].parse()
                .unwrap_or_else(|_| panic!("field {i} of {line}"))
        };
        let ip = |i: usize| -> IpAddr {
            f[i].parse()
                .unwrap_or_else(|_| panic!("address {i} of {line}"))
        };
        let t: Tuple = (n(0) as u8, ip(1), n(2) as u16, ip(3), n(4) as u16);
        let s = flows.entry(t).or_default();
        s.packets[0] += n(5);
        s.packets[1] += n(6);
        s.bytes[0] += n(7);
        s.bytes[1] += n(8);
        s.records += 1;
        s.app_id = Some(f[9].to_string());
        records += 1;
    }
    (flows, records)
}

/// One record as tshark's IPFIX dissector reads it: applicationName,
/// applicationCategoryName, userName, flowEndReason.
type Named = (String, String, String, u8);

/// The records tshark reads from the captured export, in order, per `(protocol,
/// subscriber port, remote port)`, from its detailed print (`-V`), one "Flow N" block
/// per record.
fn read_tshark(pcap: &Path) -> HashMap<(u8, u16, u16), Vec<Named>> {
    let out = run_bounded(
        Command::new("tshark").arg("-r").arg(pcap).args([
            "-d",
            &format!("udp.port=={COLLECTOR_PORT},cflow"),
            "-V",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: HashMap<(u8, u16, u16), Vec<Named>> = HashMap::new();
    let mut cur: HashMap<&str, String> = HashMap::new();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut flush = |cur: &mut HashMap<&str, String>| {
        let get = |k: &str| cur.get(k).cloned().unwrap_or_default();
        if let (Ok(sport), Ok(dport)) = (get("SrcPort").parse(), get("DstPort").parse()) {
            // "TCP (6)", "Idle timeout (1)"
            let paren = |k: &str| -> u8 {
                get(k)
                    .rsplit('(')
                    .next()
                    .and_then(|p| p.trim_end_matches(')').parse().ok())
                    .unwrap_or(0)
            };
            names
                .entry((paren("Protocol"), sport, dport))
                .or_default()
                .push((
                    get("ApplicationName"),
                    get("Application Category Name"),
                    get("User Name"),
                    paren("Flow End Reason"),
                ));
        }
        cur.clear();
    };
    for line in text.lines() {
        let l = line.trim();
        let is_flow = l
            .strip_prefix("Flow ")
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
        if is_flow || l.starts_with("Frame ") {
            flush(&mut cur);
            continue;
        }
        for key in [
            "SrcPort",
            "DstPort",
            "Protocol",
            "ApplicationName",
            "Application Category Name",
            "User Name",
            "Flow End Reason",
        ] {
            if let Some(v) = l.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                cur.insert(key, v.trim().to_string());
            }
        }
    }
    flush(&mut cur);
    names
}

/// The daemon's flows, keyed by tuple: `(label, class, subscriber, bytes, packets)`.
type ApiFlow = (String, String, String, [u64; 2], [u64; 2]);

fn api_flows(lab: &Lab) -> HashMap<Tuple, ApiFlow> {
    let v = lab.api("/api/v1/flows?limit=10000");
    let mut out = HashMap::new();
    for f in v["flows"].as_array().expect("flows array") {
        let arr = |k: &str| [num(&f[k][0]), num(&f[k][1])];
        let proto = match f["proto"].as_str() {
            Some("tcp") => 6,
            Some("udp") => 17,
            _ => continue,
        };
        let ip =
            |k: &str| -> IpAddr { f[k].as_str().and_then(|a| a.parse().ok()).expect("address") };
        out.insert(
            (
                proto,
                ip("src"),
                num(&f["sport"]) as u16,
                ip("dst"),
                num(&f["dport"]) as u16,
            ),
            (
                f["label"].as_str().unwrap_or_default().to_string(),
                f["class"].as_str().unwrap_or_default().to_string(),
                f["subscriber"].as_str().unwrap_or_default().to_string(),
                arr("bytes"),
                arr("packets"),
            ),
        );
    }
    out
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The label of an application id as nfdump prints it, `selector..engine`: our records
/// carry engine 6 (user defined) and the label's id as the selector.
fn label_of_app_id(app: &str) -> Option<Label> {
    let (selector, engine) = app.split_once("..")?;
    (engine == "6").then_some(())?;
    selector.parse::<u16>().ok().map(Label::from_id)
}

#[test]
fn finished_flows_reach_nfcapd_with_their_labels() {
    let tmp = TempDir::new("ipfix-lab");
    let lab = Lab::up(PREFIX, PORT, &["--no-daemon"]);
    let net = lab.netns("net");
    let store = tmp.0.join("nfcapd");
    std::fs::create_dir_all(&store).expect("nfcapd dir");
    let port = COLLECTOR_PORT.to_string();
    let store_s = store.display().to_string();
    let nfcapd = Bg::start(
        "nfcapd",
        &net,
        &[
            "nfcapd", "-b", COLLECTOR, "-p", &port, "-w", &store_s, "-t", "3600",
        ],
        &tmp.0.join("nfcapd.log"),
        "Startup",
    );
    let pcap = tmp.0.join("export.pcap");
    let pcap_s = pcap.display().to_string();
    let filter = format!("udp and dst host {COLLECTOR} and dst port {COLLECTOR_PORT}");
    let capture = Bg::start(
        "tcpdump",
        &net,
        &[
            "tcpdump", "-n", "-i", "eth0", "-Q", "in", "-s", "0", "-U", "-w", &pcap_s, &filter,
        ],
        &tmp.0.join("tcpdump.log"),
        "listening on",
    );

    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/lab.yaml");
    let config = tmp.0.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
             netns: {gw}\n\
             api: {{ listen: \"127.0.0.1:{PORT}\" }}\n\
             flow_table_size: 65536\n\
             policy: {policy}\n\
             history: {{ path: {history} }}\n\
             ipfix: {{ collector: \"{COLLECTOR}:{COLLECTOR_PORT}\", idle_timeout: 4s, active_timeout: 6s, template_refresh: 10s, observation_domain: 42 }}\n",
            gw = lab.netns("gw"),
            policy = policy.display(),
            history = tmp.0.join("history.db").display(),
        ),
    )
    .expect("writing the config");
    let daemon = Daemon::start(&config, &tmp.0.join("daemon.log"), lab.api_addr());

    // One swarm round (8 MiB, BitTorrent over TCP and uTP, tracker) with HTTP downloads.
    let out = run_bounded(
        Command::new(peerwarden_bin()).args([
            "lab",
            "traffic",
            "--prefix",
            PREFIX,
            "--seconds",
            "90",
        ]),
        Duration::from_secs(150),
    );
    assert!(
        out.status.success(),
        "lab traffic: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The swarm's and the downloads' flows have ended: a listing now, compared with one
    // at the end; those unchanged are finished.
    thread::sleep(Duration::from_millis(1500));
    let first = api_flows(&lab);
    // Then one long TCP transfer (iperf3, 8 s at 4 Mbit/s): exported after 6 s (active
    // timeout) while it runs, the rest at the daemon's stop, which comes less than the
    // idle timeout (4 s) after its end and before a second active timeout (12 s after its
    // start). Meanwhile the swarm and HTTP flows are exported: idle 4 s after their end,
    // or at the active timeout for those that ran 2 s or more.
    let server = Bg::start(
        "iperf3 server",
        &net,
        &[
            "iperf3",
            "-s",
            "-1",
            "--forceflush",
            "-B",
            IPERF_SERVER,
            "-p",
            "5201",
        ],
        &tmp.0.join("iperf3-server.log"),
        "Server listening",
    );
    let out = run_bounded(
        Command::new("ip")
            .args(["netns", "exec", &lab.netns("alice"), "iperf3", "-c"])
            .args([
                IPERF_SERVER,
                "-p",
                "5201",
                "-t",
                "8",
                "-b",
                "4M",
                "--cport",
                &IPERF_CLIENT_PORT.to_string(),
            ]),
        Duration::from_secs(40),
    );
    assert!(
        out.status.success(),
        "iperf3: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop("TERM");
    // The flow table is read every second: after 1.2 s the listing has the transfer's
    // last packets. Finished: the transfer's data connection, and the flows unchanged
    // since the first listing. They are compared byte for byte.
    thread::sleep(Duration::from_millis(1200));
    let second = api_flows(&lab);
    let finished: HashMap<Tuple, ApiFlow> = second
        .into_iter()
        .filter(|(t, f)| {
            (first.get(t) == Some(f) || (t.0 == 6 && t.2 == IPERF_CLIENT_PORT))
                && f.3.iter().sum::<u64>() > 0
        })
        .collect();
    let (_, metrics) = http_get(lab.api_addr(), "/metrics", HTTP_TIMEOUT).expect("GET /metrics");
    let sent_before_stop =
        metric(&metrics, "peerwarden_ipfix_records_total").expect("records metric");
    assert_eq!(
        metric(&metrics, "peerwarden_ipfix_send_errors_total"),
        Some(0),
        "{metrics}"
    );
    assert!(
        sent_before_stop > 0,
        "records exported while running: {metrics}"
    );

    let log = daemon.log.clone();
    let status = daemon.terminate(Duration::from_secs(30));
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "daemon exit {status}:\n{log}");
    // Let the last message land, then stop the collector (it writes its file on SIGTERM)
    // and the capture.
    thread::sleep(Duration::from_secs(1));
    nfcapd.stop("TERM");
    // Its summary: the sequence numbers (data records sent before each message) had no
    // gap and every message parsed.
    let summary = std::fs::read_to_string(tmp.0.join("nfcapd.log")).unwrap_or_default();
    assert!(
        summary.contains("Sequence Errors: 0, Bad Packets: 0"),
        "nfcapd's summary:\n{summary}"
    );
    capture.stop("INT");
    let sent_total: u64 = log
        .lines()
        .filter(|l| l.contains("IPFIX export finished"))
        .find_map(|l| {
            let at = l.find("records=")? + "records=".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no final export line in the daemon log:\n{log}"));

    let (stored, record_count) = read_nfdump(&store);
    eprintln!(
        "exported {sent_total} records ({sent_before_stop} before the stop); nfcapd stored {record_count} for {} flows; {} finished flows in the API",
        stored.len(),
        finished.len()
    );
    assert_eq!(
        record_count as u64, sent_total,
        "every record sent is in the collector's file"
    );
    let classes: Vec<&str> = finished.values().map(|f| f.1.as_str()).collect();
    assert!(
        classes.contains(&"p2p"),
        "a finished BitTorrent flow: {classes:?}"
    );
    assert!(classes.contains(&"web"), "a finished web flow: {classes:?}");

    let names = read_tshark(&pcap);
    let reasons: Vec<u8> = names.values().flatten().map(|n| n.3).collect();
    for (reason, what) in [(1, "idle"), (2, "active timeout"), (4, "at the stop")] {
        assert!(
            reasons.contains(&reason),
            "records exported {what}: {reasons:?}"
        );
    }
    assert!(sent_total > sent_before_stop, "records at the stop");
    // The long transfer: a record after 6 s while it ran, the rest at the stop, adding up
    // to the daemon's count (checked below with the other finished flows).
    let long = names
        .get(&(6, IPERF_CLIENT_PORT, 5201))
        .expect("the iperf3 transfer in tshark's reading");
    let long_reasons: Vec<u8> = long.iter().map(|n| n.3).collect();
    assert!(
        long_reasons.len() >= 2
            && long_reasons[..long_reasons.len() - 1]
                .iter()
                .all(|r| *r == 2)
            && long_reasons.last() == Some(&4),
        "iperf3's records: active timeouts, then the stop: {long_reasons:?}"
    );
    assert!(
        finished
            .keys()
            .any(|t| t.0 == 6 && t.2 == IPERF_CLIENT_PORT)
    );
    let count = |r: u8| reasons.iter().filter(|x| **x == r).count();
    eprintln!(
        "records by end reason: idle {}, active timeout {}, at the stop {}; iperf3: {long_reasons:?}",
        count(1),
        count(2),
        count(4)
    );
    for (t, (label, class, subscriber, bytes, packets)) in &finished {
        let s = stored
            .get(t)
            .unwrap_or_else(|| panic!("{t:?} ({label}) not in the collector's file"));
        assert_eq!(
            (s.bytes, s.packets),
            (*bytes, *packets),
            "{t:?} ({label}): the records' sums [up, down] equal the daemon's counts ({} records)",
            s.records
        );
        let app = s
            .app_id
            .as_deref()
            .unwrap_or_else(|| panic!("{t:?}: no application id in nfdump's record"));
        let want = Label::from_name(label).unwrap_or(Label::VideoService);
        assert_eq!(
            label_of_app_id(app),
            Some(want),
            "{t:?}: nfdump's application id {app}"
        );
        let n = names
            .get(&(t.0, t.2, t.4))
            .unwrap_or_else(|| panic!("{t:?}: no record in tshark's reading"));
        assert_eq!(
            n.len(),
            s.records,
            "{t:?}: tshark and nfdump read as many records"
        );
        let last = n.last().expect("a record");
        assert_eq!(
            (&last.0, &last.1, &last.2),
            (label, class, subscriber),
            "{t:?}: applicationName, applicationCategoryName, userName"
        );
    }
}
