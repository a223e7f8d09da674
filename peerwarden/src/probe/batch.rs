//! `BPF_MAP_UPDATE_BATCH` for the policy's prefix tries and `BPF_MAP_LOOKUP_BATCH` for the
//! flow table's walk: aya 0.14 has no batch operations, and one `BPF_MAP_UPDATE_ELEM`
//! syscall per prefix made most of a 100,000-subscriber install, as two syscalls per flow
//! (next key, lookup) made most of the daemon's CPU at a million flows (docs/benchmarks.md).

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

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// The kernel's own "not supported" (not in libc's errno list).
const ENOTSUPP: i32 = 524;
/// Entries per call.
const CHUNK: usize = 16_384;

fn batch_call(cmd: libc::c_long, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is a `bpf_attr` batch part whose pointers the callers set to live
    // buffers of `count` keys and values of the map's sizes (and a 4-byte batch token).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

/// Every entry of hash map `map`, `CHUNK` a call: the kernel copies whole buckets, each
/// under its lock, so a key is listed once even while the map changes (a key always hashes
/// to the same bucket), and a flow created or evicted meanwhile is in or out. `Ok(None)`
/// when the kernel has no batch lookups for this map (the caller walks key by key). At
/// most `max` entries.
pub(super) fn lookup_all<K: aya::Pod + Default, V: aya::Pod + Default>(
    name: &'static str,
    map: &MapData,
    max: usize,
) -> Result<Option<Vec<(K, V)>>, ProbeError> {
    Ok(lookup_part(name, map, None, max)?.map(|(mut all, _)| {
        all.truncate(max);
        all
    }))
}

/// A part of a walk: its entries and the token to resume from (`None`: the map's end).
pub type Part<K, V> = (Vec<(K, V)>, Option<u64>);

/// The buffers of a walk in parts, kept from one step to the next: the kernel's key and
/// value arrays of a call, and the part's entries. A step of 131,072 flows fills about
/// 18 MB; allocated afresh each second, clearing its new pages cost about a tenth of the
/// flow reader's time (docs/benchmarks.md).
pub struct PartBuf<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
    /// The entries of the last step.
    pub entries: Vec<(K, V)>,
}

impl<K, V> Default for PartBuf<K, V> {
    fn default() -> Self {
        PartBuf {
            keys: Vec::new(),
            values: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// The entries of hash map `map` from bucket token `from` on (`None`: the first bucket),
/// whole calls of `CHUNK` until at least `budget` entries or the map's end, and the token
/// to resume from (`None`: the end was reached). A walk resumed at the token lists each
/// key once, as [`lookup_all`] does. `Ok(None)` when the kernel has no batch lookups.
pub(super) fn lookup_part<K: aya::Pod + Default, V: aya::Pod + Default>(
    name: &'static str,
    map: &MapData,
    from: Option<u64>,
    budget: usize,
) -> Result<Option<Part<K, V>>, ProbeError> {
    let mut buf = PartBuf::default();
    Ok(lookup_part_into(name, map, from, budget, &mut buf)?.map(|next| (buf.entries, next)))
}

/// [`lookup_part`] into `buf` (its entries replaced by the part's): `Ok(Some(next))` with
/// the token to resume from, `Ok(None)` when the kernel has no batch lookups.
pub(super) fn lookup_part_into<K: aya::Pod + Default, V: aya::Pod + Default>(
    name: &'static str,
    map: &MapData,
    from: Option<u64>,
    budget: usize,
    buf: &mut PartBuf<K, V>,
) -> Result<Option<Option<u64>>, ProbeError> {
    // The kernel writes `count` keys and values of the map's sizes: the buffers' element
    // types must be exactly those sizes.
    let info = map.info().map_err(map_err(name))?;
    let (size, expected) = (std::mem::size_of::<K>(), info.key_size() as usize);
    if size != expected {
        return Err(map_err(name)(aya::maps::MapError::InvalidKeySize {
            size,
            expected,
        }));
    }
    let (size, expected) = (std::mem::size_of::<V>(), info.value_size() as usize);
    if size != expected {
        return Err(map_err(name)(aya::maps::MapError::InvalidValueSize {
            size,
            expected,
        }));
    }
    let fd = map.fd().as_fd().as_raw_fd();
    let PartBuf {
        keys,
        values,
        entries: out,
    } = buf;
    keys.resize(CHUNK, K::default());
    values.resize(CHUNK, V::default());
    out.clear();
    // A whole walk (a cycle's first step) leaves the table's size behind: not kept for
    // the steps after it, which read about `budget` entries.
    if out.capacity() > budget.saturating_add(CHUNK).saturating_mul(2) {
        *out = Vec::new();
    }
    // The hash map's token: the next bucket (a u32; 8 bytes leave room).
    let (mut token_in, mut token_out) = (from.unwrap_or(0), 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if from.is_none() && first {
                0
            } else {
                &raw mut token_in as u64
            },
            out_batch: &raw mut token_out as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        let r = batch_call(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = (attr.count as usize).min(CHUNK);
        let end = match r {
            Ok(()) => false,
            // The last buckets: what was copied (possibly nothing) is valid.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) if first && unsupported(&e) => return Ok(None),
            Err(io_error) => {
                return Err(map_err(name)(aya::maps::MapError::SyscallError(
                    aya::sys::SyscallError {
                        call: "bpf_map_lookup_batch",
                        io_error,
                    },
                )));
            }
        };
        out.extend(
            keys[..got]
                .iter()
                .copied()
                .zip(values[..got].iter().copied()),
        );
        if end {
            return Ok(Some(None));
        }
        if out.len() >= budget {
            return Ok(Some(Some(token_out)));
        }
        token_in = token_out;
        first = false;
    }
}

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
        if let Err(io_error) = batch_call(BPF_MAP_UPDATE_BATCH, &mut attr) {
            if unsupported(&io_error) && i == 0 && attr.count == 0 {
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
