//! `BPF_MAP_UPDATE_BATCH` for the policy's prefix tries: aya 0.14 has no batch operations,
//! and one `BPF_MAP_UPDATE_ELEM` syscall per prefix made most of a 100,000-subscriber
//! install (docs/benchmarks.md).

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::MapData;

use super::{ProbeError, map_err};

/// `BPF_MAP_*_BATCH`'s part of `union bpf_attr` (linux/bpf.h, `batch`).
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// The kernel's own "not supported" (not in libc's errno list).
const ENOTSUPP: i32 = 524;
/// Entries per call.
const CHUNK: usize = 16_384;

/// Writes `keys[i]` → `values[i]` into `map`, `CHUNK` entries a call. The kernel runs the
/// same per-entry update as `BPF_MAP_UPDATE_ELEM` for each (its generic batch update,
/// which LPM tries have), without a syscall each. `Ok(false)` when the kernel has no batch
/// updates for this map: nothing was written, and the caller writes entry by entry.
pub(super) fn update<K: aya::Pod, V: aya::Pod>(
    name: &'static str,
    map: &MapData,
    keys: &[K],
    values: &[V],
) -> Result<bool, ProbeError> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let fd = map.fd().as_fd().as_raw_fd();
    for (i, (k, v)) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)).enumerate() {
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `attr` points at `count` keys and values laid out as the map's keys and
        // values (aya checked their sizes when it opened the map as this type), alive for
        // the call; the kernel reads them and writes only `attr.count` back.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        if r != 0 {
            let io_error = std::io::Error::last_os_error();
            let unsupported = matches!(
                io_error.raw_os_error(),
                Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
            );
            if unsupported && i == 0 && attr.count == 0 {
                return Ok(false);
            }
            return Err(map_err(name)(aya::maps::MapError::SyscallError(
                aya::sys::SyscallError {
                    call: "bpf_map_update_batch",
                    io_error,
                },
            )));
        }
    }
    Ok(true)
}
