//! Pinned maps and links: what lets the kernel side outlive the daemon.
//!
//! Each gateway instance has a directory `/sys/fs/bpf/peerwarden/<name>` (bpffs) holding
//!
//! - `map_<NAME>` for every map in [`PINNED_MAPS`] (flows, counters, verdicts, the policy
//!   maps and their control entry, token buckets, per-subscriber counters);
//! - `link_<program>-<mode>` for every attachment (the XDP links on both interfaces, the
//!   TCX links of the TC egress programs), `mode` being `native`, `generic` or `tcx`.
//!
//! While the pins exist the programs stay attached and keep enforcing the last policy
//! written into the maps, whether or not a daemon runs (fail-open: a crash stops nothing).
//! A daemon that finds the pins of its instance adopts them: it loads its programs with
//! the pinned maps and swaps them into the pinned links with `BPF_LINK_UPDATE`, so there is
//! no moment without a program (the same path upgrades to a new build).
//!
//! The maps' lifetime is the *instance* of the counters ([`PinDir::instance`]): the boot
//! and the kernel id of the pinned `COUNTERS` map. The history store keeps its readings
//! under that name, so a daemon that adopts the maps continues from the stored readings.

use std::{
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::maps::MapData;

/// Where every instance's directory lives.
pub const PIN_ROOT: &str = "/sys/fs/bpf/peerwarden";

/// Maps pinned per instance, so they survive the daemon. The ring buffer of samples and
/// the per-CPU scratch are not: they hold nothing worth keeping.
pub const PINNED_MAPS: &[&str] = &[
    "FLOWS",
    "LABELLED",
    "COUNTERS",
    "STATS",
    "VERDICTS",
    "CONTROL",
    "SUBS_V4",
    "SUBS_V6",
    "PLANS",
    "RULES",
    "BUCKETS",
    "SUB_COUNTERS",
    "SUB_SEEN",
];

/// The map whose kernel id names the instance.
const INSTANCE_MAP: &str = "COUNTERS";

/// What went wrong with the pins.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The instance name cannot be a directory name.
    #[error("instance name {0:?}: use 1 to 64 of A-Z a-z 0-9 _ - (bpffs refuses names with a dot)")]
    BadName(String),
    /// A filesystem operation on the pin directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Some maps are pinned and some are not: not something this program left.
    #[error(
        "{dir}: the pinned maps are incomplete (missing {missing}); remove them with `peerwarden unload --name {name}`"
    )]
    Partial {
        dir: PathBuf,
        name: String,
        missing: String,
    },
    /// A pinned map does not fit this build's definition.
    #[error(
        "{path}: the pinned map does not fit this build ({what}: pinned {pinned}, expected {expected}); \
         the maps of another build or config are not adopted: remove them with `peerwarden unload --name {name}` \
         (their counters and flows are lost) and start again"
    )]
    Incompatible {
        path: PathBuf,
        name: String,
        what: &'static str,
        pinned: u32,
        expected: u32,
    },
    /// Another daemon runs this instance.
    #[error(
        "instance {name} is in use by another running daemon (lock {path} held); give this one \
         its own `instance:` or other interfaces"
    )]
    InUse { name: String, path: PathBuf },
    /// A pinned map could not be opened or read.
    #[error("{path}: {source}")]
    Map {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
}

/// A map as this build defines it (after the config's `max_entries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapShape {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub flags: u32,
}

/// Whether an instance's maps are pinned.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No map is pinned: a fresh start.
    Nothing,
    /// Every map of [`PINNED_MAPS`] is pinned: adopt them.
    Complete,
}

/// `name` is usable as a directory name under [`PIN_ROOT`].
pub fn check_name(name: &str) -> Result<(), PinError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PinError::BadName(name.to_string()))
    }
}

/// The instance name a config gets when it names none: the namespace and both interfaces
/// (`gw_eth1_eth0`, `host_eth1_eth0` without a namespace), with characters outside the
/// allowed set replaced by `_` (bpffs refuses dots). Daemons on different interfaces or
/// namespaces do not share one.
pub fn default_name(netns: Option<&str>, downlink: &str, uplink: &str) -> String {
    let mut name = format!(
        "{}_{}_{}",
        clean(netns.unwrap_or("host")),
        clean(downlink),
        clean(uplink)
    );
    name.truncate(64);
    name
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The instances with a default name in namespace `netns` that have a pin directory
/// (`lab down` removes them with the namespace).
pub fn instances_in_netns(netns: &str) -> Vec<String> {
    let prefix = format!("{}_", clean(netns));
    let Ok(entries) = std::fs::read_dir(PIN_ROOT) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

/// One instance's pin directory.
#[derive(Clone, Debug)]
pub struct PinDir {
    name: String,
    path: PathBuf,
}

impl PinDir {
    /// The directory of instance `name` under [`PIN_ROOT`].
    pub fn new(name: &str) -> Result<PinDir, PinError> {
        PinDir::under(Path::new(PIN_ROOT), name)
    }

    /// The directory of instance `name` under `root` (tests use their own root).
    pub fn under(root: &Path, name: &str) -> Result<PinDir, PinError> {
        check_name(name)?;
        Ok(PinDir {
            name: name.to_string(),
            path: root.join(name),
        })
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where map `map` is pinned.
    pub fn map_path(&self, map: &str) -> PathBuf {
        self.path.join(format!("map_{map}"))
    }

    /// Where the link of `program` attached in `mode` is pinned.
    pub fn link_path(&self, program: &str, mode: &str) -> PathBuf {
        self.path.join(format!("link_{program}-{mode}"))
    }

    /// The pinned link of `program`, whatever its mode: `(path, mode)`.
    pub fn find_link(&self, program: &str) -> Option<(PathBuf, String)> {
        let prefix = format!("link_{program}-");
        let entries = std::fs::read_dir(&self.path).ok()?;
        entries.filter_map(Result::ok).find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)
                .map(|mode| (e.path(), mode.to_string()))
        })
    }

    /// Creates the directory (and [`PIN_ROOT`]) if missing.
    pub fn create(&self) -> Result<(), PinError> {
        std::fs::create_dir_all(&self.path).map_err(|source| PinError::Io {
            op: "creating",
            path: self.path.clone(),
            source,
        })
    }

    /// Whether the maps are pinned: all, none, or (an error) some.
    pub fn found(&self) -> Result<Found, PinError> {
        let missing: Vec<&str> = PINNED_MAPS
            .iter()
            .copied()
            .filter(|m| !self.map_path(m).exists())
            .collect();
        if missing.is_empty() {
            Ok(Found::Complete)
        } else if missing.len() == PINNED_MAPS.len() {
            Ok(Found::Nothing)
        } else {
            Err(PinError::Partial {
                dir: self.path.clone(),
                name: self.name.clone(),
                missing: missing.join(", "),
            })
        }
    }

    /// Refuses pinned maps that differ from `expected` (type, key and value size, capacity,
    /// flags): a build with other maps, or a config with another flow table or subscriber
    /// count, would read them wrongly. They are not migrated: the error says how to remove
    /// them.
    pub fn check_maps(&self, expected: impl Fn(&str) -> Option<MapShape>) -> Result<(), PinError> {
        for map in PINNED_MAPS {
            let Some(want) = expected(map) else { continue };
            let path = self.map_path(map);
            let have = pinned_shape(&path)?;
            for (what, pinned, expected) in [
                ("type", have.map_type, want.map_type),
                ("key size", have.key_size, want.key_size),
                ("value size", have.value_size, want.value_size),
                ("max entries", have.max_entries, want.max_entries),
                ("flags", have.flags, want.flags),
            ] {
                if pinned != expected {
                    return Err(PinError::Incompatible {
                        path,
                        name: self.name.clone(),
                        what,
                        pinned,
                        expected,
                    });
                }
            }
        }
        Ok(())
    }

    /// The instance of the pinned maps: the boot id and the kernel id of the pinned
    /// `COUNTERS` map (unique within a boot), e.g. `3f2a...:map-417`.
    pub fn instance(&self) -> Result<String, PinError> {
        let path = self.map_path(INSTANCE_MAP);
        let map = MapData::from_pin(&path).map_err(|source| PinError::Map {
            path: path.clone(),
            source,
        })?;
        let info = map
            .info()
            .map_err(|source| PinError::Map { path, source })?;
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        Ok(format!("{}:map-{}", boot.trim(), info.id()))
    }

    /// Removes every pin of the instance and the directory. Links go first (detaching the
    /// programs from their interfaces), then the maps. Returns what was removed; nothing to
    /// remove is not an error.
    pub fn remove(&self) -> Result<Vec<String>, PinError> {
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(source) => {
                return Err(PinError::Io {
                    op: "reading",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // `link_` sorts before `map_`.
        names.sort();
        for name in names {
            let path = self.path.join(&name);
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(name),
                // Removed meanwhile (`peerwarden unload` beside a running daemon).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PinError::Io {
                        op: "unpinning",
                        path,
                        source,
                    });
                }
            }
        }
        match std::fs::remove_dir(&self.path) {
            Ok(()) => Ok(removed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(removed),
            Err(source) => Err(PinError::Io {
                op: "removing",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// The shape of the map pinned at `path`.
fn pinned_shape(path: &Path) -> Result<MapShape, PinError> {
    let map_err = |source| PinError::Map {
        path: path.to_path_buf(),
        source,
    };
    let map = MapData::from_pin(path).map_err(map_err)?;
    let info = map.info().map_err(map_err)?;
    Ok(MapShape {
        map_type: info.map_type().map_err(map_err)? as u32,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}

/// The shape of every map of the object `object` as loaded with `max_entries` overrides.
pub fn object_shapes(
    object: &[u8],
    max_entries: &[(&str, u32)],
) -> Result<std::collections::HashMap<String, MapShape>, aya_obj::ParseError> {
    let obj = aya_obj::Object::parse(object)?;
    Ok(obj
        .maps
        .iter()
        .map(|(name, m)| {
            let max = max_entries
                .iter()
                .find(|(n, _)| n == name)
                .map_or(m.max_entries(), |(_, v)| *v);
            (
                name.clone(),
                MapShape {
                    map_type: m.map_type(),
                    key_size: m.key_size(),
                    value_size: m.value_size(),
                    max_entries: max,
                    flags: m.map_flags(),
                },
            )
        })
        .collect())
}

/// The interface index of the link (XDP or TCX) pinned at `path`; 0 once its interface is
/// gone. `BPF_OBJ_GET` on the pin, then `BPF_OBJ_GET_INFO_BY_FD`: both kinds keep the
/// ifindex first in their part of `struct bpf_link_info` (offset 16, after type, id,
/// prog_id and the union's 8-byte alignment).
pub fn pinned_link_ifindex(path: &Path) -> io::Result<u32> {
    use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    #[repr(C)]
    struct GetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        _pad: u32,
    }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut get = GetAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    // SAFETY: `get` points at a NUL-terminated path that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &mut get as *mut GetAttr,
            std::mem::size_of::<GetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned, owned here alone.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    let mut info = [0u8; 64];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` points at a buffer of `info_len` bytes that outlives the call; the
    // kernel writes at most that many.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::from_ne_bytes([info[16], info[17], info[18], info[19]]))
}

/// The index of interface `name` in the current namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Where the lock of a running daemon's instance lives.
pub const LOCK_DIR: &str = "/run/peerwarden";

/// A running daemon's hold on its instance: an exclusive `flock` on
/// `/run/peerwarden/<instance>.lock`, released when the process exits however it exits.
/// A second daemon on the same instance would otherwise swap its programs into the first
/// one's links and share its maps.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
}

impl PinDir {
    /// Takes the instance's lock, or fails with [`PinError::InUse`].
    pub fn lock(&self) -> Result<InstanceLock, PinError> {
        self.lock_in(Path::new(LOCK_DIR))
    }

    /// [`PinDir::lock`] with the lock file in `dir` (tests).
    pub fn lock_in(&self, dir: &Path) -> Result<InstanceLock, PinError> {
        std::fs::create_dir_all(dir).map_err(|source| PinError::Io {
            op: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(format!("{}.lock", self.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| PinError::Io {
                op: "opening",
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                PinError::InUse {
                    name: self.name.clone(),
                    path,
                }
            } else {
                PinError::Io {
                    op: "locking",
                    path,
                    source: e,
                }
            });
        }
        Ok(InstanceLock { _file: file })
    }
}

/// Removes instance `name`'s pins (`peerwarden unload`, `lab down`).
pub fn unload(name: &str) -> Result<Vec<String>, PinError> {
    PinDir::new(name)?.remove()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_and_distinct() {
        let a = default_name(Some("pn-gw"), "downlink", "uplink");
        assert_eq!(a, "pn-gw_downlink_uplink");
        check_name(&a).expect("valid");
        let b = default_name(None, "eth1", "eth0");
        assert_eq!(b, "host_eth1_eth0");
        assert_ne!(
            default_name(Some("x"), "a", "b"),
            default_name(Some("x"), "b", "a")
        );
        // Namespace names may hold characters a directory name here may not.
        let odd = default_name(Some("my ns/1"), "eth.1", "e0");
        check_name(&odd).expect("valid");
        assert_eq!(odd, "my_ns_1_eth_1_e0");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", ".", "..", "a.b", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["gw1", "pn-gw_downlink_uplink", "A_b-9"] {
            check_name(ok).expect(ok);
        }
    }

    #[test]
    fn the_config_names_the_instance() {
        use crate::config::Config;
        let parse = |t: &str| Config::parse(t, Path::new("test.yaml"));
        let c = parse("interfaces: { downlink: eth1, uplink: eth0 }\n").expect("valid");
        assert_eq!(c.instance_name(), "host_eth1_eth0");
        let c = parse("interfaces: { downlink: eth1, uplink: eth0 }\nnetns: gw\n").expect("valid");
        assert_eq!(c.instance_name(), "gw_eth1_eth0");
        let c =
            parse("interfaces: { downlink: eth1, uplink: eth0 }\ninstance: gw1\n").expect("valid");
        assert_eq!(c.instance_name(), "gw1");
        assert!(!c.keep_attached_on_stop);
        for bad in ["gw.1", "../x", "\"\""] {
            let text = format!("interfaces: {{ downlink: eth1, uplink: eth0 }}\ninstance: {bad}\n");
            let e = parse(&text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("instance"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_object_defines_every_pinned_map() {
        let shapes = object_shapes(crate::probe::PROBE_OBJECT, &[("FLOWS", 4096)]).expect("parses");
        for m in PINNED_MAPS {
            assert!(shapes.contains_key(*m), "{m} missing from the object");
        }
        assert_eq!(shapes["FLOWS"].max_entries, 4096);
        assert_eq!(
            shapes["FLOWS"].key_size as usize,
            std::mem::size_of::<peerwarden_common::FlowKey>()
        );
    }

    #[test]
    fn one_daemon_holds_an_instance() {
        let dir = std::env::temp_dir().join(format!("peerwarden-lock-{}", std::process::id()));
        let a = PinDir::under(Path::new("/nonexistent"), "gw1").expect("name");
        let b = PinDir::under(Path::new("/nonexistent"), "gw2").expect("name");
        let held = a.lock_in(&dir).expect("first lock");
        let second = a.lock_in(&dir).expect_err("second lock");
        assert!(second.to_string().contains("in use"), "{second}");
        let _other = b.lock_in(&dir).expect("another instance");
        drop(held);
        let _again = a.lock_in(&dir).expect("free once released");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_directory_holds_nothing() {
        let dir = PinDir::under(Path::new("/nonexistent-peerwarden"), "x").expect("name");
        assert_eq!(dir.found().expect("found"), Found::Nothing);
        assert!(dir.remove().expect("nothing to remove").is_empty());
        assert!(dir.find_link("xdp_downlink").is_none());
    }
}
