//! Background processes of the lab: started with a pid file, stopped by that pid only.
//!
//! A pid file holds `<pid> <start time>` (field 22 of `/proc/<pid>/stat`, clock ticks since
//! boot), so `lab down` after a crash or a reboot never signals an unrelated process that
//! happens to reuse the pid.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use super::{LabError, exec};

/// A process the lab started, with its pid file and log.
pub struct Service {
    /// The child.
    pub child: Child,
    /// `<state>/<name>.pid`.
    pub pid_file: PathBuf,
    /// `<state>/<name>.log`: stderr, and stdout unless piped.
    pub log: PathBuf,
    detached: bool,
}

/// How a service's stdout is handled.
pub enum Output {
    /// Into the log, with stderr.
    Log,
    /// Each line to the log and to the returned channel (JSON events of bt_peer.py).
    Lines,
}

/// Starts `argv` in `ns` (or the root namespace) in its own process group, so a Ctrl-C in
/// the terminal reaches only the lab command, which then stops its children in order.
pub fn spawn(
    state_dir: &Path,
    name: &'static str,
    ns: Option<&str>,
    argv: &[&str],
    cwd: Option<&Path>,
    output: Output,
) -> Result<(Service, Option<mpsc::Receiver<String>>), LabError> {
    let log = state_dir.join(format!("{name}.log"));
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| LabError::Io {
            op: "opening",
            path: log.clone(),
            source,
        })?;
    let err_file = log_file.try_clone().map_err(|source| LabError::Io {
        op: "opening",
        path: log.clone(),
        source,
    })?;
    let mut cmd = exec::command(ns, argv);
    cmd.stderr(Stdio::from(err_file)).process_group(0);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let lines_log = match output {
        Output::Log => {
            cmd.stdout(Stdio::from(log_file));
            None
        }
        Output::Lines => {
            cmd.stdout(Stdio::piped());
            Some(log_file)
        }
    };
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        cmd: exec::describe(ns, argv),
        source,
    })?;
    let pid_file = state_dir.join(format!("{name}.pid"));
    write_pid_file(&pid_file, child.id())?;
    let lines = match (lines_log, child.stdout.take()) {
        (Some(log_file), Some(stdout)) => Some(follow(stdout, log_file)),
        _ => None,
    };
    Ok((
        Service {
            child,
            pid_file,
            log,
            detached: false,
        },
        lines,
    ))
}

/// Copies each stdout line into the log and onto a channel, until the pipe closes.
fn follow(stdout: ChildStdout, mut log: File) -> mpsc::Receiver<String> {
    use std::io::Write as _;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            // The receiver may be gone (the service outlived interest in it): keep draining
            // the pipe anyway so the child never blocks on a full pipe.
            let _ = tx.send(line);
        }
    });
    rx
}

impl Service {
    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps the child and removes its pid file.
    /// Idempotent.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if self.detached {
            return None;
        }
        let status = match self.exited() {
            Some(status) => Some(status),
            None => {
                signal(self.pid(), libc::SIGTERM);
                let deadline = Instant::now() + grace;
                loop {
                    if let Some(status) = self.exited() {
                        break Some(status);
                    }
                    if Instant::now() >= deadline {
                        signal(self.pid(), libc::SIGKILL);
                        break self.child.wait().ok();
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let _ = std::fs::remove_file(&self.pid_file);
        status
    }

    /// Lets the process outlive this handle (the daemon after `lab up`): no stop on drop.
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Service {
    /// Error paths and panics must not leave lab processes behind.
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; the pid is one this lab started.
    unsafe { libc::kill(pid, sig) };
}

/// Field 22 of /proc/<pid>/stat (start time), and whether the process is a zombie.
fn proc_start(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is rest[19].
    let zombie = fields.first().is_some_and(|s| *s == "Z");
    Some((fields.get(19)?.parse().ok()?, zombie))
}

fn write_pid_file(path: &Path, pid: u32) -> Result<(), LabError> {
    let start = proc_start(pid).map_or(0, |(s, _)| s);
    exec::write_file(path, format!("{pid} {start}\n"))
}

/// Reads a pid file; `None` when the process it names is gone or is not the one started.
fn live_pid(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    match proc_start(pid) {
        Some((s, false)) if s == start => Some(pid),
        _ => None,
    }
}

/// Stops `pid` (SIGTERM, SIGKILL after `grace`). Returns whether it was running. For
/// processes that are not our children: it is gone when /proc says so or shows a zombie.
pub fn stop_pid(pid: u32, grace: Duration) -> bool {
    let gone = |pid| proc_start(pid).is_none_or(|(_, zombie)| zombie);
    if gone(pid) {
        return false;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while !gone(pid) {
        if Instant::now() >= deadline {
            signal(pid, libc::SIGKILL);
            let hard = Instant::now() + Duration::from_secs(2);
            while !gone(pid) && Instant::now() < hard {
                thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Stops the processes named by the `<name>.pid` files in `dir` whose name passes `which`,
/// and removes those pid files. Returns (name, pid) of those that were running.
pub fn stop_from_pid_files(
    dir: &Path,
    which: impl Fn(&str) -> bool,
) -> Result<Vec<(String, u32)>, LabError> {
    let mut stopped = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(stopped),
        Err(source) => {
            return Err(LabError::Io {
                op: "reading",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pid"))
            .map(str::to_string)
        else {
            continue;
        };
        if !which(&name) {
            continue;
        }
        if let Some(pid) = live_pid(&path) {
            // The daemon detaches its programs on SIGTERM; give it time to do so.
            let grace = if name == "daemon" { 10 } else { 3 };
            if stop_pid(pid, Duration::from_secs(grace)) {
                stopped.push((name, pid));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_start_time() {
        let (start, zombie) = proc_start(std::process::id()).expect("own /proc entry");
        assert!(start > 0);
        assert!(!zombie);
    }

    #[test]
    fn pid_file_of_a_reused_pid_is_ignored() {
        let dir = std::env::temp_dir().join(format!("pw-lab-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("x.pid");
        let me = std::process::id();
        write_pid_file(&file, me).expect("write");
        assert_eq!(live_pid(&file), Some(me));
        // Same pid, other start time: someone else's process now.
        std::fs::write(&file, format!("{me} 1\n")).expect("write");
        assert_eq!(live_pid(&file), None);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
