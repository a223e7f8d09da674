//! The dashboard in a real browser: a lab with real BitTorrent and HTTP traffic through the
//! gateway, then headless Chromium loads `http://127.0.0.1:<port>/` from the daemon, runs
//! the page's script against the live API and prints the resulting DOM. The page writes
//! what it drew into data attributes (`<svg id="mix-chart" data-points=.. data-p2p-bytes=..>`,
//! `<tr class="flow" data-label=..>`), which are checked against the API itself.
//!
//! Chromium only talks to 127.0.0.1: the page has no external references (the daemon also
//! sends a `default-src 'self'` Content-Security-Policy), and the flags below switch off
//! the browser's own background requests (updates, sync, field trials, QUIC).
//!
//! The screenshot is written to a temporary directory and checked; with
//! `UPDATE_SCREENSHOT=1` it also replaces `docs/dashboard.png` (review it before committing),
//! after a longer run (90 s instead of 12 s) so the chart shows more than a few points.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test api dashboard::`.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use peerwarden_tests::lab::{Lab, TempDir, peerwarden_bin, run_bounded};

const PREFIX: &str = "pwtdb";
const API_PORT: u16 = 19471;
const CHROMIUM: &str = "/usr/bin/chromium";

/// A child process killed and reaped on drop (the test's own `lab traffic`).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs headless Chromium on the dashboard with `extra` flags (`--dump-dom`,
/// `--screenshot=...`) and returns its stdout. A fresh profile per run, removed after.
fn chromium(lab: &Lab, profile: &Path, extra: &[String]) -> String {
    let url = format!("http://{}/", lab.api_addr());
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-domain-reliability",
        // Virtual time runs the page's 2 s refresh a few times without waiting for real.
        "--virtual-time-budget=8000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(&url);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The opening tags `<tag ...>` in `html` whose text contains `marker`.
fn tags<'a>(html: &'a str, tag: &str, marker: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let t = &rest[i..];
        let end = t.find('>').map_or(t.len(), |e| e + 1);
        if t[..end].contains(marker) {
            found.push(&t[..end]);
        }
        rest = &t[end..];
    }
    found
}

/// The value of attribute `name` in an opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// Up plus down of a `[up, down]` JSON pair.
fn p2p_bytes(pair: &serde_json::Value) -> u64 {
    (0..2).filter_map(|i| pair[i].as_u64()).sum()
}

fn num(tag: &str, name: &str) -> u64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing or not a number in {tag}"))
}

#[test]
fn dashboard_draws_the_live_mix_and_flows() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: scripts/setup.sh installs it"
    );
    let tmp = TempDir::new("dashboard");
    let lab = Lab::up(PREFIX, API_PORT, &["--swarms"]);
    // Declared after the lab, so dropped (killed) before the lab goes down.
    let traffic = ChildGuard(
        Command::new(peerwarden_bin())
            .args([
                "lab",
                "traffic",
                "--prefix",
                PREFIX,
                "--loop",
                "--seconds",
                "300",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting lab traffic"),
    );
    // Until the swarm has moved real data (the first round needs a few seconds to set up),
    // then long enough for a chart of several points, with the flows still live.
    let deadline = Instant::now() + Duration::from_secs(60);
    while p2p_bytes(&lab.api("/api/v1/mix")["classes"]["p2p"]["bytes"]) < 1_000_000 {
        assert!(
            Instant::now() < deadline,
            "no p2p traffic through the gateway after 60 s"
        );
        thread::sleep(Duration::from_secs(1));
    }
    // For the picture in the README, a longer run fills more of the chart.
    let update_screenshot = std::env::var_os("UPDATE_SCREENSHOT").is_some();
    thread::sleep(Duration::from_secs(if update_screenshot { 90 } else { 12 }));

    let dom = chromium(&lab, &tmp.0.join("profile-dom"), &["--dump-dom".into()]);
    std::fs::write(tmp.0.join("dom.html"), &dom).expect("saving the DOM");

    let svg = *tags(&dom, "svg", "id=\"mix-chart\"")
        .first()
        .unwrap_or_else(|| panic!("no #mix-chart in the DOM:\n{dom}"));
    eprintln!("chart: {svg}");
    let points = num(svg, "data-points");
    if points == 0 {
        // What the API answers now, to tell a page fault from an empty series.
        let (window, step) = (num(svg, "data-window"), num(svg, "data-step"));
        let series = lab.api(&format!("/api/v1/mix/series?window={window}s&step={step}s"));
        eprintln!(
            "API series now: {} points, range {}; status: {}",
            series["points"].as_array().map_or(0, |p| p.len()),
            series["range"],
            lab.api("/api/v1/status")
        );
    }
    assert!(points > 0, "the chart drew no points: {svg}");
    let page_p2p = num(svg, "data-p2p-bytes");
    assert!(page_p2p > 0, "no p2p bytes in the chart: {svg}");

    // The same series from the API: the page's figure must be of the same order (the page
    // read it a moment earlier; the window covers the whole run either way).
    let (window, step) = (num(svg, "data-window"), num(svg, "data-step"));
    let series = lab.api(&format!("/api/v1/mix/series?window={window}s&step={step}s"));
    let api_p2p: u64 = series["points"]
        .as_array()
        .expect("points")
        .iter()
        .flat_map(|p| {
            p["classes"]["p2p"]["bytes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|b| b.as_u64())
        .sum();
    eprintln!("p2p bytes: page {page_p2p}, API {api_p2p}");
    let ratio = page_p2p as f64 / api_p2p.max(1) as f64;
    assert!(
        (0.1..=10.0).contains(&ratio),
        "page p2p bytes {page_p2p} vs API {api_p2p}"
    );

    let rows = tags(&dom, "tr", "class=\"flow\"");
    assert!(!rows.is_empty(), "no flow rows in the DOM:\n{dom}");
    let bt = rows
        .iter()
        .filter(|r| attr(r, "data-label").is_some_and(|l| l.starts_with("bittorrent")))
        .count();
    eprintln!("flow rows: {}, bittorrent*: {bt}", rows.len());
    assert!(bt > 0, "no bittorrent flow rows: {rows:?}");

    // Rate cards and panels were drawn, and the page thinks the API is up.
    let p2p_card = *tags(&dom, "div", "id=\"rate-p2p\"")
        .first()
        .expect("p2p rate card");
    assert!(attr(p2p_card, "data-bps").is_some(), "{p2p_card}");
    let banner = *tags(&dom, "div", "id=\"banner\"").first().expect("banner");
    assert!(
        banner.contains(" hidden"),
        "the API-unreachable banner shows: {banner}"
    );
    assert!(
        dom.contains(">live<"),
        "the connection pill does not say live"
    );
    assert!(
        dom.contains("xdp_downlink"),
        "the probe panel shows no attachment"
    );

    // The swarm view is on in this lab: the panel lists the lab's swarms, as the API does.
    let swarms = lab.api("/api/v1/swarms?sort=transit_bytes&limit=10");
    let api_ids: Vec<&str> = swarms["swarms"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    let page_swarms = tags(&dom, "li", "class=\"swarm\"");
    eprintln!("swarms: page {page_swarms:?}, API {api_ids:?}");
    assert!(
        !page_swarms.is_empty(),
        "the swarms panel lists no swarm (API: {swarms})"
    );
    assert!(
        page_swarms
            .iter()
            .filter_map(|s| attr(s, "data-swarm"))
            .any(|id| api_ids.contains(&id)),
        "no swarm on the page is one the API lists: {page_swarms:?} vs {api_ids:?}"
    );
    assert!(
        page_swarms
            .iter()
            .filter_map(|s| attr(s, "data-transit")?.parse::<u64>().ok())
            .any(|t| t > 0),
        "no swarm on the page shows transit bytes: {page_swarms:?}"
    );

    let png = tmp.0.join("dashboard.png");
    chromium(
        &lab,
        &tmp.0.join("profile-shot"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,1800".into(),
            "--hide-scrollbars".into(),
        ],
    );
    let bytes = std::fs::read(&png).expect("the screenshot exists");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    assert!(
        bytes.len() > 30_000,
        "the screenshot is suspiciously small ({} bytes)",
        bytes.len()
    );
    if update_screenshot {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::copy(&png, &docs).expect("writing docs/dashboard.png");
        eprintln!("wrote {}", docs.display());
    }
    drop(traffic);
}
