//! Loading the object: the maps sized from the config ([`ProbeOptions`]), every program
//! loaded (verified) but not attached, the maps user space writes taken out of `Ebpf`; and
//! the same with an instance's pinned maps, adopted when they fit this build.

use std::sync::Mutex;

use aya::{
    EbpfLoader,
    maps::{HashMap, RingBuf},
    programs::{SchedClassifier, Xdp},
};
use peerwarden_common::{
    flow::LABELLED_PER_FLOWS,
    policy::{DEFAULT_MAX_SUBSCRIBERS, RULE_SLOTS, SUB_COUNTER_SLOTS},
};
use tracing::{info, warn};

use super::{
    MAP_BUCKETS, MAP_FLOWS, MAP_LABELLED, MAP_SAMPLES, MAP_SUB_COUNTERS, MAP_SUB_SEEN, MAP_SUBS_V4,
    MAP_SUBS_V6, MAP_VERDICTS, PROBE_OBJECT, PROG_DOWNLINK, PROG_OBSERVE, PROG_PASS,
    PROG_TC_DOWNLINK, PROG_TC_UPLINK, PROG_UPLINK, Probe, ProbeError, SeenMap, UsageMap,
    attach::{ObserveNets, Pins},
    map_err,
    pins::{self, Found, PinDir},
    policy::PolicyMaps,
    program_err, program_of, take,
};

/// The `max_entries` the config sets: the flow table, and the policy maps by subscribers
/// (two sets, a few prefixes per subscriber); the labels of evicted flows by the flow table.
fn max_entries(options: ProbeOptions) -> [(&'static str, u32); 7] {
    let subs = options.max_subscribers.max(1);
    [
        (MAP_FLOWS, options.flow_table_size),
        (
            MAP_LABELLED,
            (options.flow_table_size / LABELLED_PER_FLOWS).max(1),
        ),
        (MAP_SUBS_V4, subs.saturating_mul(4)),
        (MAP_SUBS_V6, subs.saturating_mul(4)),
        (MAP_BUCKETS, subs.saturating_mul(RULE_SLOTS * 2)),
        (MAP_SUB_COUNTERS, subs.saturating_mul(SUB_COUNTER_SLOTS)),
        (MAP_SUB_SEEN, subs),
    ]
}

/// How the probe's maps are sized.
#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    /// Entries of the LRU flow table.
    pub flow_table_size: u32,
    /// Subscribers the policy maps hold (buckets and counters are preallocated for them).
    pub max_subscribers: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            flow_table_size: 1 << 20,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
        }
    }
}

impl Probe {
    /// Loads the object with a flow table of `flow_table_size` entries and loads (verifies)
    /// its programs without attaching them.
    pub fn load(flow_table_size: u32) -> Result<Probe, ProbeError> {
        Probe::load_with(ProbeOptions {
            flow_table_size,
            ..ProbeOptions::default()
        })
    }

    /// Loads the object with maps sized by `options`.
    pub fn load_with(options: ProbeOptions) -> Result<Probe, ProbeError> {
        Probe::load_inner(options, None)
    }

    /// Loads the object; with `pin_dir`, the maps of [`pins::PINNED_MAPS`] are opened
    /// from (or created and pinned in) that directory.
    fn load_inner(options: ProbeOptions, pin_dir: Option<&PinDir>) -> Result<Probe, ProbeError> {
        let mut loader = EbpfLoader::new();
        for (map, n) in max_entries(options) {
            loader.map_max_entries(map, n);
        }
        if let Some(dir) = pin_dir {
            for map in pins::PINNED_MAPS {
                loader.map_pin_path(map, dir.map_path(map));
            }
        }
        let mut ebpf = loader.load(PROBE_OBJECT)?;
        for name in [PROG_DOWNLINK, PROG_UPLINK, PROG_PASS, PROG_OBSERVE] {
            let prog: &mut Xdp = program_of(&mut ebpf, name)?;
            prog.load().map_err(program_err(name))?;
        }
        for name in [PROG_TC_UPLINK, PROG_TC_DOWNLINK] {
            let prog: &mut SchedClassifier = program_of(&mut ebpf, name)?;
            prog.load().map_err(program_err(name))?;
        }
        let samples =
            RingBuf::try_from(take(&mut ebpf, MAP_SAMPLES)?).map_err(map_err(MAP_SAMPLES))?;
        let verdicts =
            HashMap::try_from(take(&mut ebpf, MAP_VERDICTS)?).map_err(map_err(MAP_VERDICTS))?;
        let policy = PolicyMaps::take(&mut ebpf)?;
        let sub_counters = match take(&mut ebpf, MAP_SUB_COUNTERS)? {
            aya::maps::Map::Array(data) => UsageMap::new(data)?,
            _ => return Err(ProbeError::Missing(MAP_SUB_COUNTERS)),
        };
        let sub_seen = match take(&mut ebpf, MAP_SUB_SEEN)? {
            aya::maps::Map::Array(data) => SeenMap::new(data)?,
            _ => return Err(ProbeError::Missing(MAP_SUB_SEEN)),
        };
        let observe_nets = ObserveNets::take(&mut ebpf)?;
        Ok(Probe {
            ebpf,
            links: Vec::new(),
            tc_links: Vec::new(),
            samples: Mutex::new(Some(samples)),
            verdicts: Mutex::new(verdicts),
            policy: Mutex::new(policy),
            sub_counters,
            sub_seen,
            options,
            observe: false,
            observe_nets: Mutex::new(observe_nets),
            pins: None,
        })
    }

    /// How the maps were sized.
    pub fn options(&self) -> ProbeOptions {
        self.options
    }

    /// Loads the object with the maps of instance `dir`: pinned maps are reused when all
    /// are there and fit this build (otherwise the load is refused with the reason), new
    /// maps are created and pinned when none are. Links are adopted or pinned by
    /// [`Probe::attach`] and [`Probe::attach_tc_egress`].
    pub fn load_pinned(options: ProbeOptions, dir: &PinDir) -> Result<Probe, ProbeError> {
        let found = dir.found()?;
        if found == Found::Complete {
            let shapes = pins::object_shapes(PROBE_OBJECT, &max_entries(options)).map_err(|e| {
                ProbeError::Adopt {
                    program: "object",
                    detail: e.to_string(),
                }
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
}
