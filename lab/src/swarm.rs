//! The BitTorrent swarm: opentracker on the tracker address, a libtorrent seeder on the
//! seeder address, and a libtorrent leecher on alice (one session per transport, so every
//! round has both peer-wire over TCP and uTP crossing the gateway).

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use super::{
    Lab, LabError, Role, exec,
    process::{self, Output, Service},
    topology::addr,
};

/// The peer script (lab/bt_peer.py), embedded so the binary is self-contained.
const BT_PEER: &str = include_str!("../bt_peer.py");
/// Debian's interpreter: python3-libtorrent is installed for it, not for a pyenv python.
pub const PYTHON: &str = "/usr/bin/python3";

/// Writes the embedded peer script into the state dir; returns its path.
pub fn install_script(lab: &Lab) -> Result<String, LabError> {
    let path = lab.path("bt_peer.py");
    exec::write_file(&path, BT_PEER)?;
    Ok(path.to_string_lossy().into_owned())
}

/// The tracker URLs put into each torrent: HTTP and UDP, IP literals (no name lookups).
pub fn tracker_urls() -> [String; 2] {
    [
        format!(
            "http://{}:{}/announce",
            addr::TRACKER_V4,
            addr::TRACKER_PORT
        ),
        format!("udp://{}:{}/announce", addr::TRACKER_V4, addr::TRACKER_PORT),
    ]
}

/// One round's torrent: a fresh random file, so every round is a new info-hash.
pub struct Torrent {
    /// The round's directory (`<state>/swarm/<n>`).
    pub dir: PathBuf,
    /// The `.torrent` file.
    pub torrent: PathBuf,
    /// The seeded file.
    pub payload: PathBuf,
    /// Where the leecher's sessions save it, one subdirectory per transport.
    pub leech_dir: PathBuf,
    /// Hex info-hash (the tracker's whitelist entry).
    pub infohash: String,
    /// Payload size.
    pub bytes: u64,
}

/// Makes round `n`'s file and torrent (`bt_peer.py make`, run inside the internet namespace:
/// it touches no network, but nothing lab-related runs in the root namespace).
pub fn make_torrent(lab: &Lab, script: &str, n: u32, size_mb: u32) -> Result<Torrent, LabError> {
    let dir = lab.path("swarm").join(n.to_string());
    let seed_dir = dir.join("seed");
    let leech_dir = dir.join("leech");
    exec::create_dir(&seed_dir)?;
    exec::create_dir(&leech_dir)?;
    let name = format!("peerwarden-lab-{n}.bin");
    let [http, udp] = tracker_urls();
    let out = exec::run(
        Some(&lab.netns(Role::Internet)),
        &[
            PYTHON,
            script,
            "make",
            "--out",
            &seed_dir.to_string_lossy(),
            "--name",
            &name,
            "--size-mb",
            &size_mb.to_string(),
            "--tracker",
            &http,
            "--tracker",
            &udp,
        ],
    )?;
    let made = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "made")
        .ok_or_else(|| LabError::Command {
            cmd: "bt_peer.py make".into(),
            status: "no `made` event".into(),
            stderr: out.trim().to_string(),
        })?;
    Ok(Torrent {
        torrent: PathBuf::from(made["torrent"].as_str().unwrap_or_default()),
        payload: seed_dir.join(&name),
        leech_dir,
        infohash: made["infohash"].as_str().unwrap_or_default().to_string(),
        bytes: made["bytes"].as_u64().unwrap_or_default(),
        dir,
    })
}

/// Starts opentracker (HTTP and UDP on the tracker address) for `torrent`.
///
/// Debian's opentracker is built with a whitelist: only listed info-hashes are tracked. It
/// chroots into its directory and drops to `nobody`, so the whitelist path is given inside
/// the chroot. A fresh tracker per round keeps the whitelist a plain file written before
/// start (no SIGHUP reload race with the seeder's first announce).
pub fn start_tracker(lab: &Lab, torrent: &Torrent) -> Result<Service, LabError> {
    let root = lab.path("tracker");
    exec::create_dir(&root)?;
    exec::write_file(&root.join("whitelist"), format!("{}\n", torrent.infohash))?;
    let ns = lab.netns(Role::Internet);
    let port = addr::TRACKER_PORT.to_string();
    let (mut tracker, _) = process::spawn(
        lab.state_dir(),
        "tracker",
        Some(&ns),
        &[
            "opentracker",
            "-i",
            addr::TRACKER_V4,
            "-p",
            &port,
            "-P",
            &port,
            "-d",
            &root.to_string_lossy(),
            "-u",
            "nobody",
            "-w",
            "/whitelist",
        ],
        None,
        Output::Log,
    )?;
    let bound = format!("{}:{}", addr::TRACKER_V4, addr::TRACKER_PORT);
    wait_listening(
        &mut tracker,
        &ns,
        &[("-Hltn", &bound), ("-Hlun", &bound)],
        "tracker",
    )?;
    Ok(tracker)
}

/// Waits until `ss` in `ns` shows every (flags, local address) listening socket.
pub fn wait_listening(
    service: &mut Service,
    ns: &str,
    sockets: &[(&str, &str)],
    what: &'static str,
) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = service.exited() {
            return Err(LabError::ServiceStart {
                service: what,
                reason: format!("exited ({status})"),
                tail: exec::tail(&service.log, 10),
                log: service.log.clone(),
            });
        }
        let mut all = true;
        for (flags, local) in sockets {
            let out = exec::run(Some(ns), &["ss", flags])?;
            all &= out
                .lines()
                .any(|l| l.split_whitespace().any(|f| f == *local));
        }
        if all {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::ServiceStart {
                service: what,
                reason: format!("not listening on {sockets:?} after 10 s"),
                tail: exec::tail(&service.log, 10),
                log: service.log.clone(),
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A service that prints JSON events (bt_peer.py).
pub struct Peer {
    /// The process.
    pub service: Service,
    /// Its stdout, one JSON object per line.
    pub events: mpsc::Receiver<String>,
}

/// Starts the seeder and waits until it has checked its file and is seeding.
pub fn start_seeder(lab: &Lab, script: &str, torrent: &Torrent) -> Result<Peer, LabError> {
    let seed_dir = torrent
        .payload
        .parent()
        .unwrap_or(&torrent.dir)
        .to_string_lossy()
        .into_owned();
    let port = addr::SEEDER_PORT.to_string();
    let (service, events) = process::spawn(
        lab.state_dir(),
        "seeder",
        Some(&lab.netns(Role::Internet)),
        &[
            PYTHON,
            script,
            "seed",
            "--torrent",
            &torrent.torrent.to_string_lossy(),
            "--dir",
            &seed_dir,
            "--bind",
            addr::SEEDER_V4,
            "--port",
            &port,
        ],
        None,
        Output::Lines,
    )?;
    let mut peer = Peer {
        service,
        events: events.expect("spawned with Output::Lines"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match peer.events.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if event(&line)["event"] == "seeding" => return Ok(peer),
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = peer.service.stop(Duration::from_secs(1));
                return Err(seeder_failed(&peer, format!("exited ({status:?})")));
            }
        }
        if Instant::now() >= deadline {
            return Err(seeder_failed(&peer, "not seeding after 30 s".into()));
        }
    }
}

fn seeder_failed(peer: &Peer, reason: String) -> LabError {
    LabError::ServiceStart {
        service: "seeder",
        reason,
        tail: exec::tail(&peer.service.log, 10),
        log: peer.service.log.clone(),
    }
}

/// Starts alice's leecher: a uTP-only and a TCP-only session on consecutive ports, both
/// refusing peers in 100.64.0.0/10 (each other, over loopback) so all of their swarm
/// traffic crosses the gateway.
pub fn start_leecher(lab: &Lab, script: &str, torrent: &Torrent) -> Result<Peer, LabError> {
    let port = addr::LEECHER_PORT.to_string();
    let (service, events) = process::spawn(
        lab.state_dir(),
        "leecher",
        Some(&lab.netns(Role::Alice)),
        &[
            PYTHON,
            script,
            "leech",
            "--torrent",
            &torrent.torrent.to_string_lossy(),
            "--dir",
            &torrent.leech_dir.to_string_lossy(),
            "--bind",
            addr::ALICE_V4,
            "--port",
            &port,
            "--transport",
            "utp",
            "--transport",
            "tcp",
            "--block",
            "100.64.0.0/10",
        ],
        None,
        Output::Lines,
    )?;
    Ok(Peer {
        service,
        events: events.expect("spawned with Output::Lines"),
    })
}

/// One line of bt_peer.py output as JSON (`null` when it is not JSON).
pub fn event(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or(serde_json::Value::Null)
}

/// The leecher's copies (one per transport session) of the seeded file.
pub fn leeched_copies(torrent: &Torrent) -> Vec<PathBuf> {
    let name = torrent.payload.file_name().unwrap_or_default();
    ["utp", "tcp"]
        .iter()
        .map(|t| torrent.leech_dir.join(t).join(name))
        .collect()
}

/// Whether two files have the same bytes.
pub fn same_contents(a: &Path, b: &Path) -> Result<bool, LabError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| LabError::Io {
            op: "reading",
            path: p.to_path_buf(),
            source,
        })
    };
    Ok(read(a)? == read(b)?)
}
