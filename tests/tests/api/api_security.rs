//! The API's security, against the real daemon on a lab gateway, over HTTPS with a
//! self-signed certificate made here (rcgen) and a client that trusts only it (rustls).
//!
//! - the API listens on 127.0.0.1 only; it speaks TLS, and only to a client trusting the
//!   certificate; plain HTTP on its port gets no answer;
//! - every write without the right bearer token is refused (401) and changes nothing: not
//!   the policy, not the schedules' clock, not the reload counters;
//! - malformed writes with the right token are refused (4xx) and change nothing either;
//!   methods the API does not serve are 405;
//! - the request log has a line per request, and never the token, a wrong token, the
//!   `Authorization` header or a request body.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test api api_security::`.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use peerwarden_lab::{http_get, http_response};
use peerwarden_tests::lab::{HTTP_TIMEOUT, Lab, TempDir, peerwarden_bin};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, ServerName},
};
use serde_json::Value;

const PREFIX: &str = "pwhs";
const PORT: u16 = 9463;
const TOKEN: &str = "api-security-token-5d1c09e7a4";
/// In a YAML comment of every policy body sent: it must never reach the log.
const BODY_MARKER: &str = "body-marker-7f3a9c";

/// An HTTPS client trusting `roots` (none: trusts nothing).
fn client(roots: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).expect("a root");
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(store)
            .with_no_client_auth();
    Arc::new(config)
}

/// One HTTPS request (`Connection: close`): status and body.
fn request(
    tls: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let conn = ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify: what came before still counts.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(http_response(&raw))
}

fn get_json(tls: &Arc<ClientConfig>, path: &str) -> (u16, Value) {
    let (code, body) =
        request(tls, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The daemon, killed on drop if the test did not stop it.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, log: &Path, tls: &Arc<ClientConfig>) -> Daemon {
        let out = std::fs::File::create(log).expect("log");
        let child = Command::new(peerwarden_bin())
            .args(["run", "--config"])
            .arg(config)
            // The token comes from the config here, nowhere else.
            .env_remove("PEERWARDEN_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("starting the daemon");
        let mut d = Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the daemon exited ({status}):\n{}", d.log_text());
            }
            if let Ok((200, _)) = request(tls, "GET", "/healthz", &[], b"") {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no HTTPS /healthz after 20 s:\n{}",
                d.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    assert!(
                        status.success(),
                        "the daemon exited with {status}:\n{}",
                        self.log_text()
                    );
                    break;
                }
                assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
                thread::sleep(Duration::from_millis(50));
            }
        }
        self.log_text()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Addresses with a listening TCP socket on `port` (from /proc/net/tcp and tcp6, in the
/// root namespace where the daemon binds its API), as the kernel's hex.
fn listeners(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (f.get(1), f.get(3)) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            if *state == "0A" && u16::from_str_radix(p, 16).ok() == Some(port) {
                out.push(addr.to_string());
            }
        }
    }
    out
}

fn policy_with(plan_rate: &str) -> String {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/lab.yaml"),
    )
    .expect("lab policy");
    format!(
        "# {BODY_MARKER}\n{}",
        base.replace("rate: { down: 1gbit, up: 100mbit }", plan_rate)
    )
}

#[test]
fn tls_api_refuses_every_unauthorised_or_malformed_write_and_logs_no_secret() {
    let tmp = TempDir::new("api-security");
    let lab = Lab::up(PREFIX, PORT, &["--no-daemon"]);

    // A certificate for 127.0.0.1, and the clients: one trusting it, one trusting nothing.
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("rcgen");
    let (cert, key) = (tmp.0.join("cert.pem"), tmp.0.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key");
    let trusting = client(&[ck.cert.der().clone()]);
    let stranger = client(&[]);

    let original = policy_with("rate: { down: 1gbit, up: 100mbit }");
    assert!(
        original.contains("1gbit"),
        "the lab policy's plan rate moved; update this test"
    );
    let policy_path = tmp.0.join("policy.yaml");
    std::fs::write(&policy_path, &original).expect("policy");
    let config = tmp.0.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
             netns: {netns}\n\
             api: {{ listen: \"127.0.0.1:{PORT}\", token: {TOKEN}, tls: {{ cert: {cert}, key: {key} }} }}\n\
             flow_table_size: 65536\n\
             policy: {policy}\n\
             history: {{ path: {store} }}\n",
            netns = lab.netns("gw"),
            cert = cert.display(),
            key = key.display(),
            policy = policy_path.display(),
            store = tmp.0.join("history.db").display(),
        ),
    )
    .expect("config");
    let daemon = Daemon::start(&config, &tmp.0.join("daemon.log"), &trusting);

    // Localhost only, TLS only, and only to a client trusting the certificate.
    let bound = listeners(PORT);
    assert_eq!(
        bound,
        ["0100007F"],
        "the API listens on 127.0.0.1 only: {bound:?}"
    );
    let e = request(&stranger, "GET", "/healthz", &[], b"")
        .expect_err("an untrusting client is refused");
    assert!(
        e.to_string().contains("certificate") || e.to_string().contains("Unknown"),
        "{e}"
    );
    let (code, _) = http_get(
        SocketAddr::from(([127, 0, 0, 1], PORT)),
        "/healthz",
        HTTP_TIMEOUT,
    )
    .unwrap_or((0, String::new()));
    assert_ne!(code, 200, "plain HTTP on the TLS port");

    let (code, policy) = get_json(&trusting, "/api/v1/policy");
    assert_eq!(code, 200);
    assert_eq!(policy["source"], original.as_str());
    let (_, clock) = get_json(&trusting, "/api/v1/clock");
    assert_eq!(clock["offset_seconds"], 0);

    // Writes without the right credentials: a valid policy and a valid clock change, each
    // refused with 401 whatever is wrong with the credentials.
    let other = policy_with("rate: { down: 500mbit, up: 50mbit }");
    let wrong = "wrong-token-0123456789abcdef";
    let basic = format!("Basic {}", base64(&format!("admin:{TOKEN}")));
    let long = format!("Bearer {TOKEN}x");
    let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let spaced = format!("Bearer  {TOKEN}");
    let bare = TOKEN.to_string();
    let wrong_bearer = format!("Bearer {wrong}");
    let right = format!("Bearer {TOKEN}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no Authorization", vec![]),
        ("a wrong token", vec![("Authorization", &wrong_bearer)]),
        ("an empty token", vec![("Authorization", "Bearer ")]),
        ("no token", vec![("Authorization", "Bearer")]),
        ("the token as Basic", vec![("Authorization", &basic)]),
        ("the token without a scheme", vec![("Authorization", &bare)]),
        ("the token and more", vec![("Authorization", &long)]),
        (
            "the token but its last character",
            vec![("Authorization", &short)],
        ),
        (
            "two spaces before the token",
            vec![("Authorization", &spaced)],
        ),
        (
            "a wrong header first, the right one second",
            vec![("Authorization", &wrong_bearer), ("Authorization", &right)],
        ),
        ("the token in another header", vec![("X-Api-Token", TOKEN)]),
    ];
    for (case, headers) in &cases {
        let hdrs: Vec<(&str, &str)> = headers
            .iter()
            .copied()
            .chain([("Content-Type", "application/yaml")])
            .collect();
        let (code, body) = request(&trusting, "PUT", "/api/v1/policy", &hdrs, other.as_bytes())
            .expect("PUT policy");
        assert_eq!(code, 401, "PUT /api/v1/policy with {case}: {body}");
        let hdrs: Vec<(&str, &str)> = headers
            .iter()
            .copied()
            .chain([("Content-Type", "application/json")])
            .collect();
        let (code, body) = request(
            &trusting,
            "PUT",
            "/api/v1/clock",
            &hdrs,
            br#"{"offset_seconds": 3600}"#,
        )
        .expect("PUT clock");
        assert_eq!(code, 401, "PUT /api/v1/clock with {case}: {body}");
        // A token in the query string is no credential either.
        let (code, _) = request(
            &trusting,
            "PUT",
            &format!("/api/v1/policy?token={TOKEN}"),
            &hdrs,
            other.as_bytes(),
        )
        .expect("PUT policy");
        assert_eq!(code, 401, "a token in the query ({case})");
    }
    let unchanged = |when: &str, failures: u64| {
        let (_, p) = get_json(&trusting, "/api/v1/policy");
        assert_eq!(p["source"], original.as_str(), "{when}: the policy changed");
        let (_, c) = get_json(&trusting, "/api/v1/clock");
        assert_eq!(c["offset_seconds"], 0, "{when}: the clock moved");
        let (_, s) = get_json(&trusting, "/api/v1/status");
        assert_eq!(
            (s["policy_reloads"].as_u64(), s["policy_failures"].as_u64()),
            (Some(1), Some(failures)),
            "{when}: {s}"
        );
    };
    unchanged("after the unauthorised writes", 0);
    let (code, _) = get_json(&trusting, "/api/v1/policy/rejected");
    assert_eq!(code, 404, "unauthorised bodies are not even validated");

    // Malformed writes with the right token.
    let auth = [
        ("Authorization", right.as_str()),
        ("Content-Type", "application/yaml"),
    ];
    let bad_yaml = format!("# {BODY_MARKER}\nplans: [\n");
    let (code, _) = request(
        &trusting,
        "PUT",
        "/api/v1/policy",
        &auth,
        bad_yaml.as_bytes(),
    )
    .expect("PUT");
    assert_eq!(code, 422, "YAML that does not parse");
    let unknown_plan = original.replace("plan: home-50", "plan: home-500");
    let (code, body) = request(
        &trusting,
        "PUT",
        "/api/v1/policy",
        &auth,
        unknown_plan.as_bytes(),
    )
    .expect("PUT");
    assert_eq!(code, 422, "an unknown plan: {body}");
    let (code, _) = request(
        &trusting,
        "PUT",
        "/api/v1/policy",
        &auth,
        &[0xff, 0xfe, 0x00],
    )
    .expect("PUT");
    assert_eq!(code, 400, "not UTF-8");
    let json_auth = [
        ("Authorization", right.as_str()),
        ("Content-Type", "application/json"),
    ];
    for body in [
        &b"{\"offset_seconds\": "[..],
        b"{\"offset_seconds\": 1, \"now\": \"2030-01-01T00:00:00Z\"}",
        b"{\"tz\": 1}",
        b"[]",
    ] {
        let (code, answer) =
            request(&trusting, "PUT", "/api/v1/clock", &json_auth, body).expect("PUT clock");
        assert!(
            (400..500).contains(&code),
            "clock body {:?}: {code} {answer}",
            String::from_utf8_lossy(body)
        );
    }
    for (method, path) in [
        ("POST", "/api/v1/policy"),
        ("DELETE", "/api/v1/policy"),
        ("PUT", "/api/v1/mix"),
        ("PATCH", "/api/v1/clock"),
    ] {
        let (code, _) =
            request(&trusting, method, path, &auth, original.as_bytes()).expect("request");
        assert_eq!(code, 405, "{method} {path}");
    }
    unchanged("after the malformed writes", 2);

    // And the right token with a valid policy does change it (the refusals were not for
    // some other reason).
    let (code, body) =
        request(&trusting, "PUT", "/api/v1/policy", &auth, other.as_bytes()).expect("PUT");
    assert_eq!(code, 200, "{body}");
    let (_, p) = get_json(&trusting, "/api/v1/policy");
    assert_eq!(p["source"], other.as_str());

    let log = daemon.stop();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peerwarden::access"))
        .collect();
    let refused = access
        .iter()
        .filter(|l| l.contains("method=PUT") && l.contains("status=401"))
        .count();
    assert_eq!(refused, 3 * cases.len(), "one line per refused write");
    assert!(
        access
            .iter()
            .all(|l| l.contains("latency_ms=") && l.contains("peer=127.0.0.1:")),
        "{access:?}"
    );
    for secret in [
        TOKEN,
        wrong,
        "Bearer",
        "Authorization",
        "Basic",
        BODY_MARKER,
        "offset_seconds",
        "token=",
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the daemon's log");
    }
}

/// Standard base64 with padding (for a Basic credential).
fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
