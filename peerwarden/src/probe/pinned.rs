//! The probe with pinned maps and links (see `pin.rs`): loading with the pinned maps of an
//! instance, adopting its pinned links with an atomic program swap (`BPF_LINK_UPDATE`) or
//! attaching and pinning fresh ones, and unpinning on a clean stop.

use std::path::PathBuf;

use aya::programs::{
    SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, LinkError},
    tc::SchedClassifierLink,
    xdp::XdpLink,
};
use peerwarden_common::policy::{MAX_PLANS, PlanSlots, PolicyControl, RULES_PER_SET, Rule};
use tracing::{info, warn};

use super::{
    Attachment, Installed, MAP_CONTROL, MAP_PLANS, MAP_RULES, Probe, ProbeError, ProbeOptions,
    map_err, program_err, program_of,
};
use crate::pin::{self, Found, PinDir};

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
    /// Loads the object with the maps of instance `dir`: pinned maps are reused when all
    /// are there and fit this build (otherwise the load is refused with the reason), new
    /// maps are created and pinned when none are. Links are adopted or pinned by
    /// [`Probe::attach`] and [`Probe::attach_tc_egress`].
    pub fn load_pinned(options: ProbeOptions, dir: &PinDir) -> Result<Probe, ProbeError> {
        let found = dir.found()?;
        if found == Found::Complete {
            let shapes = pin::object_shapes(super::PROBE_OBJECT, &super::max_entries(options))
                .map_err(|e| ProbeError::Adopt {
                    program: "object",
                    detail: e.to_string(),
                })?;
            dir.check_maps(|m| shapes.get(m).copied())?;
        } else {
            dir.create()?;
        }
        let adopted = found == Found::Complete;
        let mut probe = match Probe::load_inner(options, Some(dir)) {
            Ok(p) => p,
            Err(e) => {
                // The maps are pinned as they are created, before the programs load: a
                // failed first load must not leave them for the next start to adopt.
                if !adopted && let Err(cleanup) = dir.remove() {
                    warn!(error = %cleanup, "removing the pins of a failed load");
                }
                return Err(e);
            }
        };
        let instance = dir.instance()?;
        if adopted {
            probe.restore_policy_bookkeeping()?;
            info!(instance = %instance, dir = %dir.path().display(), "adopted the pinned maps");
        } else {
            info!(instance = %instance, dir = %dir.path().display(), "pinned new maps");
        }
        probe.pins = Some(Pins {
            dir: dir.clone(),
            instance,
            adopted,
            links: Vec::new(),
        });
        Ok(probe)
    }

    /// The instance of the maps (pinned probes only): the history store's instance.
    pub fn instance(&self) -> Option<&str> {
        self.pins.as_ref().map(|p| p.instance.as_str())
    }

    /// Whether the maps were adopted from an earlier run.
    pub fn adopted(&self) -> bool {
        self.pins.as_ref().is_some_and(|p| p.adopted)
    }

    /// The active set and generation the adopted control entry holds, and what each set
    /// holds, so that the next install fills the idle set as if this daemon had written it.
    fn restore_policy_bookkeeping(&mut self) -> Result<(), ProbeError> {
        let mut m = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let ctl: PolicyControl = m.control.get(&0, 0).map_err(map_err(MAP_CONTROL))?;
        m.generation = ctl.generation;
        m.active = ctl.active_set.min(1);
        let mut installed: [Installed; 2] = Default::default();
        for k in m.v4.keys().filter_map(Result::ok) {
            installed[usize::from(k.data()[0].min(1))].v4.push(k);
        }
        for k in m.v6.keys().filter_map(Result::ok) {
            installed[usize::from(k.data()[0].min(1))].v6.push(k);
        }
        for (set, inst) in installed.iter_mut().enumerate() {
            let set = set as u32;
            for i in 0..RULES_PER_SET {
                let r: Rule = m
                    .rules
                    .get(&(set * RULES_PER_SET + i), 0)
                    .map_err(map_err(MAP_RULES))?;
                if r != Rule::default() {
                    inst.rules.push(i);
                }
            }
            for p in (0..MAX_PLANS).rev() {
                let slots: PlanSlots = m
                    .plans
                    .get(&(set * MAX_PLANS + p), 0)
                    .map_err(map_err(MAP_PLANS))?;
                if slots != PlanSlots::default() {
                    inst.plans = p as usize + 1;
                    break;
                }
            }
        }
        m.installed = installed;
        Ok(())
    }

    /// Whether a policy is live in the maps (generation not 0).
    pub fn policy_live(&self) -> bool {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .control
            .get(&0, 0)
            .is_ok_and(|c| c.generation != 0)
    }

    /// Turns enforcement off (control generation 0: every packet passes), keeping the
    /// generation count so the next install is newer than anything a flow remembers. For a
    /// daemon without a policy that adopts the maps of one that had one.
    pub fn clear_policy(&self) -> Result<(), ProbeError> {
        let mut m = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let ctl = PolicyControl {
            generation: 0,
            active_set: m.active,
            shaping: 0,
            _reserved: 0,
        };
        m.control.set(0, ctl, 0).map_err(map_err(MAP_CONTROL))
    }

    /// [`Probe::attach`] for a pinned probe: adopts the pinned link of `program` if it is
    /// still attached to `interface` (swapping in this probe's program with
    /// `BPF_LINK_UPDATE`), else attaches (native, then generic) and pins the new link.
    pub(super) fn attach_pinned(
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
    pub(super) fn attach_tc_pinned(
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
        let want = pin::ifindex(interface);
        let have = pin::pinned_link_ifindex(&path).ok();
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
    pub(super) fn unpin_all(&mut self) -> Result<(), ProbeError> {
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
    pub(super) fn keep_pinned(&mut self) {
        if let Some(pins) = self.pins.as_mut() {
            pins.links.clear();
        }
    }
}
