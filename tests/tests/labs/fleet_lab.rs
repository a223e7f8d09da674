//! A fleet in the lab (issue 14, item 7): two gateways, each a lab of its own with a
//! daemon, real traffic through both; Debian's Prometheus scrapes both daemons with the
//! rules shipped in `contrib/prometheus/`, one nfdump `nfcapd` collects both gateways'
//! IPFIX, and one policy is pushed to both over the API.
//!
//! - the central `sum by (class)` of the traffic counters equals the sum of the two
//!   gateways' own `/api/v1/mix` within 1%;
//! - the shipped rules load into a real Prometheus and evaluate without error;
//! - one policy pushed to both takes effect on both (its block drops p2p on each);
//! - nfcapd stores both gateways' records, told apart by their observation domains.
//!
//! The daemons' APIs and Prometheus listen on 127.0.0.1 in the root namespace (as every lab
//! API here does); the IPFIX collector lives in a management namespace of its own, joined
//! to each gateway's namespace by a veth with addresses in 100.127.255.0/24 (shared address
//! space, the lab's subscriber range) and no route out.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs fleet_lab:: -- --test-threads=1`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use peerwarden_lab::{http_get, http_put};
use peerwarden_tests::lab::{
    Daemon, HTTP_TIMEOUT, Lab, TempDir, kill, peerwarden_bin, run_bounded, until_still,
};

/// The two gateways: lab prefix, API port, IPFIX observation domain, and the management
/// link's addresses (collector side, gateway side).
const GATEWAYS: [(&str, u16, u32, &str, &str); 2] = [
    ("fa", 9631, 11, "100.127.255.1", "100.127.255.2"),
    ("fb", 9632, 22, "100.127.255.5", "100.127.255.6"),
];
/// The management namespace where nfcapd runs.
const MGMT: &str = "fleet-mgmt";
const COLLECTOR_PORT: u16 = 4739;
const PROMETHEUS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9639);
const TOKEN: &str = "pwf-fleet-lab-token-0123456789";

/// A process started by the test, stopped by its pid (killed on drop if still running).
struct Proc {
    child: Option<Child>,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("creating a log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child: Some(child),
            name,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    eprintln!("{} did not stop on SIGTERM; killing it", self.name);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The management namespace and its veths to the gateways; removed on drop (deleting the
/// namespace deletes the veths, and their peers in the gateways' namespaces with them).
struct Mgmt;

impl Mgmt {
    fn up(labs: &[&Lab]) -> Mgmt {
        let _ = ip(&["netns", "del", MGMT]);
        ip(&["netns", "add", MGMT]).expect("adding the management namespace");
        let mgmt = Mgmt;
        ip(&["-n", MGMT, "link", "set", "lo", "up"]).expect("lo up");
        for (lab, (prefix, _, _, collector, gateway)) in labs.iter().zip(GATEWAYS) {
            let gw = lab.netns("gw");
            let here = format!("m-{prefix}");
            ip(&[
                "link", "add", &here, "netns", MGMT, "type", "veth", "peer", "name", "mgmt",
                "netns", &gw,
            ])
            .expect("adding a management veth");
            ip(&[
                "-n",
                MGMT,
                "addr",
                "add",
                &format!("{collector}/30"),
                "dev",
                &here,
            ])
            .expect("collector address");
            ip(&[
                "-n",
                &gw,
                "addr",
                "add",
                &format!("{gateway}/30"),
                "dev",
                "mgmt",
            ])
            .expect("gateway management address");
            ip(&["-n", MGMT, "link", "set", &here, "up"]).expect("veth up");
            ip(&["-n", &gw, "link", "set", "mgmt", "up"]).expect("veth up");
        }
        mgmt
    }
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", MGMT]) {
            eprintln!("removing {MGMT}: {e}");
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = run_bounded(Command::new("ip").args(args), Duration::from_secs(20));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (code, body) =
        http_get(addr, path, HTTP_TIMEOUT).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    assert_eq!(code, 200, "GET {addr}{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}: {body}"))
}

/// An instant query to Prometheus: the result vector as (labels, value).
fn promql(query: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let v = get_json(
        PROMETHEUS,
        &format!("/api/v1/query?query={}", encode(query)),
    );
    assert_eq!(v["status"], "success", "{query}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {v}"))
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{query}: value of {r}"));
            (labels, value)
        })
        .collect()
}

/// Bytes (up + down) per class from a gateway's `/api/v1/mix`.
fn mix_bytes(lab: &Lab) -> BTreeMap<String, u64> {
    let mix = lab.api("/api/v1/mix");
    mix["classes"]
        .as_object()
        .expect("classes in the mix")
        .iter()
        .map(|(class, c)| {
            let b = &c["bytes"];
            (
                class.clone(),
                b[0].as_u64().unwrap_or(0) + b[1].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Runs `lab traffic` on every lab at once (one swarm round and HTTP downloads each);
/// per lab, whether it succeeded and what it wrote to stderr.
fn traffic(labs: &[&Lab], seconds: u32) -> Vec<(bool, String)> {
    thread::scope(|s| {
        let runs: Vec<_> = labs
            .iter()
            .map(|lab| {
                let prefix = lab.prefix.clone();
                s.spawn(move || {
                    let out = run_bounded(
                        Command::new(peerwarden_bin()).args([
                            "lab",
                            "traffic",
                            "--prefix",
                            &prefix,
                            "--seconds",
                            &seconds.to_string(),
                        ]),
                        Duration::from_secs(u64::from(seconds) + 120),
                    );
                    eprint!("{}", String::from_utf8_lossy(&out.stdout));
                    (
                        out.status.success(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a traffic thread"))
            .collect()
    })
}

/// The policy pushed to both gateways: the lab's, with BitTorrent blocked for everyone.
const BLOCK_P2P: &str = "\
plans:
  home-50:
    rate: { down: 1gbit, up: 100mbit }
    classes:
      p2p: { action: block }
subscribers:
  - id: alice
    prefixes: [100.64.1.10/32, 2001:db8:1::10/128]
    plan: home-50
  - id: bob
    prefixes: [100.64.1.20/32, 2001:db8:1::20/128]
    plan: home-50
default_plan: home-50
";

fn write_config(tmp: &Path, lab: &Lab, port: u16, domain: u32, collector: &str) -> PathBuf {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/lab.yaml");
    let config = tmp.join(format!("{}.yaml", lab.prefix));
    std::fs::write(
        &config,
        format!(
            "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
             netns: {gw}\n\
             api: {{ listen: \"127.0.0.1:{port}\", token: \"{TOKEN}\" }}\n\
             flow_table_size: 65536\n\
             policy: {policy}\n\
             history: {{ path: {history} }}\n\
             ipfix: {{ collector: \"{collector}:{COLLECTOR_PORT}\", idle_timeout: 4s, active_timeout: 10s, observation_domain: {domain} }}\n",
            gw = lab.netns("gw"),
            policy = policy.display(),
            history = tmp.join(format!("{}.db", lab.prefix)).display(),
        ),
    )
    .expect("writing a config");
    config
}

fn prometheus_config(tmp: &Path) -> PathBuf {
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus/peerwarden.rules.yml");
    let mut targets = String::new();
    for (prefix, port, ..) in GATEWAYS {
        targets.push_str(&format!(
            "      - targets: [\"127.0.0.1:{port}\"]\n        labels: {{ gateway: {prefix} }}\n"
        ));
    }
    let path = tmp.join("prometheus.yml");
    std::fs::write(
        &path,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [\"{rules}\"]\n\
             scrape_configs:\n  - job_name: peerwarden\n    static_configs:\n{targets}",
            rules = rules.display()
        ),
    )
    .expect("writing prometheus.yml");
    path
}

/// The exporters nfcapd registered, from `nfdump -E` of each file it wrote: per
/// observation domain, the exporter's address and the flows it stored. nfdump lists an
/// exporter as `SysID: 1, IP: 100.127.255.2, version: 10, ID: 11, ..., flows: 105`, where
/// `ID` is the IPFIX observation domain.
fn stored_exporters(dir: &Path) -> (BTreeMap<u32, (String, u64)>, String) {
    let mut exporters = BTreeMap::new();
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let out = run_bounded(
            Command::new("nfdump").arg("-E").arg(entry.path()),
            Duration::from_secs(60),
        );
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in listing
            .lines()
            .filter(|l| l.trim_start().starts_with("SysID:"))
        {
            let field = |name: &str| -> Option<String> {
                line.split(',')
                    .filter_map(|f| f.trim().split_once(':'))
                    .find(|(k, _)| k.trim() == name)
                    .map(|(_, v)| v.trim().to_string())
            };
            let (Some(id), Some(ip), Some(flows)) = (
                field("ID").and_then(|v| v.parse::<u32>().ok()),
                field("IP"),
                field("flows").and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            let e = exporters.entry(id).or_insert((ip, 0));
            e.1 += flows;
        }
        text.push_str(&listing);
    }
    (exporters, text)
}

#[test]
fn two_gateways_one_prometheus_one_policy_one_collector() {
    let tmp = TempDir::new("fleet-lab");
    let a = Lab::up(GATEWAYS[0].0, GATEWAYS[0].1, &["--no-daemon"]);
    let b = Lab::up(GATEWAYS[1].0, GATEWAYS[1].1, &["--no-daemon"]);
    let labs = [&a, &b];
    let _mgmt = Mgmt::up(&labs);

    let store = tmp.0.join("nfcapd");
    std::fs::create_dir_all(&store).expect("nfcapd dir");
    let mut nfcapd = Proc::spawn(
        "nfcapd",
        Command::new("ip")
            .args(["netns", "exec", MGMT, "nfcapd", "-p"])
            .arg(COLLECTOR_PORT.to_string())
            .arg("-w")
            .arg(&store)
            .args(["-t", "3600"]),
        &tmp.0.join("nfcapd.log"),
    );

    let daemons: Vec<Daemon> = labs
        .iter()
        .zip(GATEWAYS)
        .map(|(lab, (prefix, port, domain, collector, _))| {
            let config = write_config(&tmp.0, lab, port, domain, collector);
            Daemon::start(
                &config,
                &tmp.0.join(format!("{prefix}.log")),
                lab.api_addr(),
            )
        })
        .collect();

    let prom_dir = tmp.0.join("prometheus-data");
    let mut prometheus = Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prometheus_config(&tmp.0).display()
            ))
            .arg(format!("--storage.tsdb.path={}", prom_dir.display()))
            .arg(format!("--web.listen-address={PROMETHEUS}")),
        &tmp.0.join("prometheus.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http_get(PROMETHEUS, "/-/ready", HTTP_TIMEOUT), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready after 30 s:\n{}",
            std::fs::read_to_string(tmp.0.join("prometheus.log")).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Real traffic through both gateways at once.
    for ((ok, err), lab) in traffic(&labs, 10).into_iter().zip(labs) {
        assert!(ok, "lab traffic on {}: {err}", lab.prefix);
    }

    // Both gateways' own totals once their counters have settled, then the central sum
    // after Prometheus has scraped the settled counters (every second) a few times.
    let own = until_still(
        || (mix_bytes(&a), mix_bytes(&b)),
        Duration::from_secs(3),
        Duration::from_secs(60),
    );
    thread::sleep(Duration::from_secs(4));
    let central: BTreeMap<String, f64> =
        promql("sum by (class) (peerwarden_traffic_bytes_total{job=\"peerwarden\"})")
            .into_iter()
            .map(|(l, v)| (l.get("class").cloned().unwrap_or_default(), v))
            .collect();
    let after = (mix_bytes(&a), mix_bytes(&b));
    eprintln!(
        "gateway fa: {:?}\ngateway fb: {:?}\ncentral: {central:?}",
        own.0, own.1
    );
    assert_eq!(
        own, after,
        "the gateways' counters moved while Prometheus was read"
    );
    let mut compared = 0;
    for class in own.0.keys().chain(own.1.keys()) {
        let sum = own.0.get(class).copied().unwrap_or(0) + own.1.get(class).copied().unwrap_or(0);
        if sum == 0 {
            continue;
        }
        let got = central.get(class).copied().unwrap_or(0.0);
        let err = (got - sum as f64).abs() / sum as f64;
        assert!(
            err <= 0.01,
            "class {class}: central {got} vs the gateways' own {sum} ({:.2}% apart)",
            err * 100.0
        );
        compared += 1;
    }
    assert!(
        own.0.get("p2p").copied().unwrap_or(0) > 1_000_000
            && own.1.get("p2p").copied().unwrap_or(0) > 1_000_000,
        "both gateways carried BitTorrent: {own:?}"
    );
    assert!(compared >= 2, "classes compared: {compared}");

    // The shipped rules load and evaluate in a real Prometheus. A rule not yet evaluated
    // reads "unknown"; each group is evaluated once per interval (30 s), so give every
    // rule its first evaluation before judging its health.
    let deadline = Instant::now() + Duration::from_secs(75);
    let rules = loop {
        let rules = get_json(PROMETHEUS, "/api/v1/rules");
        let pending = rules["data"]["groups"]
            .as_array()
            .expect("rule groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().expect("rules"))
            .filter(|r| r["health"] == "unknown")
            .count();
        if pending == 0 || Instant::now() >= deadline {
            break rules;
        }
        thread::sleep(Duration::from_secs(1));
    };
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    let mut evaluated = 0;
    for g in groups {
        for r in g["rules"].as_array().expect("rules") {
            assert_eq!(r["health"], "ok", "rule {}: {r}", r["name"]);
            evaluated += 1;
        }
    }
    assert!(evaluated >= 10, "rules loaded: {evaluated}: {rules}");
    // A recording rule of the traffic group (evaluated every 30 s) per gateway.
    let deadline = Instant::now() + Duration::from_secs(45);
    let fill = loop {
        let fill = promql("gateway:peerwarden_flow_table_fill:ratio");
        if fill.len() == 2 || Instant::now() >= deadline {
            break fill;
        }
        thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(fill.len(), 2, "flow table fill per gateway: {fill:?}");

    // One policy pushed to both takes effect on both: their p2p is dropped.
    let dropped = |lab: &Lab| -> u64 {
        let m = lab.api("/api/v1/status");
        m["probe"]["policy_drops"]
            .as_u64()
            .unwrap_or_else(|| panic!("policy_drops in status: {m}"))
    };
    let before: Vec<u64> = labs.iter().map(|l| dropped(l)).collect();
    for lab in labs {
        let (code, body) = http_put(
            lab.api_addr(),
            "/api/v1/policy",
            TOKEN,
            "application/yaml",
            BLOCK_P2P,
            Duration::from_secs(20),
        )
        .expect("PUT /api/v1/policy");
        assert_eq!(code, 200, "PUT /api/v1/policy on {}: {body}", lab.prefix);
        let active = lab.api("/api/v1/policy");
        assert_eq!(
            active["origin"], "api",
            "{}: the pushed policy is active: {active}",
            lab.prefix
        );
    }
    let blocked = traffic(&labs, 6);
    for (i, lab) in labs.iter().enumerate() {
        let (ok, err) = &blocked[i];
        assert!(
            !ok && err.contains("BitTorrent download did not finish"),
            "{}: with p2p blocked the swarm must not finish (ok: {ok}): {err}",
            lab.prefix
        );
        let now = dropped(lab);
        eprintln!("{}: policy drops {} -> {now}", lab.prefix, before[i]);
        assert!(
            now > before[i],
            "{}: the pushed block dropped p2p ({} -> {now})",
            lab.prefix,
            before[i]
        );
    }

    // Stop the daemons (a clean stop exports what is left), then read the collector.
    for d in daemons {
        let status = d.terminate(Duration::from_secs(30));
        assert!(status.success(), "daemon stop: {status}");
    }
    thread::sleep(Duration::from_secs(1));
    nfcapd.stop();
    prometheus.stop();
    let (exporters, text) = stored_exporters(&store);
    eprintln!("nfdump -E:\n{text}");
    for (prefix, _, domain, _, gateway) in GATEWAYS {
        let stored = exporters.get(&domain);
        assert!(
            stored.is_some_and(|(ip, flows)| ip == gateway && *flows > 0),
            "nfcapd stored no flows from {prefix} ({gateway}) under observation domain {domain}: {exporters:?}"
        );
    }
}
