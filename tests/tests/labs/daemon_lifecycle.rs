//! The daemon's life cycle on a real gateway namespace: starting and stopping it (also with
//! SIGTERM while traffic flows) leaves no program attached and nothing pinned under
//! /sys/fs/bpf/peerwarden (a crash leaves both: see crash_restart.rs), and a daemon that
//! cannot run refuses to start with one line saying why and a non-zero exit status, with
//! nothing attached or pinned.
//!
//! Each test builds its own lab with `peerwarden lab up --no-daemon` and starts the daemon
//! itself, so it owns the process and its exit status.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs daemon_lifecycle::`.

use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use peerwarden_tests::lab::{
    Daemon, Lab, LoopTraffic, TempDir, assert_nothing_attached, peerwarden_bin, run_bounded,
    xdp_attached,
};

/// A config for `lab`'s gateway with its API on the lab's port, plus `extra` lines.
fn config(lab: &Lab, downlink: &str, uplink: &str, netns: &str, extra: &str) -> String {
    format!(
        "interfaces: {{ downlink: {downlink}, uplink: {uplink} }}\n\
         netns: {netns}\n\
         api: {{ listen: \"127.0.0.1:{}\" }}\n\
         flow_table_size: 65536\n{extra}",
        lab.api_port
    )
}

/// The pin directory of the lab's gateway instance (namespace and interfaces).
fn pins(lab: &Lab) -> std::path::PathBuf {
    Path::new("/sys/fs/bpf/peerwarden").join(format!("{}_downlink_uplink", lab.netns("gw")))
}

fn start_daemon(lab: &Lab, tmp: &Path, name: &str) -> Daemon {
    let path = tmp.join(format!("{name}.yaml"));
    let gw = lab.netns("gw");
    std::fs::write(&path, config(lab, "downlink", "uplink", &gw, "")).expect("writing config");
    Daemon::start(&path, &tmp.join(format!("{name}.log")), lab.api_addr())
}

#[test]
fn start_and_stop_leave_nothing_attached() {
    let tmp = TempDir::new("lifecycle-stop");
    let lab = Lab::up("pwtl1", 19461, &["--no-daemon"]);
    let gw = lab.netns("gw");
    assert_nothing_attached(&gw, "before the daemon started");

    // Twice: a second start after a clean stop must find the interfaces free again.
    for run in 1..=2 {
        let daemon = start_daemon(&lab, &tmp.0, &format!("run{run}"));
        assert_eq!(
            xdp_attached(&gw),
            2,
            "run {run}: XDP on downlink and uplink while running"
        );
        assert!(
            pins(&lab).join("map_FLOWS").exists(),
            "run {run}: maps pinned while running"
        );
        let status = daemon.terminate(Duration::from_secs(10));
        assert!(
            status.success(),
            "run {run}: the daemon exited with {status} on SIGTERM"
        );
        assert_nothing_attached(&gw, &format!("run {run}: after SIGTERM"));
        assert!(
            !pins(&lab).exists(),
            "run {run}: a clean stop removes the pins"
        );
    }
}

#[test]
fn sigterm_mid_traffic_leaves_nothing_attached() {
    let tmp = TempDir::new("lifecycle-traffic");
    let lab = Lab::up("pwtl2", 19462, &["--no-daemon"]);
    let gw = lab.netns("gw");
    let daemon = start_daemon(&lab, &tmp.0, "daemon");
    assert_eq!(
        xdp_attached(&gw),
        2,
        "XDP on downlink and uplink while running"
    );

    let mut traffic = LoopTraffic::start(&lab, &tmp.0.join("traffic.log"), 60);

    // Mid-traffic: the probe has counted swarm bytes and the swarm is still running.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mix = lab.api("/api/v1/mix");
        let p2p: u64 = mix["classes"]["p2p"]["bytes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.as_u64())
            .sum();
        if p2p > 1_000_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no swarm traffic through the gateway after 60 s; traffic log:\n{}",
            std::fs::read_to_string(tmp.0.join("traffic.log")).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(200));
    }

    let status = daemon.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "the daemon exited with {status} on SIGTERM mid-traffic"
    );
    assert_nothing_attached(&gw, "after SIGTERM mid-traffic");
    assert!(
        !pins(&lab).exists(),
        "pins removed after SIGTERM mid-traffic"
    );
    traffic.stop();
    // The lab guard removes the namespaces.
}

#[test]
fn refuses_to_start_with_a_one_line_reason() {
    let tmp = TempDir::new("lifecycle-refuse");
    let lab = Lab::up("pwtl3", 19463, &["--no-daemon"]);
    let gw = lab.netns("gw");
    let valid = config(&lab, "downlink", "uplink", &gw, "");

    let cases: Vec<(&str, String, &str, bool)> = vec![
        // (case, config, what the reason must name, run as nobody)
        (
            "missing uplink",
            config(&lab, "downlink", "nosuch0", &gw, ""),
            "nosuch0",
            false,
        ),
        (
            "missing downlink",
            config(&lab, "nosuch1", "uplink", &gw, ""),
            "nosuch1",
            false,
        ),
        (
            "missing netns",
            config(&lab, "downlink", "uplink", "pwtl3-nope", ""),
            "pwtl3-nope",
            false,
        ),
        (
            "bad yaml",
            "interfaces: { downlink: downlink, uplink: uplink\nnetns: [\n".to_string(),
            "bad-yaml.yaml",
            false,
        ),
        (
            "unknown key",
            config(&lab, "downlink", "uplink", &gw, "bogus_key: 1\n"),
            "bogus_key",
            false,
        ),
        (
            // Refused after the maps were made and pinned: they must go again.
            "unwritable history",
            config(
                &lab,
                "downlink",
                "uplink",
                &gw,
                "history: { path: /proc/peerwarden-nope/history.db }\n",
            ),
            "history",
            false,
        ),
        ("not root", valid, "root", true),
    ];

    let mut failures = Vec::new();
    for (case, text, needle, as_nobody) in cases {
        let path = tmp.0.join(format!("{}.yaml", case.replace(' ', "-")));
        std::fs::write(&path, text).expect("writing config");
        let mut cmd = if as_nobody {
            // Not-root, tested from root: drop to nobody for this one command (util-linux).
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(peerwarden_bin());
            c
        } else {
            Command::new(peerwarden_bin())
        };
        cmd.arg("run").arg("--config").arg(&path);
        let out = run_bounded(&mut cmd, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reasons: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("peerwarden: "))
            .collect();
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        eprintln!("{case}: {} -> {last}", out.status);
        let ok = out.status.code().is_some_and(|c| c != 0)
            && reasons.len() == 1
            && last.starts_with("peerwarden: ")
            && last.contains(needle);
        if !ok {
            failures.push(format!(
                "{case}: expected a non-zero exit and one last line `peerwarden: ...{needle}...`, \
                 got {} with stderr:\n{stderr}",
                out.status
            ));
        }
        // A refusal must not leave half an attachment behind (e.g. downlink attached when
        // the uplink is missing).
        assert_nothing_attached(&gw, &format!("after the refusal `{case}`"));
        assert!(!pins(&lab).exists(), "pins left after the refusal `{case}`");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
