//! The per-subscriber counter array (`SUB_COUNTERS`, one [`SubUsage`] per subscriber
//! index) read through a shared memory mapping of the map: the kernel array is
//! `BPF_F_MMAPABLE`, so reading a subscriber is a copy of 896 bytes out of our address
//! space, with no system call (the per-CPU array it replaces took 8 lookups, one syscall
//! each, about 13 us per subscriber). The kernel updates the entries with atomic adds;
//! each 8-byte counter is read with one atomic load, so no counter is ever torn (two
//! counters of one reading may be a packet apart, as with any live reading).

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use peerwarden_common::policy::{BPF_F_MMAPABLE, SubUsage};

/// Words of one entry.
const WORDS: usize = std::mem::size_of::<SubUsage>() / 8;
const _: () = assert!(std::mem::size_of::<SubUsage>().is_multiple_of(8));

/// Why the array could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum UsageMapError {
    /// The kernel's description of the map could not be read.
    #[error("reading the map's info: {0}")]
    Info(#[from] aya::maps::MapError),
    /// Not the map this build expects (an object of another build).
    #[error(
        "the map is not an mmapable array of {expected}-byte values (flags {flags:#x}, value size {value_size})"
    )]
    Shape {
        expected: usize,
        flags: u32,
        value_size: u32,
    },
    /// `mmap` failed.
    #[error("mapping {bytes} bytes of the map: {source}")]
    Mmap {
        bytes: usize,
        #[source]
        source: std::io::Error,
    },
}

/// A shared mapping of a whole mmapable array map, read and written only through atomic
/// words: the frame both views below stand on.
struct Mapping {
    /// Keeps the map (and so the mapping's object) alive.
    map: MapData,
    base: NonNull<AtomicU64>,
    /// Bytes mapped (whole pages).
    len: usize,
    entries: u32,
}

// SAFETY: the mapping is only accessed through atomics (the kernel's side: atomic adds on
// the counters, plain word loads and stores on the flags, see ebpf/src/policy.rs). Sharing
// it between threads is sharing access to atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `map`, which must be an mmapable array of `value_size`-byte values (a multiple
    /// of 8), with protection `prot`.
    fn new(map: MapData, value_size: usize, prot: libc::c_int) -> Result<Mapping, UsageMapError> {
        debug_assert!(value_size.is_multiple_of(8));
        let info = map.info()?;
        if info.map_flags() & BPF_F_MMAPABLE == 0 || info.value_size() as usize != value_size {
            return Err(UsageMapError::Shape {
                expected: value_size,
                flags: info.map_flags(),
                value_size: info.value_size(),
            });
        }
        let entries = info.max_entries();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .unwrap_or(4096)
            .max(1);
        // The kernel lays the values out from offset 0, `round_up(value_size, 8)` apart.
        let len = (entries as usize * value_size).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks `len` against
        // the map's size (and a writable mapping against the map's flags) and refuses what
        // does not fit.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(UsageMapError::Mmap {
                bytes: len,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(p.cast::<AtomicU64>()).ok_or(UsageMapError::Mmap {
            bytes: len,
            source: std::io::Error::other("mmap returned null"),
        })?;
        Ok(Mapping {
            map,
            base,
            len,
            entries,
        })
    }

    /// Word `i` of the array (values laid end to end), `None` past the mapped values.
    fn word(&self, i: usize) -> Option<&AtomicU64> {
        (i < self.len / 8).then(|| {
            // SAFETY: i < len / 8: inside the mapping, 8-aligned (the mapping is page-aligned
            // and values are whole words apart); AtomicU64 has u64's layout and lives as long
            // as the mapping, which `&self` borrows.
            unsafe { &*self.base.as_ptr().add(i) }
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A read-only mapping of the per-subscriber counter array.
pub struct UsageMap(Mapping);

impl UsageMap {
    /// Maps `map` (the `SUB_COUNTERS` array) read-only into memory.
    pub fn new(map: MapData) -> Result<UsageMap, UsageMapError> {
        Mapping::new(map, std::mem::size_of::<SubUsage>(), libc::PROT_READ).map(UsageMap)
    }

    /// The map itself (its fd and info).
    pub fn map(&self) -> &MapData {
        &self.0.map
    }

    /// Entries (subscriber indexes) the array holds.
    pub fn entries(&self) -> u32 {
        self.0.entries
    }

    /// The counters of subscriber `index`, `None` past the end.
    pub fn get(&self, index: u32) -> Option<SubUsage> {
        if index >= self.0.entries {
            return None;
        }
        let mut words = [0u64; WORDS];
        let start = index as usize * WORDS;
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.0.word(start + i)?.load(Ordering::Relaxed);
        }
        // SAFETY: SubUsage is repr(C), 112 u64 words with no padding; every bit pattern is
        // valid (it is Pod).
        Some(unsafe { std::mem::transmute::<[u64; WORDS], SubUsage>(words) })
    }
}

/// A read-write mapping of `SUB_SEEN`: one word per subscriber index that the kernel sets
/// to 1 when the index's counters change; [`SeenMap::take`] swaps it back to 0.
pub struct SeenMap(Mapping);

impl SeenMap {
    /// Maps `map` (the `SUB_SEEN` array of u64) read-write.
    pub fn new(map: MapData) -> Result<SeenMap, UsageMapError> {
        Mapping::new(map, 8, libc::PROT_READ | libc::PROT_WRITE).map(SeenMap)
    }

    /// The flag of `index`, `None` past the end.
    fn flag(&self, index: u32) -> Option<&AtomicU64> {
        (index < self.0.entries)
            .then(|| self.0.word(index as usize))
            .flatten()
    }

    /// Whether index `index`'s counters changed since the last `take` (or since the map
    /// was made); clears the flag. Take the flag, then read the counters: a change after
    /// the take sets it again (the swap is a full barrier, as is the kernel's locked add
    /// before its check of the flag). `true` past the end, so nothing is ever skipped by
    /// mistake.
    pub fn take(&self, index: u32) -> bool {
        self.flag(index)
            .is_none_or(|f| f.swap(0, Ordering::SeqCst) != 0)
    }

    /// Whether the flag of `index` is set, without clearing it (for tests).
    pub fn peek(&self, index: u32) -> bool {
        self.flag(index)
            .is_none_or(|f| f.load(Ordering::SeqCst) != 0)
    }
}
