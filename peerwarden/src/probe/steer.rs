//! Shaping on multi-queue interfaces, the kernel's half: `SHAPE_LAYOUT` (the transmit
//! queues of each direction's egress, the CPUs) and the cpumap `CPUS` the XDP probe
//! redirects a shaped subscriber's packets into (ebpf/src/steer.rs, shaping/mod.rs).

use aya::maps::{Array, CpuMap};
use peerwarden_common::shape::{MAX_CPUS, ShapeLayout};

use super::{Probe, ProbeError, map_err};

const MAP_SHAPE_LAYOUT: &str = "SHAPE_LAYOUT";
const MAP_CPUS: &str = "CPUS";
/// Frames a CPU's cpumap queue holds before the redirect drops (the kernel's ptr_ring).
const CPUMAP_QUEUE: u32 = 2048;

/// CPUs online (1 if unknown), at most [`MAX_CPUS`].
fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n.max(1) as u32).min(MAX_CPUS)
}

impl Probe {
    /// Tells the kernel programs how many transmit queues each direction's egress has
    /// (`[up, down]`, from [`crate::shaping::Shaper::queues`]) and fills the cpumap with
    /// the online CPUs. Returns the CPUs. A direction with one queue is not steered.
    pub fn set_shape_layout(&mut self, queues: [u32; 2]) -> Result<u32, ProbeError> {
        let mut cpus = 0;
        if queues.iter().any(|&q| q > 1) {
            let map = self
                .ebpf
                .map_mut(MAP_CPUS)
                .ok_or(ProbeError::Missing(MAP_CPUS))?;
            let mut cpumap = CpuMap::try_from(map).map_err(map_err(MAP_CPUS))?;
            for cpu in 0..online_cpus() {
                // A CPU that is not possible or not online is refused: its queues' packets
                // then pass on the CPU they arrived on (the redirect's fallback).
                match cpumap.set(cpu, CPUMAP_QUEUE, None, 0) {
                    Ok(()) => cpus = cpu + 1,
                    Err(e) => {
                        tracing::warn!(cpu, error = %e, "cpumap entry refused");
                        break;
                    }
                }
            }
        }
        let map = self
            .ebpf
            .map_mut(MAP_SHAPE_LAYOUT)
            .ok_or(ProbeError::Missing(MAP_SHAPE_LAYOUT))?;
        let mut layout: Array<_, ShapeLayout> =
            Array::try_from(map).map_err(map_err(MAP_SHAPE_LAYOUT))?;
        let value = ShapeLayout {
            queues,
            cpus,
            _pad: 0,
        };
        layout.set(0, value, 0).map_err(map_err(MAP_SHAPE_LAYOUT))?;
        Ok(cpus)
    }
}
