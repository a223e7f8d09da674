//! The Debian package as an operator installs it (issue 14): `cargo deb` builds it,
//! `dpkg -i` installs it on this machine, and the installed `/usr/bin/peerwarden` runs in a
//! namespace lab as the unprivileged `peerwarden` user with exactly the capabilities of
//! the installed systemd unit (`setpriv`): it attaches to the gateway's interfaces, labels
//! an HTTP download, enforces a `block` rule on the wire, reloads its policy on SIGHUP
//! (the unit's `ExecReload=`), and stops cleanly on SIGTERM with nothing left attached or
//! pinned. Without any one of its capabilities it refuses to start with one line naming
//! it. The package is purged at the end, whatever the outcome.
//!
//! systemd does not run as PID 1 here, so the unit itself is checked with
//! `systemd-analyze verify` and its user, capabilities, pin directory and runtime
//! directory are reproduced by hand (see `peerwarden_tests::installed::daemon_command`).
//!
//! Run as root on a throwaway machine (it installs and purges a package, and creates and
//! removes a system user): `cargo test -p peerwarden-tests --test labs installed:: -- --test-threads=1`.

use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use peerwarden_tests::{
    installed::{
        BIN, Installed, InstalledDaemon, PIN_ROOT, RUN_DIR, RestoreOwner, USER, api_in,
        build_package, daemon_command, deb_field, proc_caps_and_uid, unit_values, user_ids,
    },
    lab::{Lab, TempDir, assert_nothing_attached, kill, run_bounded},
};

/// The lab's prefix and the daemon's API port (inside the gateway namespace).
const PREFIX: &str = "pwdeb";
const API_PORT: u16 = 19471;
/// The instance name in the test's config (pins under /sys/fs/bpf/peerwarden/<it>).
const INSTANCE: &str = "pwdeb-installed";
/// The history store, in the package's state directory.
const HISTORY: &str = "/var/lib/peerwarden/pwdeb-installed/history.db";
/// The lab's addresses (peerwarden's lab topology): alice and bob, the subscribers, and
/// the web server's address in the internet namespace.
const ALICE: &str = "100.64.1.10";
const BOB: &str = "100.64.1.20";
const WEB: &str = "203.0.113.10";
/// The file the web server offers.
const FILE_BYTES: usize = 4 << 20;

/// The lab's policy: alice and bob on `plan_alice` and `plan_bob`; `alice_web` is the web
/// class rule of alice's plan (empty for none).
fn policy(alice_web: &str) -> String {
    let classes = if alice_web.is_empty() {
        String::new()
    } else {
        format!("    classes:\n      web: {{ {alice_web} }}\n")
    };
    format!(
        "timezone: UTC\n\
         plans:\n\
         \x20 plan_alice:\n\
         \x20   rate: {{ down: 10gbit, up: 10gbit }}\n\
         {classes}\
         \x20 plan_bob:\n\
         \x20   rate: {{ down: 10gbit, up: 10gbit }}\n\
         subscribers:\n\
         \x20 - {{ id: alice, prefixes: [{ALICE}/32], plan: plan_alice }}\n\
         \x20 - {{ id: bob, prefixes: [{BOB}/32], plan: plan_bob }}\n\
         default_plan: plan_bob\n"
    )
}

/// Replaces `path`'s contents keeping its modification time, so that only a SIGHUP makes
/// the daemon read it (its file watcher compares times).
fn replace_keeping_mtime(path: &Path, text: &str) {
    let meta = std::fs::metadata(path).expect("stat");
    let mtime = meta.modified().expect("mtime");
    std::fs::write(path, text).expect("writing");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

/// `curl` from subscriber `who`'s namespace for the web server's file, at most `secs`
/// seconds: the bytes it received and whether it completed.
fn download(lab: &Lab, who: &str, secs: u32) -> (u64, bool) {
    let out = run_bounded(
        Command::new("ip").args([
            "netns",
            "exec",
            &lab.netns(who),
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--max-time",
            &secs.to_string(),
            &format!("http://{WEB}/big.bin"),
        ]),
        Duration::from_secs(u64::from(secs) + 10),
    );
    let bytes = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (bytes, out.status.success() && bytes == FILE_BYTES as u64)
}

/// The one line starting `peerwarden: ` in `stderr`, or a panic describing it.
fn one_reason(stderr: &str) -> &str {
    let reasons: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("peerwarden: "))
        .collect();
    assert_eq!(reasons.len(), 1, "one reason expected:\n{stderr}");
    reasons[0]
}

#[test]
fn the_installed_package_runs_unprivileged_labels_enforces_reloads_and_stops() {
    peerwarden_tests::lab::require_root();
    let tmp = TempDir::new("installed");

    // Build and install.
    let (deb, took) = build_package();
    eprintln!(
        "package: {} ({} KiB installed, {} KiB file), cargo deb took {:.1} s",
        deb.display(),
        deb_field(&deb, "Installed-Size"),
        std::fs::metadata(&deb).map(|m| m.len() / 1024).unwrap_or(0),
        took.as_secs_f64()
    );
    let installed = Installed::install(&deb);

    // What dpkg put where, with which owner and mode.
    let (uid, gid) = user_ids(USER).expect("the postinst creates the user");
    let shell = Command::new("getent")
        .args(["passwd", USER])
        .output()
        .expect("getent");
    assert!(
        String::from_utf8_lossy(&shell.stdout)
            .trim()
            .ends_with("/usr/sbin/nologin"),
        "a system user without a login shell: {}",
        String::from_utf8_lossy(&shell.stdout)
    );
    let mode = |p: &str| {
        let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(mode(BIN), (0, 0, 0o755));
    assert_eq!(mode("/etc/peerwarden/config.yaml"), (0, gid, 0o640));
    assert_eq!(mode("/etc/peerwarden/policy.yaml"), (0, gid, 0o640));
    assert_eq!(mode("/var/lib/peerwarden"), (uid, gid, 0o700));
    let conffiles = Command::new("dpkg-query")
        .args(["-W", "-f=${Conffiles}", "peerwarden"])
        .output()
        .expect("dpkg-query");
    let conffiles = String::from_utf8_lossy(&conffiles.stdout);
    for f in ["/etc/peerwarden/config.yaml", "/etc/peerwarden/policy.yaml"] {
        assert!(conffiles.contains(f), "{f} is not a conffile: {conffiles}");
    }

    // The unit: clean for systemd-analyze, and the capabilities the daemon gets below.
    let unit_path = ["/lib/systemd/system", "/usr/lib/systemd/system"]
        .iter()
        .map(|d| Path::new(d).join("peerwarden.service"))
        .find(|p| p.exists())
        .expect("the package installs peerwarden.service");
    let verify = run_bounded(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit_path),
        Duration::from_secs(60),
    );
    let verify_err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && verify_err.trim().is_empty(),
        "systemd-analyze verify {}: {}\n{verify_err}",
        unit_path.display(),
        verify.status
    );
    let unit = std::fs::read_to_string(&unit_path).expect("reading the unit");
    let caps: Vec<String> = unit_values(&unit, "AmbientCapabilities")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(caps, ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
    assert_eq!(
        unit_values(&unit, "CapabilityBoundingSet"),
        [caps.join(" ")],
        "the bounding set is the ambient set"
    );
    assert_eq!(unit_values(&unit, "User"), [USER]);
    assert_eq!(
        unit_values(&unit, "ExecStart"),
        ["/usr/bin/peerwarden run --config /etc/peerwarden/config.yaml"]
    );
    assert_eq!(
        unit_values(&unit, "ExecReload"),
        ["/bin/kill -HUP $MAINPID"]
    );
    let setpriv_caps = |caps: &[&String]| {
        caps.iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let all_caps: Vec<&String> = caps.iter().collect();

    // The unit's preparation of the pin directory, as root (its `ExecStartPre=+` lines),
    // except the recursive chown of the instances already there: on this machine those
    // belong to other tests' root daemons.
    let _pin_root = RestoreOwner::new(Path::new(PIN_ROOT));
    std::fs::create_dir_all(RUN_DIR).expect("a mount point for the runtime directory");
    for line in unit_values(&unit, "ExecStartPre") {
        let argv: Vec<&str> = line.trim_start_matches('+').split_whitespace().collect();
        if argv.contains(&"-R") {
            continue;
        }
        let out = run_bounded(
            Command::new(argv[0]).args(&argv[1..]),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "ExecStartPre {line}: {out:?}");
    }
    assert_eq!(mode(PIN_ROOT), (uid, gid, 0o700));

    // The operator's edits: the lab's interfaces, a port of the test's, a policy for the
    // lab's subscribers (the installed example first passes the installed checker).
    let check = run_bounded(
        Command::new(BIN).args(["policy", "check", "/etc/peerwarden/policy.yaml"]),
        Duration::from_secs(30),
    );
    assert!(check.status.success(), "the installed policy: {check:?}");
    let lab = Lab::up(PREFIX, API_PORT, &["--no-daemon"]);
    let gw = lab.netns("gw");
    let config = std::fs::read_to_string("/etc/peerwarden/config.yaml").expect("config");
    let config = config
        .replace("downlink: eth1", "downlink: downlink")
        .replace("uplink: eth0", "uplink: uplink")
        .replace("127.0.0.1:9440", &format!("127.0.0.1:{API_PORT}"))
        .replace("flow_table_size: 1048576", "flow_table_size: 65536")
        // A store of its own in the state directory: root daemons of other tests on a
        // shared machine keep theirs at the default path.
        .replace("/var/lib/peerwarden/history.db", HISTORY)
        + &format!("instance: {INSTANCE}\n");
    assert!(
        config.contains("downlink: downlink")
            && config.contains("uplink: uplink")
            && config.contains(HISTORY)
    );
    std::fs::write("/etc/peerwarden/config.yaml", config).expect("editing the config");
    std::fs::write("/etc/peerwarden/policy.yaml", policy("")).expect("writing the policy");
    let pins = Path::new(PIN_ROOT).join(INSTANCE);

    // The web server in the internet namespace.
    let www = tmp.0.join("www");
    std::fs::create_dir_all(&www).expect("www");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let data: Vec<u8> = (0..FILE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(www.join("big.bin"), data).expect("big.bin");
    let mut web = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns("net"),
            "python3",
            "-m",
            "http.server",
        ])
        .args(["80", "--bind", WEB, "--directory"])
        .arg(&www)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the web server");
    peerwarden_tests::lab::wait_listening(&lab.netns("net"), 80);

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Without any one of its capabilities, the daemon refuses, naming it.
        for missing in &all_caps {
            let some: Vec<&String> = all_caps.iter().copied().filter(|c| c != missing).collect();
            let out = run_bounded(
                &mut daemon_command(&gw, &setpriv_caps(&some), "/etc/peerwarden/config.yaml"),
                Duration::from_secs(30),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            let line = one_reason(&stderr);
            eprintln!("without {missing}: {} -> {line}", out.status);
            assert!(!out.status.success(), "started without {missing}");
            assert!(
                line.starts_with(&format!(
                    "peerwarden: missing capability {missing} (needed "
                )) && line.ends_with("); run as root or grant it (see the systemd unit)"),
                "{line}"
            );
            assert_nothing_attached(&gw, &format!("after the refusal without {missing}"));
            assert!(
                !pins.exists(),
                "pins left after the refusal without {missing}"
            );
        }

        // With exactly the unit's capabilities: attached, as the user, with those only.
        let mut daemon = InstalledDaemon::start(
            &gw,
            &setpriv_caps(&all_caps),
            "/etc/peerwarden/config.yaml",
            API_PORT,
            &tmp.0.join("daemon.log"),
        );
        let (eff, daemon_uid) = proc_caps_and_uid(daemon.pid());
        assert_eq!(daemon_uid, uid, "the daemon runs as {USER}");
        assert_eq!(eff, 1 << 39 | 1 << 38 | 1 << 12, "CapEff {eff:#x}");
        let status = api_in(&gw, API_PORT, "/api/v1/status");
        let attached: Vec<&str> = status["attached"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["interface"].as_str())
            .collect();
        for iface in ["downlink", "uplink"] {
            assert!(attached.contains(&iface), "{iface} not attached: {status}");
        }
        assert!(pins.join("map_FLOWS").exists(), "maps pinned while running");
        assert_eq!(
            std::fs::metadata(pins.join("map_FLOWS"))
                .map(|m| m.uid())
                .ok(),
            Some(uid),
            "the pins are the user's"
        );

        // Labelled: alice's download is an `http` flow of hers, counted whole.
        let (got, done) = download(&lab, "alice", 30);
        assert!(done, "alice's download before any rule: {got} bytes");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let flows = api_in(&gw, API_PORT, "/api/v1/flows?limit=1000");
            let web_flow = flows["flows"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["src"] == ALICE && f["dst"] == WEB && f["dport"] == 80);
            if let Some(f) = web_flow {
                let down = f["bytes"][1].as_u64().unwrap_or(0);
                if f["label"] == "http" && down >= FILE_BYTES as u64 {
                    assert_eq!(f["subscriber"], "alice", "{f}");
                    assert_eq!(f["class"], "web", "{f}");
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no http flow of alice's with the whole file after 15 s: {flows}"
            );
            thread::sleep(Duration::from_millis(500));
        }

        // Reloaded on SIGHUP (what `systemctl reload` sends): the file changes without a
        // new modification time, so the watcher does not see it and only the signal does.
        let before = api_in(&gw, API_PORT, "/api/v1/policy");
        replace_keeping_mtime(
            Path::new("/etc/peerwarden/policy.yaml"),
            &policy("action: block"),
        );
        thread::sleep(Duration::from_millis(2500));
        assert_eq!(
            api_in(&gw, API_PORT, "/api/v1/policy")["loaded_at"],
            before["loaded_at"],
            "reloaded before the SIGHUP"
        );
        kill(daemon.pid(), "HUP");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = api_in(&gw, API_PORT, "/api/v1/policy");
            if now["loaded_at"] != before["loaded_at"] {
                assert!(
                    now["source"]
                        .as_str()
                        .unwrap_or("")
                        .contains("action: block"),
                    "{now}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SIGHUP did not reload the policy within 15 s:\n{}",
                daemon.log_text()
            );
            thread::sleep(Duration::from_millis(200));
        }

        // Enforced on the wire: alice's web download stalls once labelled, bob's (another
        // plan) completes through the same gateway.
        let (alice_got, alice_done) = download(&lab, "alice", 8);
        let (bob_got, bob_done) = download(&lab, "bob", 30);
        eprintln!("blocked: alice got {alice_got} bytes, bob {bob_got}");
        assert!(
            !alice_done && alice_got < FILE_BYTES as u64 / 2,
            "alice's web is blocked, yet she got {alice_got} of {FILE_BYTES} bytes"
        );
        assert!(bob_done, "bob's download: {bob_got} of {FILE_BYTES} bytes");

        // The history store is the user's, in the state directory.
        assert_eq!(
            std::fs::metadata(HISTORY).map(|m| m.uid()).ok(),
            Some(uid),
            "the history store"
        );

        // Stopped cleanly: exit 0, nothing attached, nothing pinned.
        let status = daemon.terminate(Duration::from_secs(20));
        assert!(status.success(), "SIGTERM: {status}");
        assert_nothing_attached(&gw, "after SIGTERM");
        assert!(!pins.exists(), "pins left after SIGTERM");
    }));
    let _ = web.kill();
    let _ = web.wait();
    drop(lab);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }

    // Purged: the user, its data and the config are gone.
    installed.purge();
    assert_eq!(user_ids(USER), None, "purge removes the user");
    for gone in [BIN, "/etc/peerwarden/config.yaml", "/var/lib/peerwarden"] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
}
