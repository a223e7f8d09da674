//! DNS-assisted video labels through the real daemon with a real resolver
//! (docs/classifier.md, "DNS-assisted labels"). In the lab's internet namespace dnsmasq
//! answers `netflix.com` (and its subdomains) with [`VIDEO`] and `example-news.test` with
//! [`NEWS`], and nginx serves HTTPS on [`VIDEO`] and [`UNANSWERED`]. Alice asks the resolver
//! for `www.netflix.com` with dig, so query and answer pass the gateway, then connects to
//! the answered address with curl, which sends no SNI to an address.
//!
//! Checked through `/api/v1/flows`: that flow is `video.netflix`, class `video`; and none of
//! these bystanders is video: alice to the same address with a visible non-video SNI
//! (`www.example-news.test`), bob (who asked nothing) to the same address without SNI, and
//! alice without SNI to an address no answer gave. Every flow's label is printed either way.
//! The DNS flow itself is not checked: it shows `dns` or `unknown`, as the query's
//! provisional verdict reached the kernel before the answer passed or not (the kernel
//! applies a verdict on the flow's next packet, and the answer is its last).
//!
//! Bounded: every command under 15 s, the whole test about 15 s (16 runs, 2026-12-07).

use std::{collections::BTreeMap, path::Path, process::Command, thread, time::Duration};

use peerwarden_tests::lab::{
    Lab, Procs, TempDir, nginx_in, run_bounded, spawn_in, until_still, wait_healthy, wait_listening,
};

const PREFIX: &str = "dl";
const API_PORT: u16 = 9691;
/// The resolver, on the internet namespace's segment.
const RESOLVER: &str = "198.51.100.53";
/// What the resolver answers for `netflix.com` and its subdomains.
const VIDEO: &str = "203.0.113.80";
/// What the resolver answers for `example-news.test` (never connected to).
const NEWS: &str = "203.0.113.81";
/// A server no answer names.
const UNANSWERED: &str = "203.0.113.82";
const ALICE: &str = "100.64.1.10";
const BOB: &str = "100.64.1.20";

/// The connections: (what, subscriber, client port, server, SNI or none, video expected).
const CONNECTIONS: [(&str, &str, u16, &str, Option<&str>, bool); 4] = [
    ("alice, no SNI, answered", "alice", 40001, VIDEO, None, true),
    (
        "alice, news SNI, answered",
        "alice",
        40002,
        VIDEO,
        Some("www.example-news.test"),
        false,
    ),
    (
        "alice, no SNI, unanswered",
        "alice",
        40003,
        UNANSWERED,
        None,
        false,
    ),
    ("bob, no SNI, answered", "bob", 40004, VIDEO, None, false),
];

/// `cmd`, bounded; its stdout, or a panic with its output unless it succeeds.
fn ok(cmd: &mut Command, what: &str) -> String {
    let out = run_bounded(cmd, Duration::from_secs(15));
    assert!(
        out.status.success(),
        "{what} ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed certificate and nginx's configuration: HTTPS on [`VIDEO`] and
/// [`UNANSWERED`], a few KB for any request.
fn make_server(dir: &Path) {
    ok(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=www.netflix.com"])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
        "openssl making the certificate",
    );
    std::fs::write(dir.join("index.bin"), vec![0x5a; 4096]).expect("index.bin");
    let d = dir.display();
    let conf = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n\
         \x20 proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
         \x20 uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
         \x20 default_type application/octet-stream;\n\
         \x20 ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n\
         \x20 server {{\n    listen {VIDEO}:443 ssl;\n    listen {UNANSWERED}:443 ssl;\n\
         \x20   root {d};\n    location / {{ try_files /index.bin =404; }}\n  }}\n}}\n"
    );
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
    std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
}

/// The daemon's TCP and UDP flows of the lab's subscribers by (subscriber address, its
/// port): (server, server port, label, class, confidence).
fn daemon_flows(lab: &Lab) -> BTreeMap<(String, u16), (String, u16, String, String, String)> {
    let flows = lab.api("/api/v1/flows?limit=1000");
    flows["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["src"] == ALICE || f["src"] == BOB)
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("?").to_string();
            let port = |k: &str| f[k].as_u64().expect(k) as u16;
            (
                (s("src"), port("sport")),
                (
                    s("dst"),
                    port("dport"),
                    s("label"),
                    s("class"),
                    s("confidence"),
                ),
            )
        })
        .collect()
}

#[test]
fn a_no_sni_flow_to_an_address_its_subscriber_resolved_for_netflix_is_video() {
    let tmp = TempDir::new("dns-lab");
    make_server(&tmp.0);
    let lab = Lab::up(PREFIX, API_PORT, &[]);
    wait_healthy(lab.api_addr(), Duration::from_secs(30));
    let net = lab.netns("net");
    for a in [RESOLVER, VIDEO, NEWS, UNANSWERED] {
        let a = format!("{a}/32");
        ok(
            Command::new("ip").args(["-n", &net, "addr", "add", &a, "dev", "eth0", "nodad"]),
            "ip addr add",
        );
    }

    let mut procs = Procs(Vec::new());
    let listen = format!("--listen-address={RESOLVER}");
    let pid_file = format!("--pid-file={}", tmp.0.join("dnsmasq.pid").display());
    let video = format!("--address=/netflix.com/{VIDEO}");
    let news = format!("--address=/example-news.test/{NEWS}");
    procs.0.push((
        "dnsmasq".into(),
        spawn_in(
            &net,
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--log-facility=-",
                "--log-queries",
                "--local-ttl=300",
                &listen,
                &pid_file,
                &video,
                &news,
            ],
            &tmp.0.join("dnsmasq.log"),
        ),
    ));
    procs.0.push(nginx_in(&net, &tmp.0));
    wait_listening(&net, 443);
    thread::sleep(Duration::from_millis(300));

    // Alice resolves the video name through the gateway; bob asks nothing.
    let answer = ok(
        Command::new("ip")
            .args(["netns", "exec", &lab.netns("alice")])
            .args([
                "dig",
                &format!("@{RESOLVER}"),
                "www.netflix.com",
                "A",
                "+short",
                "+time=2",
                "+tries=2",
            ]),
        "dig www.netflix.com",
    );
    println!("dig www.netflix.com A: {}", answer.trim());
    assert_eq!(answer.trim(), VIDEO, "the resolver's answer");
    thread::sleep(Duration::from_millis(500));

    for (what, who, port, server, sni, _) in CONNECTIONS {
        let (url, resolve) = match sni {
            Some(name) => (
                format!("https://{name}/"),
                vec!["--resolve".to_string(), format!("{name}:443:{server}")],
            ),
            None => (format!("https://{server}/"), Vec::new()),
        };
        let got = ok(
            Command::new("ip")
                .args(["netns", "exec", &lab.netns(who)])
                .args(["curl", "-sk", "--max-time", "10", "-o", "/dev/null"])
                .args(["-w", "%{http_code} %{size_download}"])
                .args(["--local-port", &port.to_string()])
                .args(&resolve)
                .arg(&url),
            what,
        );
        println!("{what}: curl {url} from port {port}: {got}");
        assert_eq!(got, "200 4096", "{what}: curl");
    }

    // The daemon, once its flows stop changing.
    let flows = until_still(
        || daemon_flows(&lab),
        Duration::from_secs(3),
        Duration::from_secs(30),
    );
    for ((src, sport), (dst, dport, label, class, confidence)) in &flows {
        println!("{src}:{sport} -> {dst}:{dport}: {label} ({class}, {confidence})");
    }
    let mut problems = Vec::new();
    for (what, who, port, server, _, video) in CONNECTIONS {
        let addr = if who == "alice" { ALICE } else { BOB };
        match flows.get(&(addr.to_string(), port)) {
            None => problems.push(format!("{what}: no flow from {addr}:{port}")),
            Some((dst, _, label, class, confidence)) => {
                let ok = if video {
                    label == "video.netflix" && class == "video" && confidence == "hostname"
                } else {
                    class != "video" && !label.starts_with("video")
                };
                if dst != server || !ok {
                    problems.push(format!("{what}: {dst} {label} ({class})"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nflows: {flows:#?}\ndnsmasq: {}",
        problems.join("\n"),
        std::fs::read_to_string(tmp.0.join("dnsmasq.log")).unwrap_or_default()
    );
}
