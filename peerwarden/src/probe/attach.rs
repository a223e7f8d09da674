//! Attaching the programs to the gateway's interfaces and letting go of them: XDP on the
//! downlink and uplink (native, generic as a fallback), observe-only mode on a mirror port
//! with the subscriber networks it takes directions from, the TC egress programs. With a
//! pin directory (`pins.rs`), links are adopted from an earlier run with an atomic program
//! swap (`BPF_LINK_UPDATE`) or attached and pinned fresh, and unpinned on a clean stop.

use std::{collections::HashSet, net::IpAddr, path::PathBuf};

use aya::{
    Ebpf,
    maps::{
        MapData,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};
use peerwarden_common::observe::MAX_OBSERVE_NETWORKS;
use tracing::{info, warn};

use super::{
    Attachment, MAP_OBSERVE_V4, MAP_OBSERVE_V6, PROG_OBSERVE, PROG_TC_DOWNLINK, PROG_TC_UPLINK,
    Probe, ProbeError, map_err,
    pins::{self, PinDir},
    program_err, program_of, take,
};

/// No interface of that name in the current network namespace.
#[derive(Debug, thiserror::Error)]
#[error("interface {0:?} does not exist")]
pub struct NoSuchInterface(pub String);

/// The index of interface `name` in the current network namespace (`if_nametoindex`). A
/// name the kernel cannot hold (a NUL byte, too long) names no interface.
pub fn interface_index(name: &str) -> Result<u32, NoSuchInterface> {
    let missing = || NoSuchInterface(name.to_string());
    let c = std::ffi::CString::new(name).map_err(|_| missing())?;
    // SAFETY: c is a valid C string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(missing())
    } else {
        Ok(index)
    }
}

/// The observe program's subscriber networks and the keys they hold now.
pub(super) struct ObserveNets {
    v4: LpmTrie<MapData, [u8; 4], u8>,
    v6: LpmTrie<MapData, [u8; 16], u8>,
    installed_v4: Vec<Key<[u8; 4]>>,
    installed_v6: Vec<Key<[u8; 16]>>,
}

impl ObserveNets {
    /// The observe program's network tries taken out of the loaded object, empty.
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<ObserveNets, ProbeError> {
        Ok(ObserveNets {
            v4: LpmTrie::try_from(take(ebpf, MAP_OBSERVE_V4)?).map_err(map_err(MAP_OBSERVE_V4))?,
            v6: LpmTrie::try_from(take(ebpf, MAP_OBSERVE_V6)?).map_err(map_err(MAP_OBSERVE_V6))?,
            installed_v4: Vec::new(),
            installed_v6: Vec::new(),
        })
    }
}

/// The pins a probe loaded with [`Probe::load_pinned`] works with.
pub(super) struct Pins {
    pub(super) dir: PinDir,
    pub(super) instance: String,
    pub(super) adopted: bool,
    /// Links this probe holds pinned: program, link, pin path.
    pub(super) links: Vec<(&'static str, FdLink, PathBuf)>,
}

fn link_err(program: &'static str) -> impl Fn(LinkError) -> ProbeError {
    move |e| ProbeError::Adopt {
        program,
        detail: e.to_string(),
    }
}

/// The link's ids: `(link id, program id)`.
fn link_ids(link: &FdLink) -> (Option<u32>, Option<u32>) {
    link.info()
        .map(|i| (Some(i.id()), Some(i.program_id())))
        .unwrap_or((None, None))
}

fn static_mode(mode: &str) -> &'static str {
    match mode {
        "native" => "native",
        "generic" => "generic",
        "tcx" => "tcx",
        _ => "unknown",
    }
}

/// Which programs take the XDP links and which the TC ones.
enum Kind {
    Xdp,
    Tc,
}

impl Probe {
    /// A loaded program, for attaching or `test_run`.
    pub fn program(&mut self, name: &'static str) -> Result<&mut Xdp, ProbeError> {
        program_of(&mut self.ebpf, name)
    }

    /// Attaches `program` to `interface` in native (driver) mode, falling back to generic
    /// (skb) mode with a warning when the driver has no XDP support.
    pub fn attach(
        &mut self,
        program: &'static str,
        interface: &str,
    ) -> Result<Attachment, ProbeError> {
        if self.pins.is_some() {
            return self.attach_pinned(program, interface);
        }
        let prog = self.program(program)?;
        let (link, mode) = match prog.attach(interface, XdpMode::Driver) {
            Ok(link) => (link, "native"),
            Err(native) => {
                tracing::warn!(
                    interface,
                    program,
                    error = %native,
                    "native XDP not available, falling back to generic mode"
                );
                let link = prog
                    .attach(interface, XdpMode::Skb)
                    .map_err(program_err(program))?;
                (link, "generic")
            }
        };
        self.links.push((program, link));
        Ok(Attachment {
            interface: interface.to_string(),
            program,
            mode,
            link_id: None,
            program_id: None,
            adopted: false,
        })
    }

    /// Observe-only mode: policies compiled for this probe from now on carry no DSCP
    /// rewrites ([`Probe::compile_options`]; the observe program must not change a frame),
    /// and [`Probe::stats`] reports the observe program's statistics. Call it before
    /// compiling a policy.
    pub fn observe_only(&mut self) {
        self.observe = true;
    }

    /// Whether [`Probe::observe_only`] was called.
    pub fn is_observe_only(&self) -> bool {
        self.observe
    }

    /// Observe-only mode on a mirror port: attaches `xdp_observe` to `interface` (native
    /// XDP, generic as a fallback, as [`Probe::attach`]). The program sees copies of both
    /// directions and passes every frame unchanged; see ebpf/src/observe.rs.
    pub fn attach_observe(&mut self, interface: &str) -> Result<Attachment, ProbeError> {
        self.observe_only();
        self.attach(PROG_OBSERVE, interface)
    }

    /// Replaces the subscriber networks the observe program takes a packet's direction
    /// from (source inside: up; destination inside: down). At most
    /// [`MAX_OBSERVE_NETWORKS`] per family; duplicates are written once.
    pub fn set_observe_networks(&self, nets: &[(IpAddr, u8)]) -> Result<(), ProbeError> {
        let mut m = self.observe_nets.lock().unwrap_or_else(|p| p.into_inner());
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (addr, len) in nets {
            match addr {
                IpAddr::V4(a) => v4.push(Key::new(u32::from(*len).min(32), a.octets())),
                IpAddr::V6(a) => v6.push(Key::new(u32::from(*len).min(128), a.octets())),
            }
        }
        if v4.len() > MAX_OBSERVE_NETWORKS as usize || v6.len() > MAX_OBSERVE_NETWORKS as usize {
            return Err(ProbeError::TooManyNetworks(MAX_OBSERVE_NETWORKS));
        }
        // Add the new ones first, then remove what is gone: a network in both lists is
        // never missing, so its packets keep their direction through a change.
        for k in &v4 {
            m.v4.insert(k, 1, 0).map_err(map_err(MAP_OBSERVE_V4))?;
        }
        for k in &v6 {
            m.v6.insert(k, 1, 0).map_err(map_err(MAP_OBSERVE_V6))?;
        }
        let keep4: HashSet<(u32, [u8; 4])> =
            v4.iter().map(|k| (k.prefix_len(), k.data())).collect();
        let keep6: HashSet<(u32, [u8; 16])> =
            v6.iter().map(|k| (k.prefix_len(), k.data())).collect();
        let ObserveNets {
            v4: map4,
            v6: map6,
            installed_v4,
            installed_v6,
        } = &mut *m;
        for k in installed_v4
            .iter()
            .filter(|k| !keep4.contains(&(k.prefix_len(), k.data())))
        {
            let _ = map4.remove(k);
        }
        for k in installed_v6
            .iter()
            .filter(|k| !keep6.contains(&(k.prefix_len(), k.data())))
        {
            let _ = map6.remove(k);
        }
        *installed_v4 = v4;
        *installed_v6 = v6;
        Ok(())
    }

    fn classifier(&mut self, name: &'static str) -> Result<&mut SchedClassifier, ProbeError> {
        program_of(&mut self.ebpf, name)
    }

    /// Attaches the TC egress programs that steer shaped flows into HTB classes:
    /// `tc_uplink_egress` on `uplink`, `tc_downlink_egress` on `downlink`. aya attaches
    /// through TCX on kernels from 6.6 (no qdisc needed, `bpftool net` lists them under
    /// `tc` as `tcx/egress`); older kernels get a clsact qdisc and a netlink filter. Both
    /// are detached by [`Probe::detach_all`] and when the probe is dropped.
    pub fn attach_tc_egress(
        &mut self,
        uplink: &str,
        downlink: &str,
    ) -> Result<Vec<Attachment>, ProbeError> {
        let tcx = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        let mut out = Vec::new();
        for (program, interface) in [(PROG_TC_UPLINK, uplink), (PROG_TC_DOWNLINK, downlink)] {
            if tcx && self.pins.is_some() {
                out.push(self.attach_tc_pinned(program, interface)?);
                continue;
            }
            if !tcx {
                // Already there (EEXIST) is fine; any other failure shows up in attach.
                let _ = aya::programs::tc::qdisc_add_clsact(interface);
            }
            let link = self
                .classifier(program)?
                .attach(interface, TcAttachType::Egress)
                .map_err(program_err(program))?;
            self.tc_links.push((program, link));
            out.push(Attachment {
                interface: interface.to_string(),
                program,
                mode: if tcx { "tcx" } else { "clsact" },
                link_id: None,
                program_id: None,
                adopted: false,
            });
        }
        Ok(out)
    }

    /// Leaves the pinned links attached and every pin in place when this probe goes (for a
    /// daemon that stops to be replaced: the next one adopts them). Links that are not
    /// pinned are detached as usual.
    pub fn keep_attached(&mut self) {
        self.keep_pinned();
    }

    /// Detaches every program this probe attached.
    /// With pinned links (a probe from [`Probe::load_pinned`]) they are unpinned, and the
    /// instance's pin directory removed; see [`Probe::keep_attached`] for the alternative.
    pub fn detach_all(&mut self) -> Result<(), ProbeError> {
        self.unpin_all()?;
        for (program, link) in std::mem::take(&mut self.links) {
            self.program(program)?
                .detach(link)
                .map_err(program_err(program))?;
        }
        for (program, link) in std::mem::take(&mut self.tc_links) {
            self.classifier(program)?
                .detach(link)
                .map_err(program_err(program))?;
        }
        Ok(())
    }

    /// [`Probe::attach`] for a pinned probe: adopts the pinned link of `program` if it is
    /// still attached to `interface` (swapping in this probe's program with
    /// `BPF_LINK_UPDATE`), else attaches (native, then generic) and pins the new link.
    fn attach_pinned(
        &mut self,
        program: &'static str,
        interface: &str,
    ) -> Result<Attachment, ProbeError> {
        if let Some(a) = self.adopt_link(program, interface, Kind::Xdp)? {
            return Ok(a);
        }
        let prog: &mut Xdp = program_of(&mut self.ebpf, program)?;
        let (id, mode) = match prog.attach(interface, XdpMode::Driver) {
            Ok(id) => (id, "native"),
            Err(native) => {
                warn!(interface, program, error = %native,
                    "native XDP not available, falling back to generic mode");
                let id = prog
                    .attach(interface, XdpMode::Skb)
                    .map_err(program_err(program))?;
                (id, "generic")
            }
        };
        let link = prog.take_link(id).map_err(program_err(program))?;
        let link = FdLink::try_from(link).map_err(link_err(program))?;
        self.pin_link(program, interface, mode, link)
    }

    /// [`Probe::attach_tc_egress`] for a pinned probe on a kernel with TCX.
    fn attach_tc_pinned(
        &mut self,
        program: &'static str,
        interface: &str,
    ) -> Result<Attachment, ProbeError> {
        if let Some(a) = self.adopt_link(program, interface, Kind::Tc)? {
            return Ok(a);
        }
        let prog: &mut SchedClassifier = program_of(&mut self.ebpf, program)?;
        let id = prog
            .attach(interface, TcAttachType::Egress)
            .map_err(program_err(program))?;
        let link = prog.take_link(id).map_err(program_err(program))?;
        let link = FdLink::try_from(link).map_err(link_err(program))?;
        self.pin_link(program, interface, "tcx", link)
    }

    fn pin_link(
        &mut self,
        program: &'static str,
        interface: &str,
        mode: &'static str,
        link: FdLink,
    ) -> Result<Attachment, ProbeError> {
        let pins = self
            .pins
            .as_mut()
            .ok_or(ProbeError::Missing("pin directory"))?;
        let path = pins.dir.link_path(program, mode);
        let link: FdLink = link
            .pin(&path)
            .map_err(|e| ProbeError::Adopt {
                program,
                detail: format!("pinning the link at {}: {e}", path.display()),
            })?
            .into();
        let (link_id, program_id) = link_ids(&link);
        pins.links.push((program, link, path));
        Ok(Attachment {
            interface: interface.to_string(),
            program,
            mode,
            link_id,
            program_id,
            adopted: false,
        })
    }

    /// The pinned link of `program`, if there is one on `interface`, updated to this
    /// probe's program. A link whose interface is gone (or another interface now has its
    /// name) is unpinned, and `None` returned: the caller attaches afresh.
    fn adopt_link(
        &mut self,
        program: &'static str,
        interface: &str,
        kind: Kind,
    ) -> Result<Option<Attachment>, ProbeError> {
        let Some(pins) = self.pins.as_ref() else {
            return Ok(None);
        };
        let Some((path, mode)) = pins.dir.find_link(program) else {
            return Ok(None);
        };
        let link: FdLink = aya::programs::links::PinnedLink::from_pin(&path)
            .map_err(link_err(program))?
            .into();
        let want = interface_index(interface).ok();
        let have = pins::pinned_link_ifindex(&path).ok();
        if want.is_none() || have != want {
            warn!(program, interface, pin = %path.display(), ?have, ?want,
                "the pinned link is not attached to this interface any more; attaching afresh");
            drop(link);
            std::fs::remove_file(&path).map_err(|e| ProbeError::Adopt {
                program,
                detail: format!("unpinning the stale link {}: {e}", path.display()),
            })?;
            return Ok(None);
        }
        let (link_id, old_program) = link_ids(&link);
        // The swap: the interface runs the old program up to this call and the new one
        // after it, with no moment in between without either.
        let link = match kind {
            Kind::Xdp => {
                let link = XdpLink::try_from(link).map_err(link_err(program))?;
                let prog: &mut Xdp = program_of(&mut self.ebpf, program)?;
                let id = prog.attach_to_link(link).map_err(program_err(program))?;
                FdLink::try_from(prog.take_link(id).map_err(program_err(program))?)
                    .map_err(link_err(program))?
            }
            Kind::Tc => {
                let link = SchedClassifierLink::try_from(link).map_err(link_err(program))?;
                let prog: &mut SchedClassifier = program_of(&mut self.ebpf, program)?;
                let id = prog.attach_to_link(link).map_err(program_err(program))?;
                FdLink::try_from(prog.take_link(id).map_err(program_err(program))?)
                    .map_err(link_err(program))?
            }
        };
        let (_, program_id) = link_ids(&link);
        info!(program, interface, link_id = ?link_id, old_program = ?old_program,
            new_program = ?program_id, "adopted the pinned link: program swapped in place");
        if let Some(pins) = self.pins.as_mut() {
            pins.links.push((program, link, path));
        }
        Ok(Some(Attachment {
            interface: interface.to_string(),
            program,
            mode: static_mode(&mode),
            link_id,
            program_id,
            adopted: true,
        }))
    }

    /// Unpins and detaches every pinned link, then removes the instance's map pins and its
    /// directory (a clean stop). The maps live on while this probe holds them.
    fn unpin_all(&mut self) -> Result<(), ProbeError> {
        let Some(pins) = self.pins.as_mut() else {
            return Ok(());
        };
        for (program, link, path) in std::mem::take(&mut pins.links) {
            match std::fs::remove_file(&path) {
                // Already gone: `peerwarden unload` beside this daemon.
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ProbeError::Adopt {
                        program,
                        detail: format!("unpinning {}: {e}", path.display()),
                    });
                }
            }
            // The last reference: closing it detaches the program.
            drop(link);
        }
        pins.dir.remove()?;
        Ok(())
    }

    /// Closes the pinned links without unpinning them: the programs stay attached for the
    /// next daemon (`keep_attached_on_stop`).
    fn keep_pinned(&mut self) {
        if let Some(pins) = self.pins.as_mut() {
            pins.links.clear();
        }
    }
}
