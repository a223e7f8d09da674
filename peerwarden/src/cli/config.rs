//! `peerwarden config check FILE`: every problem of a daemon configuration, and of what it
//! names (the policy, the service file, the interfaces, the TLS certificate and key), with
//! line and column.
//!
//! The checks are the daemon's own: [`Config::problems`] behind [`config::check`], the
//! policy loader `policy check` uses, the classifier's service catalogue loader, the start's interface lookup (in the named namespace,
//! entered on a thread of its own) and the API's TLS loading. Not checked: the host (root,
//! BTF, bpffs), the API's port, the history store (what `run` finds at start).

use std::{path::PathBuf, process::ExitCode};

use peerwarden_classifier::catalogue::Catalogue;

use peerwarden::{
    api,
    config::{
        Config, Mode,
        check::{self, Checked, Problem},
    },
    daemon::preflight,
};

/// Config subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a daemon configuration and what it names (policy, interfaces, certificate);
    /// every error is printed as FILE:LINE:COL: message (hint).
    Check {
        /// The daemon's configuration (YAML).
        file: PathBuf,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Check { file } = cmd;
    let origin = file.display().to_string();
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "{origin}: cannot read the configuration: {e} (check the path and its permissions)"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let checked = check::check(&text, &origin);
    let mut problems = checked.problems.clone();
    // What the file names: printed after the file's own problems, the policy's and the
    // service file's errors with their own places.
    let mut named_lines = Vec::new();
    let mut summary = Vec::new();
    if let Some(config) = &checked.value {
        if checked.readable("policy") {
            match &config.policy {
                Some(path) => match policy(&checked, path) {
                    Ok(s) => summary.push(s),
                    Err(Named::Config(p)) => problems.push(p),
                    Err(Named::Policy(lines)) => named_lines.extend(lines),
                },
                None => summary.push("no policy".to_owned()),
            }
        }
        if checked.readable("services")
            && let Some(path) = &config.services
        {
            match Catalogue::load(path) {
                Ok(c) => summary.push(format!(
                    "services {}: {}",
                    path.display(),
                    count(c.services.len(), "service")
                )),
                Err(e) => named_lines.extend(e.iter().map(ToString::to_string)),
            }
        }
        if checked.readable("interfaces") && checked.readable("mode") && checked.readable("netns") {
            match interfaces(&checked, config) {
                Ok(s) => summary.push(s),
                Err(p) => problems.extend(p),
            }
        }
        if checked.readable("api")
            && let Some(tls) = &config.api.tls
        {
            match api::tls::server_config(tls) {
                Ok(_) => summary.push("TLS".to_owned()),
                Err(e) => problems.push(tls_problem(&checked, &e)),
            }
        }
    }
    problems.sort_by_key(|p| (p.line, p.column));
    if problems.is_empty() && named_lines.is_empty() {
        println!("{origin}: ok ({})", summary.join(", "));
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!("{p}");
    }
    for l in &named_lines {
        eprintln!("{l}");
    }
    Ok(ExitCode::FAILURE)
}

/// Why a named file failed: a problem of the configuration (the policy cannot be read),
/// or the policy's own errors, one line each.
enum Named {
    Config(Problem),
    Policy(Vec<String>),
}

/// The policy, validated as `policy check` and the daemon's start do.
fn policy(checked: &Checked, path: &std::path::Path) -> Result<String, Named> {
    let origin = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        Named::Config(checked.problem(
            "policy",
            &format!("policy: cannot read {origin}: {e}"),
            "a relative path is taken from the directory the daemon starts in",
        ))
    })?;
    match peerwarden_policies::load_str(&source, &origin) {
        Ok(p) => Ok(format!(
            "policy {origin}: {}",
            count(p.subscribers().len(), "subscriber")
        )),
        Err(errors) => Err(Named::Policy(
            errors.iter().map(ToString::to_string).collect(),
        )),
    }
}

/// The interfaces, looked up as the daemon's start does, in the namespace if one is named.
fn interfaces(checked: &Checked, config: &Config) -> Result<String, Vec<Problem>> {
    let wanted: Vec<(&'static str, &'static str, String)> = match config.mode {
        Mode::Inline => vec![
            (
                "downlink",
                "interfaces.downlink",
                config.interfaces.downlink.clone(),
            ),
            (
                "uplink",
                "interfaces.uplink",
                config.interfaces.uplink.clone(),
            ),
        ],
        Mode::Observe => (config.interfaces.mirror.iter())
            .map(|m| ("mirror", "interfaces.mirror", m.clone()))
            .collect(),
    };
    let netns = config.netns.clone();
    let lookup = {
        let wanted = wanted.clone();
        move || -> Result<Vec<Option<String>>, String> {
            if let Some(ns) = &netns {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } != 0 {
                    return Err(format!(
                        "netns: the interfaces are in network namespace {ns:?}; checking them needs root (run config check as root)"
                    ));
                }
                preflight::enter_netns(ns).map_err(|e| format!("netns: {e:#}"))?;
            }
            Ok(wanted
                .iter()
                .map(|(role, _, name)| {
                    preflight::check_interface(role, name, netns.as_deref())
                        .err()
                        .map(|e| format!("{e:#}"))
                })
                .collect())
        }
    };
    // setns moves only the calling thread: a thread of its own, so this one stays put.
    let found = std::thread::spawn(lookup)
        .join()
        .unwrap_or_else(|_| Err("interfaces: the lookup failed".to_owned()));
    let found = match found {
        Ok(f) => f,
        Err(message) => {
            let key = if message.starts_with("netns") {
                "netns"
            } else {
                "interfaces"
            };
            return Err(vec![checked.problem(key, &message, "")]);
        }
    };
    let problems: Vec<Problem> = wanted
        .iter()
        .zip(found)
        .filter_map(|((_, key, _), e)| {
            e.map(|e| checked.problem(key, &format!("{key}: {e}"), "see `ip link`"))
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let names: Vec<&str> = wanted.iter().map(|(_, _, n)| n.as_str()).collect();
    let mut s = format!("interfaces {}", names.join(", "));
    if let Some(ns) = &config.netns {
        s.push_str(&format!(" in {ns}"));
    }
    Ok(s)
}

/// A refused certificate or key, at the key of the file it is about.
fn tls_problem(checked: &Checked, e: &api::tls::TlsError) -> Problem {
    use api::tls::TlsError;
    let key = match e {
        TlsError::Pem { what, .. } if what.contains("key") => "api.tls.key",
        TlsError::Pem { .. } | TlsError::NoCertificate(_) => "api.tls.cert",
        TlsError::Config { .. } => "api.tls",
    };
    checked.problem(
        key,
        &e.to_string(),
        "PEM files: the certificate chain, leaf first, and its private key",
    )
}

/// `1 subscriber`, `2 subscribers`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
