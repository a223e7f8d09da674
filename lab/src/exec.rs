//! Running the host's tools (`ip`, `ethtool`, `sysctl`, ...), inside a namespace or not,
//! with errors that name the command.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use super::LabError;

/// Fails with [`LabError::NotRoot`] unless the effective user is root.
pub fn require_root() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

/// `argv` as a command, run inside network namespace `ns` when given (`ip netns exec`,
/// which execs the program in place: the child's pid is the program's pid).
pub fn command(ns: Option<&str>, argv: &[&str]) -> Command {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.stdin(Stdio::null());
    cmd
}

/// A command line for messages.
pub fn describe(ns: Option<&str>, argv: &[&str]) -> String {
    let line = argv.join(" ");
    match ns {
        Some(ns) => format!("[{ns}] {line}"),
        None => line,
    }
}

/// Runs `argv` (in `ns`) to completion; its stdout on success, an error with its stderr
/// otherwise.
pub fn run(ns: Option<&str>, argv: &[&str]) -> Result<String, LabError> {
    let out = command(ns, argv)
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: describe(ns, argv),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: describe(ns, argv),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip <args>` in the root namespace (`ip -n NS ...` addresses a namespace without entering it).
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    run(None, &argv)
}

/// The network namespaces that exist (`ip netns list`, names only).
pub fn netns_list() -> Result<Vec<String>, LabError> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Pids of the processes inside `ns`.
pub fn netns_pids(ns: &str) -> Result<Vec<u32>, LabError> {
    Ok(ip(&["netns", "pids", ns])?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// `mkdir -p`, world-readable (opentracker and nginx workers read files as nobody).
pub fn create_dir(path: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|source| LabError::Io {
            op: "creating",
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `contents` to `path`.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), LabError> {
    std::fs::write(path, contents).map_err(|source| LabError::Io {
        op: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// The last `n` lines of a log file (or a note that it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            let out = lines[start..].join("\n");
            if out.is_empty() {
                "(empty)".to_string()
            } else {
                out
            }
        }
        Err(err) => format!("(cannot read: {err})"),
    }
}
