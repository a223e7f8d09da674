//! The swarm view on real packets through the gateway (issue 15): peer-wire handshakes of
//! alice and bob with a remote peer, which the kernel's fingerprints decide at once (the
//! deep classifier never sees them), list their swarm in `/api/v1/swarms` with both
//! subscribers when `swarms.enabled`, and its transit bytes each way agree with tcpdump's
//! frames; with the view off the API serves no swarm. A plain TCP exchange of
//! the two handshakes (python3 in the namespaces), not a BitTorrent client: it is the
//! kernel's sampling of the deciding packet that is checked here.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs swarm_view_lab::`.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use peerwarden_lab::http_get;
use peerwarden_tests::{
    captures::{FlowFrame, IngressCaptures},
    lab::{HTTP_TIMEOUT, Lab, TempDir, kill, run_bounded, spawn_in, until_still, wait_listening},
};

const PREFIX: &str = "swv";
const API_PORT: u16 = 9703;
const PEER: &str = "198.51.100.7";
const PEER_PORT: u16 = 16881;
/// Bytes alice downloads from the peer after the handshakes.
const DOWNLOAD: usize = 4 << 20;
/// Every frame between alice and the peer.
const FILTER: &str =
    "tcp and (host 100.64.1.10 or host 100.64.1.20) and host 198.51.100.7 and port 16881";

/// The peer's side: accepts one connection, answers the handshake with its own, closes.
const PEER_SCRIPT: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
c, _ = s.accept(); c.settimeout(10)
got = b""
while len(got) < 68:
    b = c.recv(68 - len(got))
    if not b: break
    got += b
c.sendall(b"\x13BitTorrent protocol" + bytes(8) + got[28:48] + b"-qB4650-zyxwvutsrqpo")
c.sendall(bytes(int(sys.argv[3])))
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
"#;

/// Alice's side: sends a handshake for swarm `argv[3]` (hex), reads the answer, closes.
const CLIENT_SCRIPT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(b"\x13BitTorrent protocol" + bytes(8) + bytes.fromhex(sys.argv[3]) + b"-LT2090-abcdefghijkl")
got = b""
while len(got) < 68:
    b = c.recv(68 - len(got))
    if not b: break
    got += b
assert got[28:48] == bytes.fromhex(sys.argv[3]), got
n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
assert n == int(sys.argv[4]), n
c.close()
"#;

/// One handshake exchange between subscriber `who` (`alice`, `bob`) and the peer for swarm `hash` (hex), then
/// [`DOWNLOAD`] bytes from the peer.
fn handshake(lab: &Lab, tmp: &TempDir, who: &str, hash: &str) {
    let port = PEER_PORT.to_string();
    let size = DOWNLOAD.to_string();
    let mut peer = spawn_in(
        &lab.netns("net"),
        &["python3", "-c", PEER_SCRIPT, PEER, &port, &size],
        &tmp.0.join(format!("peer-{who}-{hash}.log")),
    );
    wait_listening(&lab.netns("net"), PEER_PORT);
    let out = run_bounded(
        Command::new("ip").args([
            "netns",
            "exec",
            &lab.netns(who),
            "python3",
            "-c",
            CLIENT_SCRIPT,
            PEER,
            &port,
            hash,
            &size,
        ]),
        Duration::from_secs(20),
    );
    if peer.try_wait().ok().flatten().is_none() {
        thread::sleep(Duration::from_millis(500));
        if peer.try_wait().ok().flatten().is_none() {
            kill(peer.id(), "KILL");
        }
    }
    let _ = peer.wait();
    assert!(
        out.status.success(),
        "the handshake exchange failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_handshake_the_kernel_decides_lists_its_swarm_and_nothing_with_the_view_off() {
    let tmp = TempDir::new("swarm-view-lab");
    let lab = Lab::up(PREFIX, API_PORT, &["--no-daemon"]);

    // The view on: the swarm is listed with alice as its one subscriber.
    let d = lab.daemon_with_store(&tmp.0, 1, "swarms: { enabled: true }\n");
    let on = "5a".repeat(20);
    let captures = IngressCaptures::start(&lab, FILTER, &tmp.0);
    handshake(&lab, &tmp, "alice", &on);
    handshake(&lab, &tmp, "bob", &on);
    let (up, down) = captures.stop();
    let truth = |frames: &[FlowFrame]| -> u64 { frames.iter().map(|f| u64::from(f.len)).sum() };
    let (truth_up, truth_down) = (truth(&up), truth(&down));
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let list = lab.api("/api/v1/swarms");
        let found = list["swarms"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == on.as_str()).cloned());
        if found.is_some() || Instant::now() >= deadline {
            break (found, list);
        }
        thread::sleep(Duration::from_millis(250));
    };
    // The flow table is read once a second: wait for the handshakes' flows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let bt = loop {
        let flows = lab.api("/api/v1/flows?limit=1000");
        let bt: Vec<serde_json::Value> = flows["flows"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|f| f["dport"] == PEER_PORT)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if bt.len() >= 2 || Instant::now() >= deadline {
            break bt;
        }
        thread::sleep(Duration::from_millis(250));
    };
    eprintln!("swarms: {}\nthe handshakes' flows: {bt:?}", listed.1);
    let swarm = listed.0.expect("the handshake's swarm is listed");
    assert_eq!(
        swarm["subscribers"], 2,
        "alice and bob are its subscribers: {swarm}"
    );
    assert!(
        bt.len() == 2 && bt.iter().all(|f| f["label"] == "bittorrent"),
        "the kernel decided both flows as bittorrent: {bt:?}"
    );
    // Its bytes, once the flow walks (one a second) have counted them all: transit, each
    // way, as the captures count whole frames.
    let bytes = until_still(
        || {
            let list = lab.api("/api/v1/swarms");
            let s = list["swarms"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["id"] == on.as_str()).cloned())
                .unwrap_or_default();
            let b = |k: &str| s["bytes"][k].as_u64().unwrap_or(0);
            (b("transit_up"), b("transit_down"), b("local"))
        },
        Duration::from_secs(3),
        Duration::from_secs(20),
    );
    eprintln!(
        "swarm bytes (transit up, down, local) {bytes:?}; captured up {truth_up}, down {truth_down}"
    );
    let near = |got: u64, truth: u64| (got as f64 - truth as f64).abs() <= truth as f64 * 0.01;
    assert!(
        truth_down > DOWNLOAD as u64 && near(bytes.1, truth_down) && near(bytes.0, truth_up),
        "the swarm's transit bytes {bytes:?} vs captured up {truth_up}, down {truth_down}"
    );
    assert_eq!(bytes.2, 0, "no local bytes: the peer is remote");
    d.stop_cleanly("the view on");

    // The view off: the API serves no swarm, whatever crossed.
    let d = lab.daemon_with_store(&tmp.0, 2, "swarms: { enabled: false }\n");
    handshake(&lab, &tmp, "alice", &"a5".repeat(20));
    thread::sleep(Duration::from_secs(2));
    let (code, body) =
        http_get(lab.api_addr(), "/api/v1/swarms", HTTP_TIMEOUT).expect("GET /api/v1/swarms");
    assert_eq!(code, 404, "no swarm view when it is off: {body}");
    d.stop_cleanly("the view off");
}
