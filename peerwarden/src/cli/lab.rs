//! `peerwarden lab up|traffic|down`: a thin layer over [`peerwarden_lab`].

use std::{path::PathBuf, process::ExitCode, time::Instant};

use peerwarden::probe::pins;
use peerwarden_lab::{self as lab, Lab, LabError, PolicyChoice, TrafficOptions, UpOptions};

/// Lab subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Create the namespaces and start the daemon in the gateway.
    Up(UpArgs),
    /// Run real client traffic through the gateway.
    Traffic(TrafficArgs),
    /// Remove everything the lab made (idempotent; works after a crash).
    Down(Which),
}

/// Which lab.
#[derive(clap::Args)]
pub struct Which {
    /// Namespace prefix (namespaces are <prefix>-alice, -bob, -sw, -gw, -net) [default:
    /// $PEERWARDEN_LAB_PREFIX, else pw].
    #[arg(long)]
    prefix: Option<String>,
}

/// Arguments of `lab up`.
#[derive(clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    which: Which,
    /// The daemon's API port on 127.0.0.1.
    #[arg(long, default_value_t = lab::DEFAULT_API_PORT)]
    api_port: u16,
    /// Build the namespaces only; do not start the daemon.
    #[arg(long)]
    no_daemon: bool,
    /// Policy file for the daemon [default: policies/examples/lab.yaml when found].
    #[arg(long, conflicts_with = "no_policy")]
    policy: Option<PathBuf>,
    /// Start the daemon without a policy.
    #[arg(long)]
    no_policy: bool,
    /// Flow table entries.
    #[arg(long, default_value_t = 65536)]
    flow_table_size: u32,
    /// The deep tier's bound on the undecided flows it holds (the config's deep_max_flows).
    #[arg(long)]
    deep_max_flows: Option<u32>,
    /// Transmit and receive queues of the gateway's veths (shaping on several queues).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    gateway_queues: u32,
    /// Turn the swarm view on (swarms: { enabled: true }): the lab's swarms in
    /// /api/v1/swarms and the dashboard.
    #[arg(long)]
    swarms: bool,
}

/// Arguments of `lab traffic`.
#[derive(clap::Args)]
pub struct TrafficArgs {
    #[command(flatten)]
    which: Which,
    /// Time bound for the whole run (an error if the download has not finished by then,
    /// except with --loop).
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Keep running fresh swarm rounds until --seconds pass or Ctrl-C.
    #[arg(long = "loop")]
    looped: bool,
    /// Size of each round's torrent payload, in MiB.
    #[arg(long, default_value_t = 8)]
    size_mb: u32,
    /// Rate limit of each HTTP background client (curl --limit-rate).
    #[arg(long, default_value = "4M")]
    http_rate: String,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Up(args) => up(args),
        Command::Traffic(args) => traffic(args),
        Command::Down(which) => down(which),
    }
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::from_env(args.which.prefix.as_deref())?;
    let policy = match (args.policy, args.no_policy) {
        (Some(path), _) => PolicyChoice::File(path),
        (None, true) => PolicyChoice::None,
        (None, false) => PolicyChoice::Auto,
    };
    let opts = UpOptions {
        api_port: args.api_port,
        no_daemon: args.no_daemon,
        policy,
        flow_table_size: args.flow_table_size,
        deep_max_flows: args.deep_max_flows,
        gateway_queues: args.gateway_queues,
        swarms: args.swarms,
        ..UpOptions::default()
    };
    let report = lab::up(&lab, &opts, &unpin)?;
    println!(
        "lab {}: namespaces {} ({:.1} s)",
        lab.prefix(),
        report.namespaces.join(" "),
        report.topology_time.as_secs_f64()
    );
    match &report.policy {
        Some(p) => println!("policy: {}", p.display()),
        None => println!("policy: none"),
    }
    match &report.daemon {
        Some((pid, url)) => println!(
            "daemon: pid {pid}, healthy after {:.1} s, API {url} (config {}, log {})",
            report.daemon_time.as_secs_f64(),
            lab.config_path().display(),
            lab.state_dir().join("daemon.log").display()
        ),
        None => println!(
            "daemon: not started (config {})",
            lab.config_path().display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn traffic(args: TrafficArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::from_env(args.which.prefix.as_deref())?;
    let opts = TrafficOptions {
        seconds: args.seconds,
        looped: args.looped,
        size_mb: args.size_mb,
        http_rate: args.http_rate,
    };
    let summary = lab::traffic(&lab, &opts)?;
    print!("{summary}");
    Ok(ExitCode::SUCCESS)
}

fn down(which: Which) -> anyhow::Result<ExitCode> {
    let lab = Lab::from_env(which.prefix.as_deref())?;
    let t0 = Instant::now();
    let report = lab::down(&lab, &unpin)?;
    let stopped: Vec<String> = report
        .stopped
        .iter()
        .map(|(n, p)| format!("{n} ({p})"))
        .collect();
    println!(
        "lab {}: stopped [{}], unpinned [{}], deleted namespaces [{}], state dir {} ({:.1} s)",
        lab.prefix(),
        stopped.join(", "),
        report.unpinned.join(" "),
        report.namespaces.join(" "),
        if report.state_removed {
            "removed"
        } else {
            "absent"
        },
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The lab's [`lab::UnpinFn`]: unloads every instance pinned for namespace `netns` (a daemon
/// killed outright, or told to keep its programs attached, leaves them behind).
fn unpin(netns: &str) -> Result<Vec<String>, LabError> {
    let names = pins::instances_in_netns(netns);
    for name in &names {
        pins::unload(name).map_err(|e| LabError::Unpin {
            name: name.clone(),
            detail: e.to_string(),
        })?;
    }
    Ok(names)
}
