//! Checks before the daemon touches the kernel, each failing with a one-line reason.

use std::{ffi::CString, fs::File, os::fd::AsRawFd, path::Path};

use anyhow::{Context as _, bail};

/// `statfs.f_type` of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where the kernel publishes its own BTF (CONFIG_DEBUG_INFO_BTF).
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The capabilities, BTF and bpffs.
pub fn check_host() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("reading /proc/self/status for the process's capabilities")?;
    let effective =
        effective_capabilities(&status).context("/proc/self/status has no readable CapEff line")?;
    if let Some(refusal) = missing_capabilities(effective) {
        bail!("{refusal}");
    }
    if !Path::new(VMLINUX_BTF).exists() {
        bail!(
            "this kernel has no BTF ({VMLINUX_BTF} is missing); a kernel built with CONFIG_DEBUG_INFO_BTF=y is needed"
        );
    }
    if !is_bpffs(BPFFS) {
        bail!("bpffs is not mounted on {BPFFS}; mount it with: mount -t bpf bpf {BPFFS}");
    }
    Ok(())
}

/// A capability the daemon needs: its number (linux/capability.h), its name and why.
struct Needed {
    bit: u32,
    name: &'static str,
    why: &'static str,
    /// Granted too by CAP_SYS_ADMIN (the kernel's `bpf_capable()`, `perfmon_capable()`).
    sys_admin_suffices: bool,
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the daemon needs, no more (the systemd unit grants exactly these;
/// `packaging/README.md` shows what fails without each).
const NEEDED: [Needed; 3] = [
    Needed {
        bit: CAP_BPF,
        name: "CAP_BPF",
        why: "to create the maps and load the kernel programs",
        sys_admin_suffices: true,
    },
    Needed {
        bit: CAP_NET_ADMIN,
        name: "CAP_NET_ADMIN",
        why: "to load and attach the XDP and TC programs and set up the shaping qdiscs",
        sys_admin_suffices: false,
    },
    Needed {
        bit: CAP_PERFMON,
        name: "CAP_PERFMON",
        why: "for the verifier to accept the programs' pointer arithmetic",
        sys_admin_suffices: true,
    },
];

/// The effective capability set from the text of `/proc/<pid>/status` (`CapEff:` in hex).
fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The one-line refusal naming what `effective` lacks of [`NEEDED`], or `None`.
fn missing_capabilities(effective: u64) -> Option<String> {
    let has = |bit: u32| effective & (1u64 << bit) != 0;
    let missing: Vec<&Needed> = NEEDED
        .iter()
        .filter(|n| !(has(n.bit) || n.sys_admin_suffices && has(CAP_SYS_ADMIN)))
        .collect();
    let names: Vec<&str> = missing.iter().map(|n| n.name).collect();
    match missing.as_slice() {
        [] => None,
        [one] => Some(format!(
            "missing capability {} (needed {}); run as root or grant it (see the systemd unit)",
            one.name, one.why
        )),
        _ => Some(format!(
            "missing capabilities {} ({}); run as root or grant them (see the systemd unit)",
            names.join(", "),
            missing
                .iter()
                .map(|n| format!("{}: {}", n.name, n.why))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

fn is_bpffs(path: &str) -> bool {
    let Ok(c) = CString::new(path) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct; c is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Moves the calling thread into the named network namespace (`ip netns add NAME`).
/// Threads started afterwards inherit it; sockets opened before stay where they were.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = Path::new("/run/netns").join(name);
    let ns = File::open(&path).with_context(|| {
        format!(
            "network namespace {name:?} does not exist ({} missing)",
            path.display()
        )
    })?;
    // SAFETY: setns on a namespace fd we own; affects only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("entering network namespace {name:?}"));
    }
    Ok(())
}

/// Fails unless `iface` exists in the current network namespace.
pub fn check_interface(role: &str, iface: &str, netns: Option<&str>) -> anyhow::Result<u32> {
    let index = crate::probe::interface_index(iface);
    match (index, netns) {
        (Ok(index), _) => Ok(index),
        (Err(_), Some(ns)) => {
            bail!("{role} interface {iface:?} does not exist in network namespace {ns:?}")
        }
        (Err(_), None) => bail!("{role} interface {iface:?} does not exist"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root's set on a 6.x kernel (capabilities 0 to 40).
    const ALL: u64 = 0x0000_01ff_ffff_ffff;
    /// What the systemd unit grants.
    const UNIT: u64 = 1 << CAP_BPF | 1 << CAP_NET_ADMIN | 1 << CAP_PERFMON;

    #[test]
    fn reads_the_effective_set_from_proc_status() {
        let status = "Name:\tpeerwarden\nCapInh:\t0000000000000000\n\
                      CapPrm:\t000000c000001000\nCapEff:\t000000c000001000\n";
        assert_eq!(effective_capabilities(status), Some(UNIT));
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), None);
        assert_eq!(effective_capabilities("Name:\tx\n"), None);
    }

    #[test]
    fn the_units_set_and_root_suffice() {
        assert_eq!(missing_capabilities(UNIT), None);
        assert_eq!(missing_capabilities(ALL), None);
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as in the kernel.
        assert_eq!(
            missing_capabilities(1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN),
            None
        );
    }

    #[test]
    fn the_refusal_names_each_missing_capability() {
        let one = missing_capabilities(UNIT & !(1 << CAP_PERFMON)).expect("refused");
        assert!(
            one.starts_with("missing capability CAP_PERFMON (needed for the verifier"),
            "{one}"
        );
        assert!(
            one.ends_with("run as root or grant it (see the systemd unit)"),
            "{one}"
        );
        assert!(!one.contains('\n'), "{one}");

        let all = missing_capabilities(0).expect("refused");
        assert!(
            all.starts_with("missing capabilities CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON ("),
            "{all}"
        );
        assert!(all.ends_with("grant them (see the systemd unit)"), "{all}");

        let admin_only = missing_capabilities(1 << CAP_SYS_ADMIN).expect("refused");
        assert!(
            admin_only.starts_with("missing capability CAP_NET_ADMIN ("),
            "{admin_only}"
        );
    }
}
