//! Lab helpers shared by the shaping tests and the shaping benchmark (issue 16 item 4):
//! the daemon's config for a lab started with `--no-daemon`, iperf3 servers on the
//! internet side, and `tc` in the gateway.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::lab::{Lab, run_bounded, wait_listening};

/// Writes `policy_yaml` and a daemon config for `lab` (its gateway's two interfaces, its
/// API port, maps sized for `max_subscribers`) into `dir`; the config's path.
pub fn write_daemon_config(
    lab: &Lab,
    dir: &Path,
    policy_yaml: &str,
    max_subscribers: u32,
) -> PathBuf {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, policy_yaml).expect("writing the policy");
    let config = dir.join("config.yaml");
    let text = format!(
        "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
         netns: {gw}\n\
         api: {{ listen: \"127.0.0.1:{port}\" }}\n\
         flow_table_size: 65536\n\
         max_subscribers: {max_subscribers}\n\
         history: {{ path: {history} }}\n\
         policy: {policy}\n",
        gw = lab.netns("gw"),
        port = lab.api_port,
        history = dir.join("history.db").display(),
        policy = policy.display(),
    );
    std::fs::write(&config, text).expect("writing the config");
    config
}

/// iperf3 servers bound to one address of a namespace, one per port; killed by pid when
/// dropped.
pub struct IperfServers(Vec<Child>);

impl IperfServers {
    /// Starts one server per port in `netns` on `bind`, and waits until each listens.
    pub fn start(netns: &str, bind: &str, ports: &[u16]) -> IperfServers {
        let mut s = IperfServers(Vec::new());
        for port in ports {
            let child = Command::new("ip")
                .args(["netns", "exec", netns, "iperf3", "-s", "-B", bind])
                .args(["-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting iperf3 -s");
            s.0.push(child);
            wait_listening(netns, *port);
        }
        s
    }
}

impl Drop for IperfServers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `tc -s <what> show dev <dev>` in `lab`'s gateway.
pub fn gateway_tc(lab: &Lab, what: &str, dev: &str) -> String {
    let gw = lab.netns("gw");
    let args = ["netns", "exec", &gw, "tc", "-s", what, "show", "dev", dev];
    let out = run_bounded(Command::new("ip").args(args), Duration::from_secs(60));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes sent by `tc -s` item `item` (e.g. `class htb 1:2` or `qdisc htb 2:`) in `stats`.
pub fn tc_sent(stats: &str, item: &str) -> Option<u64> {
    stats
        .split(&format!("{item} "))
        .nth(1)?
        .split("Sent ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
