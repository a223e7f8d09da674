//! What the daemon benches share: the 100,000-subscriber policy of the lab benches, the
//! daemon's CPU time per thread from `/proc`, and a program the daemon loaded, run through
//! `BPF_PROG_TEST_RUN` by its id (to fill the daemon's own maps without a wire).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::lab::{Lab, peerwarden_ok};

/// The first generated subscriber's IPv4 address (one /32 each, upwards): clear of the
/// lab's alice and bob.
pub const FIRST_GENERATED: Ipv4Addr = Ipv4Addr::new(100, 65, 0, 0);

/// A policy of the lab's alice and bob and `n` generated subscribers (`s0`, `s1`, ...: an
/// IPv4 /32 from [`FIRST_GENERATED`] up and an IPv6 /64 from 2001:db8:100::/64 up each), one
/// plan with generous rates (16 gbit in total, policed: the bucket is consulted on every
/// packet) and class rules (p2p marked, video policed).
pub fn big_policy_yaml(n: u32) -> String {
    let mut y = String::from(
        "timezone: UTC\n\
         link: { down: 16gbit, up: 16gbit }\n\
         plans:\n  \
           big:\n    \
             rate: { down: 16gbit, up: 16gbit }\n    \
             classes:\n      \
               p2p: { dscp: LE }\n      \
               video: { down: 8gbit }\n\
         default_plan: big\n\
         subscribers:\n  \
           - { id: alice, prefixes: [100.64.1.10/32, \"2001:db8:1::10/128\"], plan: big }\n  \
           - { id: bob, prefixes: [100.64.1.20/32, \"2001:db8:1::20/128\"], plan: big }\n",
    );
    for i in 0..n {
        let v4 = Ipv4Addr::from(u32::from(FIRST_GENERATED) + i);
        let v6 = Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x100 + (i >> 16) as u16,
            i as u16,
            0,
            0,
            0,
            0,
        );
        let _ = writeln!(
            y,
            "  - {{ id: s{i}, prefixes: [{v4}/32, \"{v6}/64\"], plan: big }}"
        );
    }
    y
}

/// Writes [`big_policy_yaml`] of `n` subscribers to `dir`, has `peerwarden policy check`
/// accept it (its answer printed), and writes beside it the config of a daemon on `lab`'s
/// gateway with that policy, a history store in `dir`, a flow table of `flow_table` entries,
/// the API on the lab's port, and the config lines `extra`. The config's path.
pub fn big_policy_daemon_config(
    lab: &Lab,
    dir: &Path,
    n: u32,
    flow_table: u32,
    extra: &str,
) -> PathBuf {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, big_policy_yaml(n)).expect("writing the policy");
    let checked = peerwarden_ok(
        &["policy", "check", &policy.to_string_lossy()],
        Duration::from_secs(60),
    );
    println!("{}", checked.trim());
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
             netns: {gw}\n\
             api: {{ listen: \"{api}\" }}\n\
             flow_table_size: {flow_table}\n\
             max_subscribers: 131072\n\
             history: {{ path: {history} }}\n\
             policy: {policy}\n\
             {extra}",
            gw = lab.netns("gw"),
            api = lab.api_addr(),
            history = dir.join("history.db").display(),
            policy = policy.display(),
        ),
    )
    .expect("writing the config");
    config
}

/// CPU time (user + system, clock ticks) of each thread of process `pid`, summed by thread
/// name (`read-subscribers`, `deep`, `tokio-runtime-w`, ...), from /proc/PID/task/*/stat.
/// Empty if the process is gone.
pub fn thread_cpu(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ...": utime and stime are fields 14 and 15, the 12th and
        // 13th after the closing parenthesis (comm may hold spaces).
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(comm).or_insert(0) += ticks(11) + ticks(12);
    }
    out
}

/// The CPU used between two `thread_cpu` readings `wall` apart: seconds of CPU (all
/// threads) per second of wall time, and the threads' shares as text, largest first
/// (`read-flows 3.1%, ...`, in % of one core).
pub fn cpu_use(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    wall: Duration,
) -> (f64, String) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut threads: Vec<(f64, &String)> = after
        .iter()
        .map(|(name, t)| {
            let d = t.saturating_sub(before.get(name).copied().unwrap_or(0));
            (d as f64 / hz / wall.as_secs_f64(), name)
        })
        .filter(|(s, _)| *s > 0.0)
        .collect();
    threads.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total = threads.iter().map(|t| t.0).sum();
    let list = threads
        .iter()
        .map(|(s, n)| format!("{n} {:.1}%", s * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    (total, list)
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;

/// `union bpf_attr` as the two commands used here read it (zero-padded to the size the
/// kernel accepts: it checks that bytes past what it knows are zero).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: [u32; 3],
}

fn bpf(cmd: libc::c_long, attr: &mut TestRunAttr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` of the size passed; the pointers
    // in it (for TEST_RUN) point at live buffers of the sizes given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A loaded XDP program of another process (the daemon's), opened by id.
pub struct ProgById(OwnedFd);

impl ProgById {
    /// Opens program `id` (needs root).
    pub fn open(id: u32) -> std::io::Result<ProgById> {
        let mut attr = TestRunAttr {
            prog_fd: id, // `prog_id` sits where TEST_RUN's `prog_fd` does
            ..TestRunAttr::default()
        };
        let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?;
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        Ok(ProgById(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Runs it once on `frame`; its verdict.
    pub fn run(&self, frame: &[u8]) -> std::io::Result<u32> {
        let mut attr = TestRunAttr {
            prog_fd: self.0.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRunAttr::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.retval)
    }
}
