//! Helpers for the namespace-lab tests: the `peerwarden` binary, a lab behind a `Drop`
//! guard, the daemon's API, packet captures as independent ground truth, and what is
//! attached in a namespace.
//!
//! Every lab test runs as root and makes its own lab (own namespace prefix, own API port),
//! which the guard removes with `peerwarden lab down`, also when the test panics.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use peerwarden_lab::http_get;

/// Panics unless the tests run as root (network namespaces, XDP, `BPF_PROG_TEST_RUN`): such
/// a test is never skipped silently. The check is the lab's own
/// ([`peerwarden_lab::require_root`]).
pub fn require_root() {
    assert!(
        peerwarden_lab::require_root().is_ok(),
        "these tests need root (network namespaces, XDP, BPF_PROG_TEST_RUN): run them as \
         root, e.g. `sudo -E cargo test -p peerwarden-tests`"
    );
}

/// How long a GET on the daemon's API may take to connect, and then to answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The `peerwarden` binary of the profile these tests were built with, built once per test
/// binary with `cargo build -p peerwarden` (a no-op when `scripts/test.sh` built it
/// already). The tests crate cannot name another package's binary (`CARGO_BIN_EXE_*` is
/// for the package's own binaries), so it is found next to the test executable:
/// `<target>/<profile>/deps/<test>` → `<target>/<profile>/peerwarden`.
pub fn peerwarden_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps/<test>");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile dir name");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args(["build", "-p", "peerwarden", "--target-dir"])
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd.output().expect("running cargo build -p peerwarden");
        assert!(
            out.status.success(),
            "cargo build -p peerwarden failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir.join("peerwarden");
        assert!(bin.is_file(), "{} missing after cargo build", bin.display());
        bin
    })
}

/// Runs the binary with `args`, bounded by `timeout` (killed after it), and returns its
/// output.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning a command");
    // Drain both pipes in threads so a chatty child never blocks.
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a command") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut r: impl std::io::Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// `peerwarden <args>`, bounded; panics with its output unless it succeeds.
pub fn peerwarden_ok(args: &[&str], timeout: Duration) -> String {
    let out = run_bounded(Command::new(peerwarden_bin()).args(args), timeout);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "peerwarden {} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Sends `signal` (e.g. `TERM`, `INT`) to `pid`.
pub fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status();
}

/// A lab made by `peerwarden lab up`; dropping it runs `peerwarden lab down`.
pub struct Lab {
    /// Namespace prefix.
    pub prefix: String,
    /// The daemon's API port.
    pub api_port: u16,
}

impl Lab {
    /// Removes leftovers of an earlier crashed run with the same prefix, then brings the
    /// lab up with `extra` arguments (`--no-daemon`, `--no-policy`, ...).
    pub fn up(prefix: &str, api_port: u16, extra: &[&str]) -> Lab {
        require_root();
        peerwarden_ok(
            &["lab", "down", "--prefix", prefix],
            Duration::from_secs(60),
        );
        // The guard exists before `lab up` runs, so a failing `up` is cleaned up too.
        let lab = Lab {
            prefix: prefix.to_string(),
            api_port,
        };
        let port = api_port.to_string();
        let mut args = vec!["lab", "up", "--prefix", prefix, "--api-port", &port];
        args.extend_from_slice(extra);
        let out = peerwarden_ok(&args, Duration::from_secs(60));
        eprint!("{out}");
        lab
    }

    /// A namespace of this lab: `alice`, `bob`, `sw`, `gw`, `net`.
    pub fn netns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// `/run/peerwarden-lab/<prefix>`.
    pub fn state_dir(&self) -> PathBuf {
        Path::new("/run/peerwarden-lab").join(&self.prefix)
    }

    /// The API's address.
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// Starts `peerwarden run` on this lab's gateway (the example lab policy, the lab's
    /// API port, then the config lines `extra`) with a history store in `dir`
    /// (`history.db`, shared by every run), its config and log in `dir` named after `run`.
    pub fn daemon_with_store(&self, dir: &Path, run: u32, extra: &str) -> Daemon {
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/lab.yaml");
        let config = dir.join(format!("run{run}.yaml"));
        std::fs::write(
            &config,
            format!(
                "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
                 netns: {netns}\n\
                 api: {{ listen: \"127.0.0.1:{port}\" }}\n\
                 flow_table_size: 65536\n\
                 policy: {policy}\n\
                 history: {{ path: {store} }}\n{extra}",
                netns = self.netns("gw"),
                port = self.api_port,
                policy = policy.display(),
                store = dir.join("history.db").display(),
            ),
        )
        .expect("writing the config");
        Daemon::start(&config, &dir.join(format!("run{run}.log")), self.api_addr())
    }

    /// `GET path` on the daemon's API, as JSON; panics unless it answers 200.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (code, body) = http_get(self.api_addr(), path, HTTP_TIMEOUT)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new(peerwarden_bin())
            .args(["lab", "down", "--prefix", &self.prefix])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "lab down {}: {}",
                self.prefix,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("lab down {}: {e}", self.prefix),
        }
    }
}

/// Waits until `GET /healthz` answers 200, or panics after `timeout`.
pub fn wait_healthy(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = http_get(addr, "/healthz", HTTP_TIMEOUT) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no 200 from http://{addr}/healthz within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `args` inside namespace `ns` (`ip netns exec`), stdout and stderr to `log`.
pub fn spawn_in(ns: &str, args: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("creating a log");
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {args:?} in {ns}: {e}"))
}

/// nginx in the foreground inside namespace `ns` with `dir/nginx.conf`, its errors to
/// `dir/nginx.out`: a [`Procs`] entry.
pub fn nginx_in(ns: &str, dir: &Path) -> (String, Child) {
    let conf = dir.join("nginx.conf");
    let args = ["nginx", "-e", "stderr", "-c", &conf.to_string_lossy()];
    ("nginx".into(), spawn_in(ns, &args, &dir.join("nginx.out")))
}

/// Bytes received and sent on interface `dev` in namespace `ns`, from the interface's own
/// counters (whole frames, Ethernet header included: what a police rule counts).
pub fn link_bytes(ns: &str, dev: &str) -> (u64, u64) {
    let out = Command::new("ip")
        .args(["-j", "-s", "-n", ns, "link", "show", "dev", dev])
        .output()
        .unwrap_or_else(|e| panic!("ip -s link in {ns}: {e}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ip -j -s -n {ns} link show dev {dev}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let s = &v[0]["stats64"];
    let get = |dir: &str| {
        s[dir]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{ns} {dev}: no {dir} bytes in {v}"))
    };
    (get("rx"), get("tx"))
}

/// Waits until something listens on TCP `port` in namespace `ns`, or panics after 10 s.
pub fn wait_listening(ns: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "ss",
                "-Htln",
                &format!("sport = :{port}"),
            ])
            .output()
            .expect("ss");
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} in {ns} after 10 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Calls `read` every 500 ms until its value has not changed for `still`; returns that
/// value, or panics after `timeout` (counters that settle once traffic is over).
pub fn until_still<T: PartialEq + std::fmt::Debug>(
    mut read: impl FnMut() -> T,
    still: Duration,
    timeout: Duration,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = read();
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(500));
        let now = read();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= still {
            return last;
        }
        assert!(Instant::now() < deadline, "never settled: {last:?}");
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<tmp>/peerwarden-<name>-<pid>`, fresh.
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("peerwarden-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// tcpdump writing a pcap inside a namespace, stopped with SIGINT (killed on drop).
pub struct Capture {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    /// The pcap file.
    pub path: PathBuf,
}

impl Capture {
    /// Captures frames of `direction` (`in`/`out`) on `iface` in `ns` matching the BPF
    /// `filter` into `path`: headers only (the lengths are what count), a large kernel
    /// buffer, and returns once tcpdump says it is listening.
    pub fn start(ns: &str, iface: &str, direction: &str, filter: &str, path: &Path) -> Capture {
        Capture::start_snaplen(ns, iface, direction, filter, path, 128)
    }

    /// [`Capture::start`] keeping `snaplen` bytes of each frame (0: whole frames, for
    /// captures the classifier reads).
    pub fn start_snaplen(
        ns: &str,
        iface: &str,
        direction: &str,
        filter: &str,
        path: &Path,
        snaplen: u32,
    ) -> Capture {
        let snaplen = snaplen.to_string();
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-n", "-i", iface, "-Q", direction,
            ])
            .args(["-B", "32768", "-s", &snaplen, "-U", "-w"])
            .arg(path)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("tcpdump on {ns}/{iface} exited")
                }
            }
            assert!(
                Instant::now() < deadline,
                "tcpdump on {ns}/{iface} not listening after 10 s"
            );
        }
        Capture {
            child: Some(child),
            stderr: rx,
            path: path.to_path_buf(),
        }
    }

    /// Stops tcpdump (SIGINT, so it flushes and prints its counts); returns the number of
    /// packets it reports as dropped by the kernel.
    pub fn stop(mut self) -> u64 {
        let mut child = self.child.take().expect("running capture");
        kill(child.id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tcpdump did not stop on SIGINT within 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        let lines: Vec<String> = self.stderr.iter().collect();
        let dropped = lines
            .iter()
            .find(|l| l.contains("dropped by kernel"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no drop count in tcpdump's output: {lines:?}"));
        eprintln!("tcpdump {}: {}", self.path.display(), lines.join(" | "));
        dropped
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What is attached in namespace `ns`: the `ip link` lines mentioning XDP, and
/// `bpftool net -j`'s XDP and TC entries.
pub fn attachments(ns: &str) -> (Vec<String>, serde_json::Value) {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show"])
        .output()
        .expect("ip link");
    assert!(
        out.status.success(),
        "ip -n {ns} link: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xdp_lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("xdp"))
        .map(str::to_string)
        .collect();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "bpftool", "net", "-j"])
        .output()
        .expect("bpftool net");
    assert!(
        out.status.success(),
        "bpftool net in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("bpftool net -j prints JSON");
    (xdp_lines, json)
}

/// Panics unless nothing (no XDP program, no TC program) is attached in `ns`.
pub fn assert_nothing_attached(ns: &str, when: &str) {
    let (xdp_lines, net) = attachments(ns);
    assert!(
        xdp_lines.is_empty(),
        "{when}: `ip -n {ns} link` still shows XDP: {xdp_lines:?}"
    );
    for entry in net.as_array().into_iter().flatten() {
        for kind in ["xdp", "tc"] {
            let attached = entry[kind].as_array().map_or(0, Vec::len);
            assert_eq!(
                attached, 0,
                "{when}: bpftool net in {ns} still lists {kind} programs: {net}"
            );
        }
    }
}

/// The number of XDP programs `bpftool net` lists in `ns`.
pub fn xdp_attached(ns: &str) -> usize {
    let (_, net) = attachments(ns);
    net.as_array()
        .into_iter()
        .flatten()
        .map(|e| e["xdp"].as_array().map_or(0, Vec::len))
        .sum()
}

/// How long a started daemon may take to answer `/healthz`. Loading the kernel programs
/// (the verifier) takes a few seconds on an idle machine and several times that while other
/// builds and labs share its two cores: 20 s was too short there (the daemon had not
/// logged a line yet). A daemon that exits fails at once, whatever this says.
pub const DAEMON_START: Duration = Duration::from_secs(120);

/// A daemon started by the test itself (`peerwarden run --config ...`), so the test owns
/// its exit status; killed on drop if still running.
pub struct Daemon {
    child: Option<Child>,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon with `config`, output to `log`, and waits until `/healthz` on
    /// `api` answers 200 (panics with the log if it exits, or does not answer within
    /// [`DAEMON_START`]).
    pub fn start(config: &Path, log: &Path, api: SocketAddr) -> Daemon {
        Daemon::start_within(config, log, api, DAEMON_START)
    }

    /// [`Daemon::start`], waiting at most `limit` for `/healthz` (a daemon installing a
    /// large policy).
    pub fn start_within(config: &Path, log: &Path, api: SocketAddr, limit: Duration) -> Daemon {
        let out = std::fs::File::create(log).expect("creating the daemon log");
        let err = out.try_clone().expect("cloning the log handle");
        let child = Command::new(peerwarden_bin())
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting the daemon");
        let mut daemon = Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = daemon.child().try_wait().expect("waiting for the daemon") {
                panic!(
                    "the daemon exited ({status}) before it was healthy:\n{}",
                    daemon.log_text()
                );
            }
            if let Ok((200, _)) = http_get(api, "/healthz", HTTP_TIMEOUT) {
                return daemon;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon was not healthy after {} s:\n{}",
                limit.as_secs(),
                daemon.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon running")
    }

    /// Its pid.
    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it outright (SIGKILL, a crash) and reaps it: its programs stay attached and
    /// pinned.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and panics, with the log, unless it exits 0 within 20 s (`what`: which
    /// run, for the message).
    pub fn stop_cleanly(self, what: &str) {
        let log = self.log.clone();
        let status = self.terminate(Duration::from_secs(20));
        assert!(
            status.success(),
            "{what}: exit {status}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the exit status.
    pub fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        terminate(&mut child, timeout, || self.log_text())
    }
}

/// Sends `child` (a daemon) SIGTERM and waits up to `timeout` for its exit status; past
/// that, kills it and panics with `log()`.
pub fn terminate(
    child: &mut std::process::Child,
    timeout: Duration,
    log: impl Fn() -> String,
) -> std::process::ExitStatus {
    kill(child.id(), "TERM");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the daemon") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon did not exit within {timeout:?} of SIGTERM:\n{}",
                log()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    /// A test that did not stop its daemon (a failed assertion) stops it with SIGTERM, so
    /// that it detaches and unpins its programs (a daemon killed outright leaves them
    /// attached and pinned on purpose), and kills it if it has not exited within 10 s.
    /// In a failing test, whether the daemon was still running and the end of its log are
    /// printed first (the log's directory usually goes with the test).
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if thread::panicking() {
                let state = match child.try_wait() {
                    Ok(Some(status)) => format!("had exited: {status}"),
                    Ok(None) => "was running".to_string(),
                    Err(e) => format!("could not be asked: {e}"),
                };
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!(
                    "the daemon (pid {}) {state}; the last lines of {}:\n{}",
                    child.id(),
                    self.log.display(),
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
            kill(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `peerwarden lab traffic --loop` running in the background, its output in `log`; dropping
/// it (or [`LoopTraffic::stop`]) sends SIGTERM, which makes it stop its own clients and
/// servers, and kills it after 30 s if it has not gone.
pub struct LoopTraffic(Option<Child>);

impl LoopTraffic {
    /// Starts `lab traffic --loop --seconds SECONDS` on `lab`.
    pub fn start(lab: &Lab, log: &Path, seconds: u32) -> LoopTraffic {
        let out = std::fs::File::create(log).expect("traffic log");
        let child = Command::new(peerwarden_bin())
            .args([
                "lab",
                "traffic",
                "--prefix",
                &lab.prefix,
                "--loop",
                "--seconds",
                &seconds.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("traffic log handle"))
            .stderr(out)
            .spawn()
            .expect("starting lab traffic");
        LoopTraffic(Some(child))
    }

    /// Stops it and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            kill(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for LoopTraffic {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Child processes stopped by PID when dropped (a failing test leaves none behind).
pub struct Procs(pub Vec<(String, Child)>);

impl Procs {
    /// Waits for every process to exit by itself within `timeout`; panics otherwise
    /// (dropping the guard then stops them).
    pub fn wait_all(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (what, child) in &mut self.0 {
            loop {
                if child.try_wait().expect("waiting").is_some() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what} still running after {timeout:?}"
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                kill(child.id(), "KILL");
                let _ = child.wait();
            }
        }
    }
}
