//! The policy maps: a compiled policy written as it is into the idle one of two sets, then
//! made live with one write of the control entry (the A/B flip); what the adopted maps of
//! an earlier run hold; turning enforcement off. What the entries mean is decided by the
//! compiler (`peerwarden_policies::compile`, given [`Probe::compile_options`]), not here.

use std::collections::HashSet;

use aya::{
    Ebpf,
    maps::{
        Array, IterableMap as _, MapData,
        lpm_trie::{Key, LpmTrie},
    },
};
use peerwarden_common::policy::{
    MAX_PLANS, PlanSlots, PolicyControl, RULES_PER_SET, Rule, SubscriberRef,
};
use peerwarden_policies::compile::{CompileOptions, Compiled};

use super::{
    MAP_CONTROL, MAP_PLANS, MAP_RULES, MAP_SUBS_V4, MAP_SUBS_V6, Probe, ProbeError, batch, map_err,
    take,
};

/// The policy maps, owned outside `Ebpf` so they can be written while readers share the
/// probe. `installed[set]` remembers what each set holds, to clear it before reuse.
pub(super) struct PolicyMaps {
    control: Array<MapData, PolicyControl>,
    v4: LpmTrie<MapData, [u8; 5], SubscriberRef>,
    v6: LpmTrie<MapData, [u8; 17], SubscriberRef>,
    plans: Array<MapData, PlanSlots>,
    rules: Array<MapData, Rule>,
    installed: [Installed; 2],
    generation: u32,
    active: u32,
}

#[derive(Default)]
struct Installed {
    v4: Vec<Key<[u8; 5]>>,
    v6: Vec<Key<[u8; 17]>>,
    plans: usize,
    rules: Vec<u32>,
}

impl PolicyMaps {
    /// The policy maps taken out of the loaded object, nothing installed yet.
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<PolicyMaps, ProbeError> {
        Ok(PolicyMaps {
            control: Array::try_from(take(ebpf, MAP_CONTROL)?).map_err(map_err(MAP_CONTROL))?,
            v4: LpmTrie::try_from(take(ebpf, MAP_SUBS_V4)?).map_err(map_err(MAP_SUBS_V4))?,
            v6: LpmTrie::try_from(take(ebpf, MAP_SUBS_V6)?).map_err(map_err(MAP_SUBS_V6))?,
            plans: Array::try_from(take(ebpf, MAP_PLANS)?).map_err(map_err(MAP_PLANS))?,
            rules: Array::try_from(take(ebpf, MAP_RULES)?).map_err(map_err(MAP_RULES))?,
            installed: Default::default(),
            generation: 0,
            active: 0,
        })
    }
}

impl Probe {
    /// What a policy compiled for this probe must fit: its maps' size, the kernel's coarse
    /// clock tick, and whether it is observe-only (no frame changed).
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            max_subscribers: self.options.max_subscribers,
            tick_ns: crate::ktime::coarse_tick_ns(),
            observe: self.observe,
        }
    }

    /// Installs a compiled policy as it is (compile it with [`Probe::compile_options`]):
    /// fills the idle set of maps, then makes it live with one write of the control entry.
    /// Returns the new generation.
    pub fn install_policy(&self, c: &Compiled) -> Result<u32, ProbeError> {
        let mut m = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let set = if m.generation == 0 { 0 } else { 1 - m.active };
        let old = std::mem::take(&mut m.installed[set as usize]);
        // The idle set still holds the policy of two installs ago, usually almost the same
        // one: entries the new policy has again are overwritten in place, and only the
        // others deleted, which halves the map writes of a reload (a 100,000-subscriber
        // policy: 200,000 prefixes; see docs/benchmarks.md).
        let v4: Vec<Key<[u8; 5]>> = c
            .v4
            .iter()
            .map(|(a, len, _)| Key::new(8 + u32::from(*len), [set as u8, a[0], a[1], a[2], a[3]]))
            .collect();
        let v6: Vec<Key<[u8; 17]>> =
            c.v6.iter()
                .map(|(a, len, _)| {
                    let mut d = [0u8; 17];
                    d[0] = set as u8;
                    d[1..].copy_from_slice(a);
                    Key::new(8 + u32::from(*len), d)
                })
                .collect();
        let rules = c.rules.iter().map(|(i, _)| *i).collect();
        let now = Installed {
            v4,
            v6,
            plans: c.plans.len(),
            rules,
        };
        let keep_v4: HashSet<(u32, [u8; 5])> =
            now.v4.iter().map(|k| (k.prefix_len(), k.data())).collect();
        for k in old
            .v4
            .iter()
            .filter(|k| !keep_v4.contains(&(k.prefix_len(), k.data())))
        {
            let _ = m.v4.remove(k);
        }
        let keep_v6: HashSet<(u32, [u8; 17])> =
            now.v6.iter().map(|k| (k.prefix_len(), k.data())).collect();
        for k in old
            .v6
            .iter()
            .filter(|k| !keep_v6.contains(&(k.prefix_len(), k.data())))
        {
            let _ = m.v6.remove(k);
        }
        let keep_rules: HashSet<u32> = now.rules.iter().copied().collect();
        for i in old.rules.iter().filter(|i| !keep_rules.contains(i)) {
            m.rules
                .set(set * RULES_PER_SET + i, Rule::default(), 0)
                .map_err(map_err(MAP_RULES))?;
        }
        for p in c.plans.len() as u32..old.plans as u32 {
            m.plans
                .set(set * MAX_PLANS + p, PlanSlots::default(), 0)
                .map_err(map_err(MAP_PLANS))?;
        }
        for (p, slots) in c.plans.iter().enumerate() {
            m.plans
                .set(set * MAX_PLANS + p as u32, slots, 0)
                .map_err(map_err(MAP_PLANS))?;
        }
        for (i, rule) in &c.rules {
            m.rules
                .set(set * RULES_PER_SET + i, rule, 0)
                .map_err(map_err(MAP_RULES))?;
        }
        // One batch syscall per 16,384 prefixes where the kernel has them.
        let refs: Vec<SubscriberRef> = c.v4.iter().map(|(_, _, r)| *r).collect();
        if !batch::update(MAP_SUBS_V4, m.v4.map(), &now.v4, &refs)? {
            for (k, r) in now.v4.iter().zip(&refs) {
                m.v4.insert(k, r, 0).map_err(map_err(MAP_SUBS_V4))?;
            }
        }
        let refs: Vec<SubscriberRef> = c.v6.iter().map(|(_, _, r)| *r).collect();
        if !batch::update(MAP_SUBS_V6, m.v6.map(), &now.v6, &refs)? {
            for (k, r) in now.v6.iter().zip(&refs) {
                m.v6.insert(k, r, 0).map_err(map_err(MAP_SUBS_V6))?;
            }
        }
        m.installed[set as usize] = now;
        // The swap: one 16-byte write that the XDP program reads as a whole.
        let generation = m.generation.wrapping_add(1).max(1);
        m.control
            .set(
                0,
                PolicyControl {
                    generation,
                    active_set: set,
                    shaping: u32::from(c.shaping),
                    _reserved: 0,
                },
                0,
            )
            .map_err(map_err(MAP_CONTROL))?;
        m.generation = generation;
        m.active = set;
        Ok(generation)
    }

    /// The active set and generation the adopted control entry holds, and what each set
    /// holds, so that the next install fills the idle set as if this daemon had written it.
    pub(super) fn restore_policy_bookkeeping(&mut self) -> Result<(), ProbeError> {
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
}
