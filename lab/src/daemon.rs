//! The lab's daemon: its generated config, starting it in the background and waiting until
//! `/healthz` answers.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use super::{Lab, LabError, PolicyChoice, Role, UpOptions, exec, process};

/// Where `policies/examples/lab.yaml` sits relative to the source tree's root.
const LAB_POLICY: &str = "policies/examples/lab.yaml";

/// Resolves the policy for the lab and copies it into the state dir (the daemon then reads
/// a file that cannot change under it while the source tree is edited).
pub fn choose_policy(lab: &Lab, choice: &PolicyChoice) -> Result<Option<PathBuf>, LabError> {
    let source = match choice {
        PolicyChoice::None => return Ok(None),
        PolicyChoice::File(path) => Some(path.clone()),
        PolicyChoice::Auto => find_lab_policy(),
    };
    let Some(source) = source else {
        return Ok(None);
    };
    let text = std::fs::read(&source).map_err(|source_err| LabError::Io {
        op: "reading",
        path: source.clone(),
        source: source_err,
    })?;
    let dest = lab.path("policy.yaml");
    exec::write_file(&dest, text)?;
    Ok(Some(dest))
}

/// `policies/examples/lab.yaml` in the current directory or in a parent of the binary's
/// directory (`target/<profile>/peerwarden` sits two levels below the source tree).
fn find_lab_policy() -> Option<PathBuf> {
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    roots
        .into_iter()
        .map(|r| r.join(LAB_POLICY))
        .find(|p| p.is_file())
}

/// The daemon's config for this lab (the `peerwarden run --config` contract).
pub fn config_text(lab: &Lab, opts: &UpOptions, policy: Option<&Path>) -> String {
    let mut text = format!(
        "# Written by `peerwarden lab up` for lab {prefix:?}.\n\
         interfaces: {{ downlink: downlink, uplink: uplink }}\n\
         netns: {netns}\n\
         api: {{ listen: \"127.0.0.1:{port}\" }}\n\
         flow_table_size: {size}\n\
         history: {{ path: {history} }}\n",
        prefix = lab.prefix(),
        history = lab.path("history.db").display(),
        netns = lab.netns(Role::Gateway),
        port = opts.api_port,
        size = opts.flow_table_size,
    );
    if let Some(policy) = policy {
        text.push_str(&format!("policy: {}\n", policy.display()));
    }
    if let Some(n) = opts.deep_max_flows {
        text.push_str(&format!("deep_max_flows: {n}\n"));
    }
    if opts.swarms {
        text.push_str("swarms: { enabled: true }\n");
    }
    text
}

/// Writes `config.yaml` into the state dir.
pub fn write_config(lab: &Lab, opts: &UpOptions, policy: Option<&Path>) -> Result<(), LabError> {
    exec::write_file(&lab.config_path(), config_text(lab, opts, policy))
}

/// Starts `<this binary> run --config <state>/config.yaml` in the background (own process
/// group, output to `daemon.log`, `daemon.pid`) and waits for `/healthz` to answer 200.
pub fn start(lab: &Lab, opts: &UpOptions) -> Result<u32, LabError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.api_port));
    // Another daemon (another lab, a real gateway) on the port would answer our health
    // check while ours fails to bind: refuse up front.
    if let Err(source) = std::net::TcpListener::bind(addr) {
        return Err(LabError::ApiPort {
            port: opts.api_port,
            source,
        });
    }
    let exe = std::env::current_exe().map_err(|source| LabError::Io {
        op: "locating",
        path: "/proc/self/exe".into(),
        source,
    })?;
    let exe = exe.to_string_lossy().into_owned();
    let config = lab.config_path().to_string_lossy().into_owned();
    let (mut daemon, _) = process::spawn(
        lab.state_dir(),
        "daemon",
        None,
        &[&exe, "run", "--config", &config],
        None,
        process::Output::Log,
    )?;
    let pid = daemon.pid();
    let url = format!("http://{addr}/healthz");
    let deadline = Instant::now() + opts.health_timeout;
    let mut last;
    loop {
        if let Some(status) = daemon.exited() {
            return Err(LabError::DaemonExited {
                status: status.to_string(),
                tail: exec::tail(&daemon.log, 20),
                log: daemon.log.clone(),
            });
        }
        match http_get(addr, "/healthz", Duration::from_secs(2)) {
            Ok((200, _)) => break,
            Ok((code, body)) => last = format!("HTTP {code}: {}", body.trim()),
            Err(err) => last = err.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(LabError::DaemonUnhealthy {
                url,
                secs: opts.health_timeout.as_secs(),
                last,
                tail: exec::tail(&daemon.log, 20),
                log: daemon.log.clone(),
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
    // The daemon outlives `lab up`; `lab down` stops it through its pid file. (On the error
    // paths above, dropping the handle stops it.)
    daemon.detach();
    Ok(pid)
}

/// A minimal HTTP/1.0 GET: status code and body; an error if the answer has no status line.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    request(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        timeout,
    )
}

/// A minimal HTTP/1.0 PUT of `body` with a bearer `token` (the API's writes): status code
/// and body; an error if the answer has no status line.
pub fn http_put(
    addr: SocketAddr,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    request(
        addr,
        &format!(
            "PUT {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        timeout,
    )
}

fn request(addr: SocketAddr, request: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    match http_response(&raw) {
        (0, _) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no HTTP status line",
        )),
        answer => Ok(answer),
    }
}

/// The status code (0 if there is none) and the body of a raw HTTP/1 response.
pub fn http_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_daemon_contract() {
        let lab = Lab::new("pwt1").expect("prefix");
        let opts = UpOptions {
            api_port: 19441,
            ..UpOptions::default()
        };
        let text = config_text(
            &lab,
            &opts,
            Some(Path::new("/run/peerwarden-lab/pwt1/policy.yaml")),
        );
        assert!(text.contains("interfaces: { downlink: downlink, uplink: uplink }\n"));
        assert!(text.contains("netns: pwt1-gw\n"));
        assert!(text.contains("api: { listen: \"127.0.0.1:19441\" }\n"));
        assert!(text.contains("flow_table_size: 65536\n"));
        assert!(text.contains("history: { path: /run/peerwarden-lab/pwt1/history.db }\n"));
        assert!(text.ends_with("policy: /run/peerwarden-lab/pwt1/policy.yaml\n"));
        assert!(!config_text(&lab, &opts, None).contains("policy"));
        assert!(
            !text.contains("swarms"),
            "the swarm view is off unless asked for"
        );
        let swarms = UpOptions {
            swarms: true,
            ..opts
        };
        assert!(config_text(&lab, &swarms, None).contains("swarms: { enabled: true }\n"));
    }
}
