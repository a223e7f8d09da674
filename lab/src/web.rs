//! Plain HTTP background traffic: nginx on the web server's addresses, and curl clients on
//! alice (IPv4) and bob (IPv6 and IPv4 in turn) fetching a file over and over.

use std::{
    os::unix::process::CommandExt as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use super::{
    Lab, LabError, Role, exec,
    process::{self, Output, Service},
    swarm,
    topology::addr,
};

/// The file the clients fetch.
pub const FILE: &str = "web.bin";
/// Its size: a few MB, so each fetch is a flow of a few thousand packets.
pub const FILE_BYTES: usize = 4 << 20;

/// Writes nginx's config and the served file, starts nginx in the internet namespace and
/// waits until it listens on both addresses.
pub fn start_server(lab: &Lab) -> Result<Service, LabError> {
    let www = lab.path("www");
    let prefix = lab.path("nginx");
    exec::create_dir(&www)?;
    exec::create_dir(&prefix.join("tmp"))?;
    let file = www.join(FILE);
    if !file.is_file() {
        exec::write_file(&file, random_bytes(FILE_BYTES)?)?;
    }
    write_hls(&www)?;
    let state = lab.state_dir().display();
    let conf = lab.path("nginx.conf");
    // One process in the foreground, everything under the state dir (pid, logs, temp
    // paths), so nothing touches /var or /etc/nginx and `lab down` finds it by pid.
    exec::write_file(
        &conf,
        format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {state}/nginx/nginx.pid;\n\
             error_log {state}/web.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {state}/nginx/tmp/body;\n\
             \x20 proxy_temp_path {state}/nginx/tmp/proxy;\n\
             \x20 fastcgi_temp_path {state}/nginx/tmp/fastcgi;\n\
             \x20 uwsgi_temp_path {state}/nginx/tmp/uwsgi;\n\
             \x20 scgi_temp_path {state}/nginx/tmp/scgi;\n\
             \x20 default_type application/octet-stream;\n\
             \x20 server {{\n\
             \x20   listen {v4}:80;\n\
             \x20   listen [{v6}]:80;\n\
             \x20   root {state}/www;\n\
             \x20 }}\n\
             }}\n",
            v4 = addr::WEB_V4,
            v6 = addr::WEB_V6,
        ),
    )?;
    let ns = lab.netns(Role::Internet);
    let error_log = lab.path("web.log");
    let (mut nginx, _) = process::spawn(
        lab.state_dir(),
        "web",
        Some(&ns),
        &[
            "nginx",
            "-e",
            &error_log.to_string_lossy(),
            "-p",
            &prefix.to_string_lossy(),
            "-c",
            &conf.to_string_lossy(),
        ],
        None,
        Output::Log,
    )?;
    let v4 = format!("{}:80", addr::WEB_V4);
    let v6 = format!("[{}]:80", addr::WEB_V6);
    swarm::wait_listening(
        &mut nginx,
        &ns,
        &[("-Hltn", &v4), ("-Hltn", &v6)],
        "web server",
    )?;
    Ok(nginx)
}

/// Segments of the lab's HLS stream, and their size (about 2 s at 2 Mbit/s).
const HLS_SEGMENTS: usize = 6;
const HLS_SEGMENT_BYTES: usize = 512 * 1024;

/// An HLS stream for the viewer: a media playlist and MPEG-TS-sized segments (the bytes
/// are random; what the gateway sees is the playlist and segment requests and answers).
fn write_hls(www: &std::path::Path) -> Result<(), LabError> {
    let live = www.join("live");
    exec::create_dir(&live)?;
    let mut playlist = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n",
    );
    for i in 0..HLS_SEGMENTS {
        let seg = live.join(format!("seg{i}.ts"));
        if !seg.is_file() {
            exec::write_file(&seg, random_bytes(HLS_SEGMENT_BYTES)?)?;
        }
        playlist.push_str(&format!("#EXTINF:2.0,\nseg{i}.ts\n"));
    }
    exec::write_file(&live.join("index.m3u8"), playlist)
}

/// The viewer's requests in play order: the playlist, then each segment.
fn hls_urls() -> Vec<String> {
    let base = format!("http://{}/live", addr::WEB_V4);
    std::iter::once(format!("{base}/index.m3u8"))
        .chain((0..HLS_SEGMENTS).map(|i| format!("{base}/seg{i}.ts")))
        .collect()
}

fn random_bytes(n: usize) -> Result<Vec<u8>, LabError> {
    use std::io::Read as _;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| LabError::Io {
            op: "reading",
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(buf)
}

/// What one HTTP client did.
#[derive(Clone, Debug, Default)]
pub struct HttpStats {
    /// `alice` or `bob`.
    pub client: &'static str,
    /// Complete fetches.
    pub fetches: u64,
    /// Failed fetches.
    pub failures: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// The last failure, for the error message.
    pub last_failure: String,
}

/// The running curl loops.
pub struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<HttpStats>>,
}

impl Clients {
    /// Starts one fetch loop per subscriber. `rate` is curl's `--limit-rate` (e.g. `4M`),
    /// keeping the background light on a two-core machine.
    pub fn start(lab: &Lab, rate: &str) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let v4 = format!("http://{}/{FILE}", addr::WEB_V4);
        let v6 = format!("http://[{}]/{FILE}", addr::WEB_V6);
        // Bob also watches an HLS stream: a third loop fetching the playlist and segments.
        let plan: [(&'static str, String, Vec<String>); 3] = [
            ("alice", lab.netns(Role::Alice), vec![v4.clone()]),
            ("bob", lab.netns(Role::Bob), vec![v6, v4]),
            ("bob (hls)", lab.netns(Role::Bob), hls_urls()),
        ];
        let threads = plan
            .into_iter()
            .map(|(client, ns, urls)| {
                let stop = Arc::clone(&stop);
                let rate = rate.to_string();
                thread::spawn(move || fetch_loop(client, &ns, &urls, &rate, &stop))
            })
            .collect();
        Clients { stop, threads }
    }

    /// Lets each client finish its current fetch, then returns their statistics.
    pub fn finish(mut self) -> Vec<HttpStats> {
        self.stop.store(true, Ordering::SeqCst);
        std::mem::take(&mut self.threads)
            .into_iter()
            .filter_map(|t| t.join().ok())
            .collect()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn fetch_loop(
    client: &'static str,
    ns: &str,
    urls: &[String],
    rate: &str,
    stop: &AtomicBool,
) -> HttpStats {
    let mut stats = HttpStats {
        client,
        ..HttpStats::default()
    };
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let url = &urls[i % urls.len()];
        i += 1;
        let argv = [
            "curl",
            "-sS",
            "-g",
            "-o",
            "/dev/null",
            "--max-time",
            "30",
            "--limit-rate",
            rate,
            "-w",
            "%{http_code} %{size_download}",
            url,
        ];
        // Own process group: a Ctrl-C reaches the lab command, which ends the loop itself.
        let out = exec::command(Some(ns), &argv).process_group(0).output();
        match out {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let mut it = text.split_whitespace();
                let code = it.next().unwrap_or("");
                let bytes: u64 = it.next().and_then(|b| b.parse().ok()).unwrap_or(0);
                if out.status.success() && code == "200" {
                    stats.fetches += 1;
                    stats.bytes += bytes;
                } else {
                    stats.failures += 1;
                    stats.bytes += bytes;
                    stats.last_failure = format!(
                        "{url}: HTTP {code}, {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    // Do not spin on a broken path.
                    thread::sleep(Duration::from_millis(500));
                }
            }
            Err(err) => {
                stats.failures += 1;
                stats.last_failure = format!("curl: {err}");
                thread::sleep(Duration::from_millis(500));
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    stats
}
