//! Helpers for testing the Debian package as an operator installs it: building it with
//! `cargo deb`, installing it with `dpkg -i` behind a guard that purges it, reading the
//! installed systemd unit, and running the installed daemon as the unit would (its user,
//! exactly its capabilities) inside a lab namespace.

use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use peerwarden_lab::http_get;

use crate::lab::{HTTP_TIMEOUT, kill, run_bounded, terminate};

/// The package's name, its daemon user and the installed paths.
pub const PACKAGE: &str = "peerwarden";
/// The system user the postinst creates and the unit runs as.
pub const USER: &str = "peerwarden";
/// The installed binary.
pub const BIN: &str = "/usr/bin/peerwarden";
/// Where the pins of every instance live (the daemon's pin.rs).
pub const PIN_ROOT: &str = "/sys/fs/bpf/peerwarden";
/// The lock directory (the unit's `RuntimeDirectory=`).
pub const RUN_DIR: &str = "/run/peerwarden";

/// The workspace root and the target directory of the running test binary
/// (`<target>/<profile>/deps/<test>`).
fn workspace_and_target() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<test>")
        .to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    (workspace, target)
}

/// Builds the package with `cargo deb -p peerwarden` (a release build, reused when up to
/// date) into `<target>/debian/`; returns the `.deb` and how long `cargo deb` took.
pub fn build_package() -> (PathBuf, Duration) {
    let (workspace, target) = workspace_and_target();
    let out_dir = target.join("debian");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("creating <target>/debian");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Without the CARGO_* variables `cargo test` gives this process (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, ...): with them, the release build was never fresh and `cargo deb`
    // rebuilt peerwarden every time (4 minutes here instead of nothing).
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("CARGO_") && k != "CARGO_HOME")
        {
            cmd.env_remove(key);
        }
    }
    let t0 = Instant::now();
    let out = run_bounded(
        cmd.current_dir(&workspace)
            .env("CARGO_TARGET_DIR", &target)
            .args(["deb", "-p", PACKAGE, "--locked", "--output"])
            .arg(&out_dir),
        Duration::from_secs(1800),
    );
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "cargo deb -p {PACKAGE} failed ({}; is cargo-deb installed? scripts/setup.sh installs it):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .expect("reading <target>/debian")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("peerwarden_") && n.ends_with(".deb"))
        })
        .collect();
    assert_eq!(debs.len(), 1, "one peerwarden_*.deb expected: {debs:?}");
    (debs[0].clone(), took)
}

/// A field of a `.deb`'s control file (`dpkg-deb -f`).
pub fn deb_field(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .expect("dpkg-deb");
    assert!(out.status.success(), "dpkg-deb -f {}", deb.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The installed package; dropping it runs `dpkg --purge`, whatever happened before.
pub struct Installed {
    purged: bool,
}

impl Installed {
    /// Purges what an earlier run may have left, then `dpkg -i DEB`.
    pub fn install(deb: &Path) -> Installed {
        crate::lab::require_root();
        // The guard exists before dpkg runs, so a failing install is purged too.
        let guard = Installed { purged: false };
        purge();
        let out = run_bounded(
            Command::new("dpkg").arg("-i").arg(deb),
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            "dpkg -i {} failed:\n{}\n{}",
            deb.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }

    /// `dpkg --purge peerwarden` now; panics unless it succeeds.
    pub fn purge(mut self) {
        self.purged = true;
        let out = purge();
        assert!(
            out.status.success(),
            "dpkg --purge {PACKAGE}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn purge() -> std::process::Output {
    run_bounded(
        Command::new("dpkg").args(["--purge", PACKAGE]),
        Duration::from_secs(120),
    )
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.purged {
            let out = purge();
            if !out.status.success() {
                eprintln!(
                    "dpkg --purge {PACKAGE}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// The values of `key=` in a unit file, each line's words in order (`key=` lines add up,
/// as in systemd; comments and other sections' keys are skipped).
pub fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// A user's uid and gid (`getent passwd`), or `None` if there is no such user.
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .expect("getent");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// Puts back the owner and mode `path` had when this guard was made (the test prepares
/// the shared pin directory as the unit's `ExecStartPre=` does; other tests on the machine
/// pin there as root).
pub struct RestoreOwner {
    path: PathBuf,
    uid: u32,
    gid: u32,
    mode: u32,
}

impl RestoreOwner {
    /// Remembers `path`'s owner and mode (creating it as root, 0755, if missing).
    pub fn new(path: &Path) -> RestoreOwner {
        std::fs::create_dir_all(path).expect("creating the directory");
        let m = std::fs::metadata(path).expect("stat");
        RestoreOwner {
            path: path.to_path_buf(),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
        }
    }
}

impl Drop for RestoreOwner {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::os::unix::fs::chown(&self.path, Some(self.uid), Some(self.gid));
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(self.mode));
    }
}

/// `GET path` on `port` of 127.0.0.1 inside network namespace `ns` (the installed daemon
/// binds its API where it runs): a thread enters the namespace and connects from there.
pub fn http_get_in(ns: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let ns_path = Path::new("/run/netns").join(ns);
    let path = path.to_string();
    thread::spawn(move || {
        let ns = File::open(&ns_path)?;
        // SAFETY: setns on a namespace fd this thread owns; it moves only this thread,
        // which ends after the request.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        http_get(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            &path,
            HTTP_TIMEOUT,
        )
    })
    .join()
    .expect("the request thread")
}

/// `GET path` as JSON; panics unless it answers 200.
pub fn api_in(ns: &str, port: u16, path: &str) -> serde_json::Value {
    let (code, body) =
        http_get_in(ns, port, path).unwrap_or_else(|e| panic!("GET {path} in {ns}: {e}"));
    assert_eq!(code, 200, "GET {path} in {ns}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The command that runs the installed daemon as the unit does, inside namespace `ns`:
///
/// - `nsenter --net`, not `ip netns exec`: the latter remounts /sys for the namespace,
///   which hides bpffs (/sys/fs/bpf) and so the pins;
/// - `unshare --mount` with a tmpfs on /run/peerwarden owned by the user: the unit's
///   `RuntimeDirectory=` (the instance lock), without touching the machine's
///   /run/peerwarden where other tests' root daemons keep theirs;
/// - `setpriv`: the user, no new privileges, and `caps` (`+bpf,+net_admin,...`) as the
///   inheritable, ambient and bounding sets (the unit's `AmbientCapabilities=` and
///   `CapabilityBoundingSet=`).
pub fn daemon_command(ns: &str, caps: &str, config: &str) -> Command {
    let (uid, gid) = user_ids(USER).expect("the package's user");
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o mode=0700,uid={uid},gid={gid} peerwarden-run {RUN_DIR} && exec \"$@\""
        ))
        .arg("sh")
        .args([
            "setpriv",
            "--reuid",
            USER,
            "--regid",
            USER,
            "--init-groups",
            "--no-new-privs",
        ])
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .args([BIN, "run", "--config", config]);
    cmd
}

/// The installed daemon started with [`daemon_command`]; stopped with SIGTERM (then
/// killed) on drop.
pub struct InstalledDaemon {
    child: Option<Child>,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl InstalledDaemon {
    /// Starts it and waits until `/healthz` on `port` in `ns` answers 200 (panics with the
    /// log if it exits first or takes longer than [`crate::lab::DAEMON_START`]).
    pub fn start(ns: &str, caps: &str, config: &str, port: u16, log: &Path) -> InstalledDaemon {
        let out = File::create(log).expect("creating the daemon log");
        let child = daemon_command(ns, caps, config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("starting the installed daemon");
        let mut d = InstalledDaemon {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + crate::lab::DAEMON_START;
        loop {
            if let Some(status) = d.child_mut().try_wait().expect("waiting") {
                panic!("the installed daemon exited ({status}):\n{}", d.log_text());
            }
            if let Ok((200, _)) = http_get_in(ns, port, "/healthz") {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "the installed daemon was not healthy in time:\n{}",
                d.log_text()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon running")
    }

    /// Its pid (nsenter, unshare, sh and setpriv each exec the next: the daemon's own).
    pub fn pid(&mut self) -> u32 {
        self.child_mut().id()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        terminate(&mut child, timeout, || self.log_text())
    }
}

impl Drop for InstalledDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if thread::panicking() {
                eprintln!("the installed daemon's log:\n{}", self.log_text());
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

/// The effective capability set and the real uid of process `pid` (`/proc/PID/status`).
pub fn proc_caps_and_uid(pid: u32) -> (u64, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .to_string()
    };
    let caps = u64::from_str_radix(&field("CapEff:"), 16).expect("CapEff in hex");
    let uid = field("Uid:")
        .split_whitespace()
        .next()
        .and_then(|u| u.parse().ok())
        .expect("a uid");
    (caps, uid)
}
