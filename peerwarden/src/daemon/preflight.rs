//! Checks before the daemon touches the kernel, each failing with a one-line reason.

use std::{ffi::CString, fs::File, os::fd::AsRawFd, path::Path};

use anyhow::{Context as _, bail};

/// `statfs.f_type` of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where the kernel publishes its own BTF (CONFIG_DEBUG_INFO_BTF).
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Root, BTF and bpffs.
pub fn check_host() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root: it loads and attaches eBPF programs");
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
