//! Video by its shape through the real daemon (issue 12 item 3): a private nginx in the
//! lab's internet namespace serves, over HTTPS with a certificate made here for a name in
//! no catalogue (`media.shape-lab.test`), HLS and DASH (2 s segments) made by ffmpeg.
//! ffmpeg plays both in alice's namespace at a player's pace (`-re`); its HLS player keeps
//! two connections, its DASH player opens one per segment, which leaves no flow a shape
//! (counted and printed apart, not scored), so the DASH rendition is also fetched as
//! browsers' players do, over one kept connection at the segments' pace (curl `--rate`, one
//! segment started every 2 s). On the same transport, from the same server: curl
//! downloading a large file (rate-limited, so it lasts), curl loading pages of many small
//! objects, 1,200 short connections of one object each, a bulk transfer in bursts of
//! random sizes (curl `--rate`, one connection), and beside them iperf3 downstream.
//!
//! Each kind of traffic has its own server port, which is the truth. Checked from the
//! daemon's `/api/v1/flows`: the video flows (those to a video port that carried a segment;
//! a playlist's or a manifest's own flow is counted apart, and must not be video) are
//! `video.behavioural` (class video), by count ([`RECALL_FLOWS`]) and by bytes
//! ([`RECALL_BYTES`]), and no more than [`FALSE_VIDEO`] of the background flows (over
//! 1,000) are. The figures are printed.
//!
//! Names resolve through a hosts file bind-mounted over `/etc/hosts` in a mount namespace
//! of each client's own (`unshare -m`), so the TLS server name is the one made here.
//! Bounded: every process under 110 s, the whole test about 90 s.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use peerwarden_tests::lab::{
    Capture, Lab, Procs, TempDir, nginx_in, run_bounded, spawn_in, until_still, wait_healthy,
    wait_listening,
};

const PREFIX: &str = "shp";
const API_PORT: u16 = 9683;
const SERVER: &str = "203.0.113.10";
const NAME: &str = "media.shape-lab.test";
/// The clip's length: the players last as long.
const CLIP_SECONDS: u32 = 60;
/// The server ports: the traffic's kinds.
const HLS: u16 = 9443;
/// DASH played by ffmpeg, which opens a connection per segment (below).
const DASH: u16 = 9444;
/// DASH fetched over one connection at the segments' pace, as browsers' players do.
const DASH_KEPT: u16 = 9449;
/// ffmpeg playing the HLS, two connections each.
const HLS_PLAYERS: usize = 6;
/// curl fetching the DASH at the segments' pace.
const DASH_KEPT_PLAYERS: usize = 6;
const DOWNLOAD: u16 = 9445;
const PAGES: u16 = 9446;
const BULK: u16 = 9447;
const IPERF: u16 = 9448;
/// Short connections, one small object each (`Connection: close`): the bulk of the
/// background's flows, so that the false-video share is measured over more than 1,000.
const SHORT: u16 = 9450;
const SHORT_FLOWS: usize = 1_200;
/// The goals.
const RECALL_FLOWS: f64 = 0.90;
/// A flow that carried a segment carried at least this many bytes (the classifier's
/// smallest segment).
const SEGMENT_MIN: u64 = peerwarden_classifier::shape::SEGMENT_MIN;
const RECALL_BYTES: f64 = 0.95;
const FALSE_VIDEO: f64 = 0.001;

fn ok(cmd: &mut Command, what: &str, timeout: Duration) {
    let out = run_bounded(cmd, timeout);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The HLS and DASH renditions of one clip (test pattern, H.264 at 1.2 Mbit/s, a key frame
/// every 2 s), the certificate, the background's files and nginx's configuration.
fn make_site(dir: &Path) {
    let www = dir.join("www");
    for d in ["hls", "dash", "page", "bulk", "tmp"] {
        std::fs::create_dir_all(www.join(d)).expect("mkdir");
    }
    let secs = CLIP_SECONDS.to_string();
    let encode = |extra: &[&str], out: &Path| {
        ok(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-y"])
                .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
                .args(["-t", &secs, "-c:v", "libx264", "-preset", "ultrafast"])
                .args(["-b:v", "1200k", "-maxrate", "1200k", "-bufsize", "1200k"])
                .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
                .args(extra)
                .arg(out),
            "ffmpeg packaging the clip",
            Duration::from_secs(120),
        )
    };
    encode(
        &["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"],
        &www.join("hls/index.m3u8"),
    );
    encode(
        &["-f", "dash", "-seg_duration", "2", "-use_timeline", "0"],
        &www.join("dash/index.mpd"),
    );
    ok(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", &format!("/CN={NAME}")])
            .args(["-addext", &format!("subjectAltName=DNS:{NAME}")])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
        "openssl making the certificate",
        Duration::from_secs(60),
    );
    // A large file; page objects of 2 to 60 KB; bulk pieces of 20 KB to 30 MB (fixed
    // sizes spread log-uniformly, shuffled).
    let file = |path: &Path, n: usize| std::fs::write(path, vec![0x5a; n]).expect("write");
    file(&www.join("big.bin"), 60 << 20);
    for i in 0..40 {
        file(
            &www.join(format!("page/{i}.bin")),
            2_000 + (i * 37_001) % 58_000,
        );
    }
    for (i, kb) in [900, 20, 30_000, 150, 4_000, 60, 12_000, 350, 2_000, 7_000]
        .iter()
        .enumerate()
    {
        file(&www.join(format!("bulk/{i}.bin")), kb * 1000);
    }
    let d = dir.display();
    let listen: String = [HLS, DASH, DASH_KEPT, DOWNLOAD, PAGES, BULK, SHORT]
        .iter()
        .map(|p| format!("    listen {SERVER}:{p} ssl;\n"))
        .collect();
    let conf = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/www/tmp;\n\
         \x20 proxy_temp_path {d}/www/tmp;\n  fastcgi_temp_path {d}/www/tmp;\n\
         \x20 uwsgi_temp_path {d}/www/tmp;\n  scgi_temp_path {d}/www/tmp;\n\
         \x20 default_type application/octet-stream;\n  keepalive_requests 100000;\n\
         \x20 keepalive_timeout 120s;\n\
         \x20 ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n\
         \x20 server {{\n{listen}    server_name {NAME};\n    root {d}/www;\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
    std::fs::write(dir.join("hosts"), format!("{SERVER} {NAME}\n")).expect("hosts");
    let short: String = (0..SHORT_FLOWS)
        .map(|i| {
            format!(
                "url = \"https://{NAME}:{SHORT}/page/{}.bin\"\noutput = \"/dev/null\"\n",
                i % 40
            )
        })
        .collect();
    std::fs::write(dir.join("short.curl"), short).expect("short.curl");
}

/// `args` in alice's namespace with `hosts` over `/etc/hosts` (its own mount namespace).
fn client(lab: &Lab, dir: &Path, what: &str, script: &str) -> (String, std::process::Child) {
    let wrapped = format!(
        "mount --bind {}/hosts /etc/hosts && {script}",
        dir.display()
    );
    let args = ["unshare", "-m", "sh", "-c", &wrapped];
    let log = dir.join(format!("{what}.log"));
    (what.to_string(), spawn_in(&lab.netns("alice"), &args, &log))
}

/// The daemon's TCP flows to the server by (server port, client port): (label, class,
/// bytes both ways).
fn daemon_flows(lab: &Lab) -> BTreeMap<(u16, u16), (String, String, u64)> {
    let flows = lab.api("/api/v1/flows?limit=10000");
    flows["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["dst"] == SERVER)
        .map(|f| {
            let port = |k: &str| f[k].as_u64().expect(k) as u16;
            let bytes = f["bytes"][0].as_u64().expect("up") + f["bytes"][1].as_u64().expect("down");
            let s = |k: &str| f[k].as_str().expect(k).to_string();
            (
                (port("dport"), port("sport")),
                (s("label"), s("class"), bytes),
            )
        })
        .collect()
}

#[test]
fn adaptive_streaming_to_an_unknown_name_is_video_by_its_shape() {
    let tmp = TempDir::new("shape-lab");
    make_site(&tmp.0);
    let lab = Lab::up(PREFIX, API_PORT, &[]);
    wait_healthy(lab.api_addr(), Duration::from_secs(30));
    let net = lab.netns("net");
    let mut procs = Procs(Vec::new());
    procs.0.push(nginx_in(&net, &tmp.0));
    let iperf_port = IPERF.to_string();
    procs.0.push((
        "iperf3 server".into(),
        spawn_in(
            &net,
            &["iperf3", "-s", "-1", "-B", SERVER, "-p", &iperf_port],
            &tmp.0.join("iperf3-server.log"),
        ),
    ));
    for port in [HLS, BULK, IPERF] {
        wait_listening(&net, port);
    }
    // The video ports' headers, to show a missed flow's timeline.
    let pcap = tmp.0.join("video.pcap");
    let filter = format!("tcp port {HLS} or tcp port {DASH_KEPT}");
    // Downstream leaves the server through its eth0.
    let capture = Capture::start_snaplen(&net, "eth0", "out", &filter, &pcap, 96);

    let url = |port: u16, path: &str| format!("https://{NAME}:{port}/{path}");
    let mut clients = Procs(Vec::new());
    let players = [(HLS, "hls/index.m3u8"); HLS_PLAYERS]
        .into_iter()
        .chain([(DASH, "dash/index.mpd"); 2]);
    for (i, (port, path)) in players.enumerate() {
        let play = format!(
            "exec ffmpeg -hide_banner -loglevel error -nostdin -re -tls_verify 0 -i {} -c copy -f null -",
            url(port, path)
        );
        clients
            .0
            .push(client(&lab, &tmp.0, &format!("player-{i}"), &play));
    }
    // DASH over one kept connection: the segments in order, one started every 2 s (the
    // segment's duration), by curl `--rate`.
    let mut chunks: Vec<String> = std::fs::read_dir(tmp.0.join("www/dash"))
        .expect("dash dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".m4s") && !n.starts_with("init"))
        .collect();
    chunks.sort();
    assert!(chunks.len() >= 15, "DASH segments: {chunks:?}");
    let mut kept = format!(" {} -o /dev/null", url(DASH_KEPT, "dash/index.mpd"));
    for name in std::iter::once("init-stream0.m4s".to_string()).chain(chunks) {
        kept += &format!(" {} -o /dev/null", url(DASH_KEPT, &format!("dash/{name}")));
    }
    for i in 0..DASH_KEPT_PLAYERS {
        let play = format!("exec curl -sS -k --rate 30/m{kept}");
        clients
            .0
            .push(client(&lab, &tmp.0, &format!("dash-kept-{i}"), &play));
    }
    let curl = "curl -sS -k -o /dev/null";
    clients.0.push(client(
        &lab,
        &tmp.0,
        "download",
        &format!("exec {curl} --limit-rate 2M {}", url(DOWNLOAD, "big.bin")),
    ));
    // Eight page loads, each its own connection, 1 to 5 s apart.
    let objects: String = (0..40)
        .map(|i| format!(" {}", url(PAGES, &format!("page/{i}.bin"))))
        .collect();
    let pages =
        format!("for t in 1 3 2 5 1 4 2 3; do curl -sS -k{objects} > /dev/null; sleep $t; done");
    clients.0.push(client(&lab, &tmp.0, "pages", &pages));
    // Ten pieces of 20 KB to 30 MB on one connection, one started every 4 s.
    let pieces: String = (0..10)
        .map(|i| format!(" {} -o /dev/null", url(BULK, &format!("bulk/{i}.bin"))))
        .collect();
    clients.0.push(client(
        &lab,
        &tmp.0,
        "bulk",
        &format!("exec curl -sS -k --rate 15/m{pieces}"),
    ));
    // One object per connection, about 22 a second.
    clients.0.push(client(
        &lab,
        &tmp.0,
        "short",
        &format!(
            "exec curl -sS -k -H 'Connection: close' --rate 1300/m -K {}/short.curl",
            tmp.0.display()
        ),
    ));
    clients.0.push(client(
        &lab,
        &tmp.0,
        "iperf3",
        &format!("exec iperf3 -c {SERVER} -p {iperf_port} -R -b 20M -t 20"),
    ));
    let started = Instant::now();
    clients.wait_all(Duration::from_secs(u64::from(CLIP_SECONDS) + 50));
    println!("clients done in {:?}", started.elapsed());

    let flows = until_still(
        || daemon_flows(&lab),
        Duration::from_secs(3),
        Duration::from_secs(30),
    );
    let (mut video, mut found, mut video_bytes, mut found_bytes) = (0u32, 0u32, 0u64, 0u64);
    let (mut background, mut false_video) = (0u32, 0u32);
    // Flows to the video ports that carried no segment (a playlist, a manifest): counted
    // apart, as are the flows of ffmpeg's DASH player, one segment each.
    let (mut manifests, mut per_segment, mut per_segment_found) = (0u32, 0u32, 0u32);
    let mut problems = Vec::new();
    let mut missed = Vec::new();
    for ((port, sport), (label, class, bytes)) in &flows {
        let is_video = label == "video.behavioural" && class == "video";
        if ![DASH, SHORT].contains(port) || class == "video" {
            println!("{port} <- {sport}: {label}/{class}, {bytes} bytes");
        }
        if *port == DASH {
            per_segment += 1;
            per_segment_found += u32::from(is_video);
        } else if [HLS, DASH_KEPT].contains(port) && *bytes < SEGMENT_MIN {
            manifests += 1;
            if is_video {
                problems.push(format!("a manifest's flow {port} <- {sport} is {label}"));
            }
        } else if [HLS, DASH_KEPT].contains(port) {
            video += 1;
            video_bytes += bytes;
            if is_video {
                found += 1;
                found_bytes += bytes;
            } else {
                missed.push((*port, *sport));
            }
        } else {
            background += 1;
            if is_video || class == "video" {
                false_video += 1;
                problems.push(format!("background {port} <- {sport} is {label}"));
            }
        }
    }
    let short = flows.keys().filter(|(port, _)| *port == SHORT).count();
    println!("{short} of {SHORT_FLOWS} short connections listed");
    let recall = f64::from(found) / f64::from(video.max(1));
    let recall_bytes = found_bytes as f64 / video_bytes.max(1) as f64;
    let false_rate = f64::from(false_video) / f64::from(background.max(1));
    println!(
        "video flows {found}/{video} ({recall:.3}), bytes {found_bytes}/{video_bytes} \
         ({recall_bytes:.3}); background {false_video}/{background} taken for video \
         ({false_rate:.4}); {manifests} manifest flows; ffmpeg's DASH: \
         {per_segment_found}/{per_segment} one-segment flows taken for video"
    );
    if video < (HLS_PLAYERS + DASH_KEPT_PLAYERS) as u32 || background < 1_000 {
        problems.push(format!(
            "too few flows: {video} video, {background} background"
        ));
    }
    if recall < RECALL_FLOWS || recall_bytes < RECALL_BYTES || false_rate > FALSE_VIDEO {
        problems.push("below the goals".to_string());
    }
    capture.stop();
    if !missed.is_empty() {
        let lines = timelines(&pcap, &missed);
        println!("{lines}");
        if !problems.is_empty() {
            problems.push(lines);
        }
    }
    drop(procs);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The missed video flows' downstream bytes second by second (`second:kilobytes`, seconds
/// from the capture's start, quiet seconds left out), read from the capture of the video
/// ports: what the shape saw, for a failure's message.
fn timelines(pcap: &Path, missed: &[(u16, u16)]) -> String {
    let mut reader = match peerwarden_classifier::CaptureReader::open(pcap) {
        Ok(r) => r,
        Err(e) => return format!("no capture of the video ports: {e}"),
    };
    let mut start = None;
    let mut per_second: BTreeMap<(u16, u16), BTreeMap<u64, u64>> = BTreeMap::new();
    while let Ok(Some(frame)) = reader.next_frame() {
        let Ok(p) = peerwarden_classifier::packet::decode(frame.link_type, frame.data) else {
            continue;
        };
        let t0 = *start.get_or_insert(frame.ts_ns);
        if missed.contains(&(p.sport, p.dport)) {
            let second = frame.ts_ns.saturating_sub(t0) / 1_000_000_000;
            *per_second
                .entry((p.sport, p.dport))
                .or_default()
                .entry(second)
                .or_default() += u64::from(frame.wire_len);
        }
    }
    let mut out = String::from("missed video flows, bytes down per second:");
    for ((port, client), seconds) in per_second {
        out += &format!("\n{port} <- {client}:");
        for (s, bytes) in seconds.iter().filter(|(_, b)| **b >= 1_000) {
            out += &format!(" {s}:{}k", bytes / 1_000);
        }
    }
    out
}
