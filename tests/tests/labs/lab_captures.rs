//! Real clients, ground truth by construction, scored live (issue 3).
//!
//! Runs every capture scenario of `lab/capture/run.sh` (libtorrent with forced encryption,
//! over uTP only, and found through the DHT only; HLS and DASH played by ffmpeg from nginx;
//! RTMP published and played through nginx-rtmp; DNS, HTTP, TLS and iperf3 in the
//! background of each), each in namespaces it makes and removes itself, then classifies
//! each fresh capture with the library and scores it against the ground truth the script
//! wrote, with the thresholds `classifier/tests/lab_score.rs` applies to the committed
//! fixtures, over all the scenarios' flows together as the corpus is scored: p2p recall at
//! least 0.99, video recall at least 0.95, false positives at most 0.1 %, encrypted
//! BitTorrent at least 95 % p2p; and in each capture, no flow its scenario did not plan.
//!
//! Known weakness this can trip over: the classifier leaves about 2 % of MSE connections
//! unknown at random (`bittorrent::structured_start` rejects a Diffie-Hellman key with a
//! 0x04 at offset 0 or 2, or four alphanumeric first bytes; see `REVIEWED_MISSES` in
//! `lab_score.rs`). With 25 or so encrypted flows among about 165 p2p flows, two such
//! misses in one run (about one run in eight) put p2p recall under 0.99.
//!
//! It also checks that `lab/capture/trim.py`, which cuts captures down to the committed
//! fixtures, changes no flow's verdict.
//!
//! Bounded: two scenarios at a time (own namespace prefixes `pwl0`/`pwl1`), each stopped
//! with SIGTERM (its EXIT trap removes its namespaces) after 60 s and killed 10 s later;
//! about 60 s in all on the lab machine, within the two minutes the issue allows.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use peerwarden_classifier::{EngineConfig, classify_capture_partial};
use peerwarden_tests::{
    lab::{TempDir, require_root},
    score::{self, LabScore},
};

/// The scenarios, longest first so the two workers finish close together.
const SCENARIOS: [&str; 7] = [
    "bt-encrypted",
    "bt-utp",
    "bt-dht",
    "rtmp",
    "hls",
    "dash",
    "background",
];

const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Removes a scenario's namespaces if its script could not (killed outright).
struct NamespaceGuard(String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        for ns in [format!("{}-sub", self.0), format!("{}-net", self.0)] {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}-sub", self.0));
    }
}

/// Runs one scenario into `out`; its stderr (the script's log) on success, a message on
/// failure.
fn run_scenario(scenario: &str, prefix: &str, out: &Path) -> Result<String, String> {
    let _guard = NamespaceGuard(prefix.to_string());
    let log = out.join(format!("{scenario}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new("bash")
        .arg(repo().join("lab/capture/run.sh"))
        .arg(scenario)
        .arg(out)
        .env("PWC_PREFIX", prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("spawning run.sh: {e}"))?;
    let started = Instant::now();
    let mut termed = None;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        match termed {
            None if started.elapsed() > SCENARIO_TIMEOUT => {
                // SIGTERM first: the script's trap stops its processes and namespaces.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                termed = Some(Instant::now());
            }
            Some(t) if t.elapsed() > Duration::from_secs(10) => {
                let _ = child.kill();
                let _ = child.wait();
                break child.wait().map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if termed.is_some() {
        return Err(format!(
            "{scenario}: did not finish within {SCENARIO_TIMEOUT:?}:\n{text}"
        ));
    }
    if !status.success() {
        return Err(format!("{scenario}: run.sh failed ({status}):\n{text}"));
    }
    Ok(text)
}

/// The verdict of every flow, by 5-tuple.
fn verdicts(pcap: &Path) -> BTreeMap<String, String> {
    let out = classify_capture_partial(pcap, EngineConfig::default(), &[]);
    assert!(out.error.is_none(), "{}: {:?}", pcap.display(), out.error);
    out.flows
        .iter()
        .map(|f| {
            (
                format!("{} {} -> {}", f.key.proto, f.key.src, f.key.dst),
                f.verdict.to_string(),
            )
        })
        .collect()
}

/// Trims `pcap` as the fixtures are trimmed and lists flows whose verdict changed.
fn trimming_changes(pcap: &Path) -> Result<Vec<String>, String> {
    let trimmed = pcap.with_extension("trimmed.pcap");
    let out = Command::new("/usr/bin/python3")
        .arg(repo().join("lab/capture/trim.py"))
        .arg(pcap)
        .arg(&trimmed)
        .output()
        .map_err(|e| format!("trim.py: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "trim.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (whole, cut) = (verdicts(pcap), verdicts(&trimmed));
    Ok(whole
        .iter()
        .filter(|(k, v)| cut.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} whole, {:?} trimmed", cut.get(k)))
        .collect())
}

struct Outcome {
    scenario: &'static str,
    seconds: f64,
    result: Result<(LabScore, Vec<String>), String>,
}

#[test]
fn real_client_captures_meet_the_corpus_thresholds() {
    require_root();
    let started = Instant::now();
    let dir = TempDir::new("lab-captures");
    let queue = Mutex::new(SCENARIOS.iter());
    let outcomes = Mutex::new(Vec::new());
    thread::scope(|s| {
        for worker in 0..2 {
            let (queue, outcomes, dir) = (&queue, &outcomes, &dir.0);
            s.spawn(move || {
                let prefix = format!("pwl{worker}");
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(&scenario) = next else { break };
                    let t = Instant::now();
                    let result = run_scenario(scenario, &prefix, dir).and_then(|_| {
                        let pcap = dir.join(format!("{scenario}.pcap"));
                        let score = score::score_capture(&pcap)?;
                        Ok((score, trimming_changes(&pcap)?))
                    });
                    outcomes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Outcome {
                            scenario,
                            seconds: t.elapsed().as_secs_f64(),
                            result,
                        });
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    outcomes.sort_by_key(|o| SCENARIOS.iter().position(|s| *s == o.scenario));
    let mut problems = Vec::new();
    let mut total = LabScore::default();
    for o in &outcomes {
        match &o.result {
            Ok((score, changes)) => {
                println!("{:<13} {:>5.1} s  {}", o.scenario, o.seconds, score.line());
                for w in &score.wrong {
                    println!("    wrong: {w}");
                }
                if !score.unexplained.is_empty() {
                    problems.push(format!(
                        "{}: flows the scenario did not plan: {}",
                        o.scenario,
                        score.unexplained.join("; ")
                    ));
                }
                if !changes.is_empty() {
                    problems.push(format!(
                        "{}: trimming changed {} verdicts: {}",
                        o.scenario,
                        changes.len(),
                        changes.join("; ")
                    ));
                }
                total.merge(score);
            }
            Err(e) => problems.push(e.clone()),
        }
    }
    println!(
        "all           {:>5.1} s  {}",
        started.elapsed().as_secs_f64(),
        total.line()
    );
    for f in total.failures() {
        problems.push(format!("all scenarios: {f}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
