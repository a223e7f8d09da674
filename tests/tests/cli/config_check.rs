//! `peerwarden config check FILE`: every problem of a daemon configuration as
//! `FILE:LINE:COL: message`, then the policy it names (its errors at the policy's own
//! places), the service file (its errors at its own places), the interfaces (in the named
//! namespace) and the TLS certificate and key; exit 0
//! with a one-line summary, 1 with every problem, 2 on a usage error.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use peerwarden_tests::lab::{TempDir, peerwarden_bin, require_root, run_bounded};

/// The workspace's root, where `policies/examples/` and `peerwarden/examples/` are.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn isp_policy() -> String {
    workspace()
        .join("policies/examples/isp.yaml")
        .display()
        .to_string()
}

/// `peerwarden config check FILE`: exit code, stdout, stderr lines.
fn config_check(file: &Path) -> (i32, String, Vec<String>) {
    let out = run_bounded(
        Command::new(peerwarden_bin())
            .args(["config", "check"])
            .arg(file),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr.lines().map(str::to_owned).collect(),
    )
}

/// A network namespace holding `lo` and a veth pair `d0`/`d1` of its own, removed on drop.
/// Nothing is sent: the check only looks the interfaces up.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("pwcc-{tag}-{}", std::process::id());
        // A namespace left by a killed run of this test.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("running ip");
            assert!(status.success(), "ip {}", args.join(" "));
        };
        ok(&["netns", "add", &name]);
        // The guard first: removed also when the veth cannot be made.
        let ns = Netns(name);
        ok(&[
            "-n", &ns.0, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_good_config_is_ok_in_one_line() {
    require_root();
    let ns = Netns::new("good");
    let tmp = TempDir::new("cc-good");
    let file = tmp.0.join("config.yaml");
    let policy = isp_policy();
    std::fs::write(
        &file,
        format!(
            "interfaces: {{ downlink: lo, uplink: d0 }}\nnetns: {}\npolicy: {policy}\n",
            ns.0
        ),
    )
    .expect("config");
    let (code, stdout, stderr) = config_check(&file);
    assert_eq!(code, 0, "{stdout}{stderr:#?}");
    assert_eq!(
        stdout,
        format!(
            "{}: ok (policy {policy}: 6 subscribers, interfaces lo, d0 in {})\n",
            file.display(),
            ns.0
        )
    );
    assert!(stderr.is_empty(), "{stderr:#?}");
}

#[test]
fn every_problem_of_the_file_is_reported_with_its_place() {
    let tmp = TempDir::new("cc-errors");
    let file = tmp.0.join("config.yaml");
    std::fs::write(
        &file,
        "interfaces: { downlink: lo, uplink: nosuch0 }\n\
         bogus: 1\n\
         flow_table_size: 0\n\
         history_seconds: 5\n\
         ipfix:\n  collector: nowhere\n  idle_timeout: soon\n",
    )
    .expect("config");
    let f = file.display().to_string();
    let (code, stdout, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stdout}{stderr:#?}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.len(), 6, "{stderr:#?}");
    let starts = [
        format!("{f}:1:37: interfaces.uplink: uplink interface \"nosuch0\" does not exist"),
        format!("{f}:2:1: unknown key `bogus` (keys here: "),
        format!("{f}:3:18: flow_table_size: 0 is out of range (1 to 67108864)"),
        format!("{f}:4:18: history_seconds: 5 is out of range (60 to 604800)"),
        format!("{f}:6:14: ipfix.collector: "),
        format!("{f}:7:17: ipfix.idle_timeout: \"soon\" is not a duration"),
    ];
    for (line, start) in stderr.iter().zip(&starts) {
        assert!(
            line.starts_with(start.as_str()),
            "{line}\n  expected: {start}..."
        );
    }
    // The daemon refuses the same file, with the first of them in file order of its checks.
    let out = run_bounded(
        Command::new(peerwarden_bin())
            .args(["run", "--config"])
            .arg(&file),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

#[test]
fn a_missing_or_bad_policy_is_reported_at_its_own_places() {
    let tmp = TempDir::new("cc-policy");
    let file = tmp.0.join("config.yaml");
    let missing = tmp.0.join("no-such-policy.yaml");
    std::fs::write(
        &file,
        format!(
            "interfaces: {{ downlink: lo, uplink: lo2 }}\npolicy: {}\n",
            missing.display()
        ),
    )
    .expect("config");
    let (code, _, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.starts_with(&format!(
            "{}:2:9: policy: cannot read {}: ",
            file.display(),
            missing.display()
        ))),
        "{stderr:#?}"
    );

    let bad = tmp.0.join("bad-policy.yaml");
    std::fs::write(
        &bad,
        "plans:\n  home: { rate: { down: fast, up: 1mbit } }\nsubscribers: []\nbogus: 1\n",
    )
    .expect("policy");
    std::fs::write(
        &file,
        format!(
            "interfaces: {{ downlink: lo, uplink: lo2 }}\npolicy: {}\n",
            bad.display()
        ),
    )
    .expect("config");
    let (code, _, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stderr:#?}");
    // The policy's errors are `policy check`'s, at the policy's own lines.
    let policy_check = run_bounded(
        Command::new(peerwarden_bin())
            .args(["policy", "check"])
            .arg(&bad),
        Duration::from_secs(30),
    );
    assert_eq!(policy_check.status.code(), Some(1));
    let expected: Vec<String> = String::from_utf8_lossy(&policy_check.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!expected.is_empty());
    assert!(
        expected
            .iter()
            .all(|l| l.starts_with(&format!("{}:", bad.display()))),
        "{expected:#?}"
    );
    for l in &expected {
        assert!(stderr.contains(l), "{l} missing from {stderr:#?}");
    }
    // lo2 does not exist: reported too, at its place in the config.
    assert!(
        stderr.iter().any(|l| l.starts_with(&format!(
            "{}:1:37: interfaces.uplink: uplink interface \"lo2\" does not exist",
            file.display()
        ))),
        "{stderr:#?}"
    );
}

/// The service file (issue 12): its problems at its own places, its services counted when
/// it is valid. Observe mode on `lo`, so no root is needed.
#[test]
fn a_service_file_is_checked_at_its_own_places() {
    let tmp = TempDir::new("cc-services");
    let file = tmp.0.join("config.yaml");
    let services = tmp.0.join("services.yaml");
    std::fs::write(
        &file,
        format!(
            "mode: observe\ninterfaces: {{ mirror: lo }}\nsubscriber_networks: [10.0.0.0/8]\nservices: {}\n",
            services.display()
        ),
    )
    .expect("config");
    std::fs::write(
        &services,
        "services:\n  - name: exampletv\n    domains: [example-tv.net, akamaihd.net]\n  - name: Bad\n    domains: [ok.example]\n",
    )
    .expect("services");
    let (code, _, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stderr:#?}");
    let at = |place: &str| format!("{}:{place}: ", services.display());
    assert_eq!(stderr.len(), 2, "{stderr:#?}");
    assert!(
        stderr[0].starts_with(&(at("3:31") + "`akamaihd.net` is shared")),
        "{stderr:#?}"
    );
    assert!(
        stderr[1].starts_with(&(at("4:11") + "service name `Bad`")),
        "{stderr:#?}"
    );

    std::fs::write(
        &services,
        "services:\n  - name: exampletv\n    domains: [example-tv.net]\n  - name: netflix\n    domains: []\n",
    )
    .expect("services");
    let (code, stdout, stderr) = config_check(&file);
    assert_eq!(code, 0, "{stdout}{stderr:#?}");
    assert!(
        stdout.contains(&format!("services {}: 2 services", services.display())),
        "{stdout}"
    );
}

#[test]
fn a_missing_namespace_is_an_error_of_its_own() {
    require_root();
    let tmp = TempDir::new("cc-netns");
    let file = tmp.0.join("config.yaml");
    std::fs::write(
        &file,
        "interfaces: { downlink: lo, uplink: d0 }\nnetns: pwcc-no-such-namespace\n",
    )
    .expect("config");
    let (code, _, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stderr:#?}");
    assert_eq!(stderr.len(), 1, "{stderr:#?}");
    assert!(
        stderr[0].starts_with(&format!(
            "{}:2:8: netns: network namespace \"pwcc-no-such-namespace\" does not exist",
            file.display()
        )),
        "{stderr:#?}"
    );
    // A missing interface in an existing namespace names the namespace.
    let ns = Netns::new("missing");
    std::fs::write(
        &file,
        format!(
            "interfaces: {{ downlink: lo, uplink: d9 }}\nnetns: {}\n",
            ns.0
        ),
    )
    .expect("config");
    let (code, _, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stderr:#?}");
    assert_eq!(
        stderr,
        [format!(
            "{}:1:37: interfaces.uplink: uplink interface \"d9\" does not exist in network namespace {:?} (see `ip link`)",
            file.display(),
            ns.0
        )]
    );
}

#[test]
fn a_certificate_and_a_key_that_do_not_match_are_refused() {
    require_root();
    let ns = Netns::new("tls");
    let tmp = TempDir::new("cc-tls");
    let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let (cert, key, wrong) = (
        tmp.0.join("cert.pem"),
        tmp.0.join("key.pem"),
        tmp.0.join("other-key.pem"),
    );
    std::fs::write(&cert, one.cert.pem()).expect("cert");
    std::fs::write(&key, one.signing_key.serialize_pem()).expect("key");
    std::fs::write(&wrong, other.signing_key.serialize_pem()).expect("key");
    let file = tmp.0.join("config.yaml");
    let write = |key: &Path| {
        std::fs::write(
            &file,
            format!(
                "interfaces: {{ downlink: lo, uplink: d0 }}\nnetns: {}\napi:\n  tls: {{ cert: {}, key: {} }}\n",
                ns.0,
                cert.display(),
                key.display()
            ),
        )
        .expect("config")
    };
    write(&key);
    let (code, stdout, stderr) = config_check(&file);
    assert_eq!(code, 0, "{stderr:#?}");
    assert!(stdout.ends_with(", TLS)\n"), "{stdout}");
    write(&wrong);
    let (code, _, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stderr:#?}");
    assert_eq!(stderr.len(), 1, "{stderr:#?}");
    assert!(
        stderr[0].starts_with(&format!(
            "{}:4:8: api.tls: the certificate ",
            file.display()
        )),
        "{stderr:#?}"
    );
    // A key file that is no PEM at all, at the key's place.
    std::fs::write(&wrong, "not a key\n").expect("key");
    let (code, _, stderr) = config_check(&file);
    assert_eq!(code, 1, "{stderr:#?}");
    assert!(
        stderr[0].starts_with(&format!("{}:4:", file.display())) && stderr[0].contains("the key"),
        "{stderr:#?}"
    );
}

#[test]
fn the_example_config_checks_with_an_interface_that_exists() {
    require_root();
    let ns = Netns::new("example");
    let example = std::fs::read_to_string(workspace().join("peerwarden/examples/config.yaml"))
        .expect("peerwarden/examples/config.yaml");
    for needle in [
        "downlink: eth1",
        "uplink: eth0",
        "# netns: gw",
        "policy: /etc/peerwarden/policy.yaml",
    ] {
        assert!(example.contains(needle), "the example moved: {needle}");
    }
    let text = example
        .replace("downlink: eth1", "downlink: lo")
        .replace("uplink: eth0", "uplink: d0")
        .replace("# netns: gw", &format!("netns: {}", ns.0))
        .replace("/etc/peerwarden/policy.yaml", &isp_policy());
    let tmp = TempDir::new("cc-example");
    let file = tmp.0.join("config.yaml");
    std::fs::write(&file, text).expect("config");
    let (code, stdout, stderr) = config_check(&file);
    assert_eq!(code, 0, "{stdout}{stderr:#?}");
    assert!(stdout.contains(": ok (policy "), "{stdout}");
}

#[test]
fn usage_errors_exit_2_and_an_unreadable_file_1() {
    let out = run_bounded(
        Command::new(peerwarden_bin()).args(["config", "check"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    let tmp = TempDir::new("cc-usage");
    let (code, _, stderr) = config_check(&tmp.0.join("absent.yaml"));
    assert_eq!(code, 1);
    assert_eq!(stderr.len(), 1, "{stderr:#?}");
    assert!(
        stderr[0].contains("cannot read the configuration"),
        "{stderr:#?}"
    );
}

#[test]
fn without_root_a_namespace_is_reported_as_needing_root() {
    require_root();
    let ns = Netns::new("noroot");
    let tmp = TempDir::new("cc-noroot");
    let file = tmp.0.join("config.yaml");
    std::fs::write(
        &file,
        format!(
            "interfaces: {{ downlink: lo, uplink: d0 }}\nnetns: {}\n",
            ns.0
        ),
    )
    .expect("config");
    // As `nobody`: entering a namespace needs CAP_SYS_ADMIN.
    let out = run_bounded(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(peerwarden_bin())
            .args(["config", "check"])
            .arg(&file),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:2:8: netns: the interfaces are in network namespace {:?}; checking them needs root (run config check as root)",
            file.display(),
            ns.0
        )
    );
}
