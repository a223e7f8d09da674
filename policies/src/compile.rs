//! From a validated policy to kernel map entries: subscribers by prefix, each plan's label →
//! rule slot table, and the rules per (plan, slot, direction), for the rules in force at a
//! given local time (schedules). Pure: what it needs to know of the kernel (its maps' size,
//! its coarse clock's tick, whether frames may be changed at all) comes in as
//! [`CompileOptions`], so [`compile`] is tested without one; the daemon's loader writes the
//! result as it is into the idle set of maps and flips the live set.

use std::{collections::HashMap, fmt, net::IpAddr};

use crate::{Action, ClassRule, Policy, Target, Weekday};
use peerwarden_common::{
    Label,
    label::ALL_LABELS,
    policy::{
        ACTION_BLOCK, ACTION_MARK, ACTION_NONE, ACTION_POLICE, ACTION_SHAPE, MAX_PLANS, PlanSlots,
        RULE_SLOTS, Rule, SubscriberRef, rule_index,
    },
};

/// What the compilation needs to know about the kernel it compiles for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Subscriber indexes the maps were sized for.
    pub max_subscribers: u32,
    /// The kernel's coarse clock tick in nanoseconds (`CLOCK_MONOTONIC_COARSE`'s
    /// resolution: 4 ms at HZ=250, 10 ms at HZ=100), which the police buckets run on.
    pub tick_ns: u64,
    /// Observe-only (a mirror port): the program must not change a frame, so no DSCP
    /// rewrites and no shaping; a police or block still decides, and the observe program
    /// counts its drops.
    pub observe: bool,
}

/// Token-bucket depth when a rule gives none: 300 ms at the rule's rate, at least 16
/// frames. TCP through a police with a shallower bucket loses whole windows at once on
/// short round trips: in the lab a 10 mbit police gave 2.5 Mbit/s of goodput with 50 ms,
/// 9.6 Mbit/s with about 300 ms (docs/policies.md).
pub fn default_burst(rate_bytes_per_sec: u64) -> u64 {
    (rate_bytes_per_sec * 3 / 10).max(16 * 1514)
}

/// The depth a police bucket gets: `burst` as written (or [`default_burst`]), but at
/// least one tick (`tick_ns`, see [`CompileOptions::tick_ns`]) of the kernel's coarse clock
/// at `rate` (a bucket that holds less than a tick's refill loses the rest, so its rate
/// would not hold; the same rule as tc-tbf's "burst at least rate / HZ").
pub fn bucket_depth(rate_bytes_per_sec: u64, burst: Option<u64>, tick_ns: u64) -> u64 {
    let tick = rate_bytes_per_sec
        .saturating_mul(tick_ns)
        .div_ceil(1_000_000_000);
    burst
        .unwrap_or_else(|| default_burst(rate_bytes_per_sec))
        .max(tick)
}

/// A policy compiled for the kernel.
#[derive(Debug, Default)]
pub struct Compiled {
    /// IPv4 prefixes: address, prefix length, subscriber.
    pub v4: Vec<([u8; 4], u8, SubscriberRef)>,
    /// IPv6 prefixes.
    pub v6: Vec<([u8; 16], u8, SubscriberRef)>,
    /// Per plan index.
    pub plans: Vec<PlanSlots>,
    /// Rules by index (within one set); indexes not listed hold no rule.
    pub rules: Vec<(u32, Rule)>,
    /// Subscriber id → stable index.
    pub subscribers: Vec<(String, u32)>,
    /// Shaped (subscriber index, slot, direction, rate in bytes/s) for the HTB classes.
    pub shaped: Vec<(u32, u32, u32, u64)>,
    /// Whether the kernel steers shaped traffic into the HTB classes (a `shape` rule is
    /// in force, and the compilation is not for observe-only).
    pub shaping: bool,
}

/// Why a valid policy does not fit the kernel maps.
#[derive(Debug)]
pub enum CompileError {
    /// More plans than the maps hold.
    TooManyPlans(usize),
    /// A plan has more rules than slots.
    TooManyRules { plan: String, rules: usize },
    /// More subscribers than the maps were sized for.
    TooManySubscribers(u32),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::TooManyPlans(n) => {
                write!(
                    f,
                    "the policy has {n} plans; the kernel maps hold {MAX_PLANS}"
                )
            }
            CompileError::TooManyRules { plan, rules } => write!(
                f,
                "plan {plan:?} has {rules} class rules in force; the kernel holds {} per plan",
                RULE_SLOTS - 1
            ),
            CompileError::TooManySubscribers(max) => write!(
                f,
                "the policy has more subscribers than max_subscribers ({max}) in the config"
            ),
        }
    }
}

impl std::error::Error for CompileError {}

/// Stable subscriber indexes across reloads: a subscriber keeps its token buckets and
/// counters when the policy changes around it.
#[derive(Debug, Default)]
pub struct SubscriberIndex {
    by_id: HashMap<String, u32>,
    /// The id of each index in use (the reverse of `by_id`), for reports.
    by_index: Vec<Option<String>>,
    free: Vec<u32>,
    next: u32,
}

impl SubscriberIndex {
    /// The index of `id`, allocating one if it is new.
    fn get(&mut self, id: &str, max: u32) -> Result<u32, CompileError> {
        if let Some(i) = self.by_id.get(id) {
            return Ok(*i);
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None if self.next < max => {
                self.next += 1;
                self.next - 1
            }
            None => return Err(CompileError::TooManySubscribers(max)),
        };
        self.by_id.insert(id.to_string(), i);
        let slot = i as usize;
        if self.by_index.len() <= slot {
            self.by_index.resize(slot + 1, None);
        }
        self.by_index[slot] = Some(id.to_string());
        Ok(i)
    }

    /// Frees the indexes of subscribers no longer in `keep`.
    fn retain(&mut self, keep: &[(String, u32)]) {
        let live: std::collections::HashSet<&str> =
            keep.iter().map(|(id, _)| id.as_str()).collect();
        let gone: Vec<String> = self
            .by_id
            .keys()
            .filter(|id| !live.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(i) = self.by_id.remove(&id) {
                if let Some(slot) = self.by_index.get_mut(i as usize) {
                    *slot = None;
                }
                self.free.push(i);
            }
        }
    }

    /// The id of an index, for reports. A lookup, not a search: the daemon asks for every
    /// index after each reload.
    pub fn id_of(&self, index: u32) -> Option<&str> {
        self.by_index.get(index as usize)?.as_deref()
    }
}

/// The labels a rule's target covers.
fn labels_of(policy: &Policy, target: &Target) -> Vec<Label> {
    match target {
        Target::Class(c) => ALL_LABELS
            .iter()
            .copied()
            .filter(|l| l.class() == *c)
            .collect(),
        Target::Label(l) => vec![*l],
        Target::User(name) => policy
            .class(name)
            .map(|c| c.labels.clone())
            .unwrap_or_default(),
    }
}

/// Precedence of a target: later wins (class, then user class, then label).
fn rank(t: &Target) -> u8 {
    match t {
        Target::Class(_) => 0,
        Target::User(_) => 1,
        Target::Label(_) => 2,
    }
}

fn kernel_rule(
    action: Action,
    rate: Option<u64>,
    burst: Option<u64>,
    dscp: Option<u8>,
    tick_ns: u64,
) -> Rule {
    let (action, rate) = match (action, rate) {
        (Action::Block, _) => (ACTION_BLOCK, 0),
        (Action::Police, Some(r)) => (ACTION_POLICE, r),
        (Action::Shape, Some(r)) => (ACTION_SHAPE, r),
        (Action::Mark, _) => (ACTION_MARK, 0),
        // A rate limit on the other direction only: here, at most a mark.
        (_, None) if dscp.is_some() => (ACTION_MARK, 0),
        (_, None) => (ACTION_NONE, 0),
    };
    Rule {
        rate_bytes_per_sec: rate,
        burst_bytes: bucket_depth(rate, burst, tick_ns),
        action,
        dscp: dscp.unwrap_or(0),
        mark_too: u8::from(dscp.is_some() && (action == ACTION_POLICE || action == ACTION_SHAPE)),
        _pad: 0,
        htb_minor: u32::from(action == ACTION_SHAPE),
    }
}

/// A rule as observe-only installs it: the program must not change a frame, so no DSCP
/// rewrites (a mark does nothing); a police or block still decides, and the observe
/// program counts its drops.
fn observed(rule: Rule) -> Rule {
    Rule {
        action: if rule.action == ACTION_MARK {
            ACTION_NONE
        } else {
            rule.action
        },
        mark_too: 0,
        ..rule
    }
}

/// Compiles `policy` as in force on `day` at `minute` (its own time zone's local time),
/// for the kernel `options` describe.
pub fn compile(
    policy: &Policy,
    day: Weekday,
    minute: u16,
    index: &mut SubscriberIndex,
    options: &CompileOptions,
) -> Result<Compiled, CompileError> {
    let tick = options.tick_ns;
    let plans = policy.plans();
    if plans.len() > MAX_PLANS as usize {
        return Err(CompileError::TooManyPlans(plans.len()));
    }
    let mut out = Compiled::default();
    let mut plan_no = HashMap::new();
    let mut shape_slots: Vec<Vec<(u32, u32, u64)>> = Vec::new();
    for (p, plan) in plans.iter().enumerate() {
        plan_no.insert(plan.name.as_str(), p as u32);
        let mut rules: Vec<ClassRule> = plan.rules_at(day, minute);
        if rules.len() >= RULE_SLOTS as usize {
            return Err(CompileError::TooManyRules {
                plan: plan.name.clone(),
                rules: rules.len(),
            });
        }
        rules.sort_by_key(|r| rank(&r.target));
        let mut slots = PlanSlots::default();
        let mut shaped = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let slot = i as u32 + 1;
            for l in labels_of(policy, &r.target) {
                slots.slot_of_label[l.id() as usize] = slot as u8;
            }
            let dscp = r.dscp.map(|d| d.value());
            for (dir, rate) in [(0u32, r.up), (1u32, r.down)] {
                let rate = rate.map(|r| r.bytes_per_sec());
                let rule = kernel_rule(r.action, rate, r.burst, dscp, tick);
                if rule.action == ACTION_SHAPE {
                    shaped.push((slot, dir, rate.unwrap_or(0)));
                }
                if rule != Rule::default() {
                    let rule = if options.observe {
                        observed(rule)
                    } else {
                        rule
                    };
                    out.rules.push((rule_index(p as u32, slot, dir), rule));
                }
            }
        }
        // Slot 0: the plan's total rate, policed.
        for (dir, rate) in [(0u32, plan.rate.up), (1u32, plan.rate.down)] {
            let rule = kernel_rule(Action::Police, Some(rate.bytes_per_sec()), None, None, tick);
            out.rules.push((rule_index(p as u32, 0, dir), rule));
        }
        out.plans.push(slots);
        shape_slots.push(shaped);
    }
    let subscribers = policy.subscribers();
    out.subscribers.reserve_exact(subscribers.len());
    out.v4.reserve(subscribers.len());
    out.v6.reserve(subscribers.len());
    for s in subscribers {
        let i = index.get(&s.id, options.max_subscribers)?;
        let plan = plan_no.get(s.plan.as_str()).copied().unwrap_or(0);
        let r = SubscriberRef { index: i, plan };
        for prefix in &s.prefixes {
            match prefix.addr() {
                IpAddr::V4(a) => out.v4.push((a.octets(), prefix.prefix_len(), r)),
                IpAddr::V6(a) => out.v6.push((a.octets(), prefix.prefix_len(), r)),
            }
        }
        for &(slot, dir, rate) in &shape_slots[plan as usize] {
            out.shaped.push((i, slot, dir, rate));
        }
        out.subscribers.push((s.id.clone(), i));
    }
    index.retain(&out.subscribers);
    out.shaping = !options.observe
        && out
            .rules
            .iter()
            .any(|(_, r)| r.action == ACTION_SHAPE && r.htb_minor != 0);
    Ok(out)
}

/// For every plan's schedule entries in file order, whether it is open on `day` at
/// `minute`: the rules in force change only when one of these does, so a caller ticking
/// once a second compiles again only when this changes.
pub fn open_windows(policy: &Policy, day: Weekday, minute: u16) -> Vec<bool> {
    policy
        .plans()
        .iter()
        .flat_map(|p| p.schedule.iter().map(move |e| e.active_at(day, minute)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline, on a kernel with HZ=250.
    const INLINE: CompileOptions = CompileOptions {
        max_subscribers: 16,
        tick_ns: 4_000_000,
        observe: false,
    };

    #[test]
    fn a_bucket_is_at_least_one_coarse_clock_tick_deep() {
        // HZ=1000, 250 and 100.
        for tick in [1_000_000, 4_000_000, 10_000_000] {
            let rate = 12_500_000; // 100 mbit/s
            let tick_bytes = rate * tick / 1_000_000_000;
            // Written shallower than a tick: raised to one.
            assert!(bucket_depth(rate, Some(1514), tick) >= tick_bytes);
            // Deeper ones, and the default, as they are.
            assert_eq!(bucket_depth(rate, Some(4 << 20), tick), 4 << 20);
            assert_eq!(bucket_depth(rate, None, tick), default_burst(rate));
            assert_eq!(bucket_depth(1_000, Some(1514), tick), 1514);
        }
        // A 10 gbit police on a 10 ms tick: one tick's refill, not the 300 ms default.
        let rate = 1_250_000_000;
        assert_eq!(bucket_depth(rate, Some(1514), 10_000_000), 12_500_000);
    }

    const POLICY: &str = r#"
timezone: UTC
plans:
  home:
    rate: { down: 50mbit, up: 10mbit }
    classes:
      p2p: { down: 5mbit, up: 1mbit, dscp: LE, action: police }
      bittorrent.dht: { action: block }
      video: { dscp: AF41 }
    schedule:
      - { days: [mon-fri], hours: "18:00-23:00", classes: { p2p: { down: 2mbit } } }
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32, "2001:db8:1::/64"], plan: home }
  - { id: bob, prefixes: [100.64.1.20/32] }
default_plan: home
"#;

    fn policy() -> Policy {
        crate::load_str(POLICY, "test.yaml").expect("valid policy")
    }

    fn rule(c: &Compiled, plan: u32, label: Label, dir: u32) -> Rule {
        let slot = c.plans[plan as usize].slot_of_label[label.id() as usize] as u32;
        c.rules
            .iter()
            .find(|(i, _)| *i == rule_index(plan, slot, dir))
            .map(|(_, r)| *r)
            .unwrap_or_default()
    }

    #[test]
    fn rules_per_label_and_direction() {
        let mut index = SubscriberIndex::default();
        let c = compile(&policy(), Weekday::Sat, 20 * 60, &mut index, &INLINE).expect("compiles");
        let bt_down = rule(&c, 0, Label::Bittorrent, 1);
        assert_eq!(
            (bt_down.action, bt_down.rate_bytes_per_sec),
            (ACTION_POLICE, 5_000_000 / 8)
        );
        assert_eq!(
            (bt_down.dscp, bt_down.mark_too),
            (1, 1),
            "LE is DSCP 1, marked on pass"
        );
        assert_eq!(
            rule(&c, 0, Label::Bittorrent, 0).rate_bytes_per_sec,
            1_000_000 / 8
        );
        // The label rule outranks its class's.
        assert_eq!(rule(&c, 0, Label::BittorrentDht, 1).action, ACTION_BLOCK);
        assert_eq!(rule(&c, 0, Label::Hls, 1).action, ACTION_MARK);
        assert_eq!(rule(&c, 0, Label::Hls, 1).dscp, 34);
        // Web traffic only meets the plan's total (slot 0).
        assert_eq!(c.plans[0].slot_of_label[Label::Http.id() as usize], 0);
        let total = c
            .rules
            .iter()
            .find(|(i, _)| *i == rule_index(0, 0, 1))
            .expect("total")
            .1;
        assert_eq!(total.rate_bytes_per_sec, 50_000_000 / 8);
        assert_eq!(c.v4.len(), 2);
        assert_eq!(c.v6.len(), 1);
        assert_eq!(c.v6[0].1, 64);
    }

    #[test]
    fn observe_only_compiles_rules_that_change_no_frame() {
        let yaml = POLICY.replace(
            "video: { dscp: AF41 }",
            "video: { dscp: AF41 }\n      web: { down: 20mbit, action: shape }",
        );
        let policy = crate::load_str(&yaml, "t.yaml").expect("valid policy");
        let inline = compile(
            &policy,
            Weekday::Sat,
            0,
            &mut SubscriberIndex::default(),
            &INLINE,
        )
        .expect("compiles");
        let observe = CompileOptions {
            observe: true,
            ..INLINE
        };
        let observed = compile(
            &policy,
            Weekday::Sat,
            0,
            &mut SubscriberIndex::default(),
            &observe,
        )
        .expect("compiles");
        // Inline: video is marked, p2p policed and marked, web shaped into HTB.
        assert_eq!(rule(&inline, 0, Label::Hls, 1).action, ACTION_MARK);
        assert_eq!(rule(&inline, 0, Label::Bittorrent, 1).mark_too, 1);
        assert_eq!(rule(&inline, 0, Label::Http, 1).action, ACTION_SHAPE);
        assert!(inline.shaping);
        // Observe-only: no mark, no DSCP rewrite on pass, no steering into HTB; the police,
        // the block and the shape still decide, so the observe program can count drops.
        let hls = rule(&observed, 0, Label::Hls, 1);
        assert_eq!((hls.action, hls.mark_too), (ACTION_NONE, 0));
        let bt = rule(&observed, 0, Label::Bittorrent, 1);
        assert_eq!(
            (bt.action, bt.mark_too, bt.rate_bytes_per_sec),
            (ACTION_POLICE, 0, 625_000)
        );
        assert_eq!(
            rule(&observed, 0, Label::BittorrentDht, 1).action,
            ACTION_BLOCK
        );
        assert_eq!(rule(&observed, 0, Label::Http, 1).action, ACTION_SHAPE);
        assert!(!observed.shaping);
        assert!(
            observed
                .rules
                .iter()
                .all(|(_, r)| r.action != ACTION_MARK && r.mark_too == 0)
        );
        // Everything else as inline.
        assert_eq!(observed.plans, inline.plans);
        assert_eq!(observed.rules.len(), inline.rules.len());
        assert_eq!((observed.v4, observed.v6), (inline.v4, inline.v6));
        assert_eq!(observed.shaped, inline.shaped);
    }

    #[test]
    fn schedules_change_the_compiled_rate() {
        let mut index = SubscriberIndex::default();
        let off_peak =
            compile(&policy(), Weekday::Mon, 12 * 60, &mut index, &INLINE).expect("compiles");
        let peak =
            compile(&policy(), Weekday::Mon, 19 * 60, &mut index, &INLINE).expect("compiles");
        assert_eq!(
            rule(&off_peak, 0, Label::Bittorrent, 1).rate_bytes_per_sec,
            625_000
        );
        assert_eq!(
            rule(&peak, 0, Label::Bittorrent, 1).rate_bytes_per_sec,
            250_000
        );
        assert_eq!(
            rule(&peak, 0, Label::Bittorrent, 0).rate_bytes_per_sec,
            125_000,
            "up kept"
        );
    }

    #[test]
    fn open_windows_change_only_at_a_schedule_boundary() {
        let p = policy();
        // The plan's one window is open 18:00-23:00 on weekdays.
        let noon = open_windows(&p, Weekday::Mon, 12 * 60);
        assert_eq!(noon, open_windows(&p, Weekday::Mon, 17 * 60 + 59));
        assert_ne!(noon, open_windows(&p, Weekday::Mon, 18 * 60));
        assert_eq!(
            open_windows(&p, Weekday::Mon, 19 * 60),
            open_windows(&p, Weekday::Mon, 22 * 60 + 59)
        );
        assert_eq!(noon, open_windows(&p, Weekday::Sat, 19 * 60));
        let unscheduled = crate::load_str(
            "plans:\n  home:\n    rate: { down: 50mbit, up: 10mbit }\ndefault_plan: home\n",
            "t.yaml",
        )
        .expect("valid");
        assert!(open_windows(&unscheduled, Weekday::Mon, 19 * 60).is_empty());
    }

    #[test]
    fn subscriber_indexes_are_stable_and_bounded() {
        let mut index = SubscriberIndex::default();
        let a = compile(&policy(), Weekday::Mon, 0, &mut index, &INLINE).expect("compiles");
        let b = compile(&policy(), Weekday::Mon, 0, &mut index, &INLINE).expect("compiles");
        assert_eq!(a.subscribers, b.subscribers);
        for (id, i) in &a.subscribers {
            assert_eq!(index.id_of(*i), Some(id.as_str()));
        }
        // alice leaves, carol arrives: carol gets a new index, alice's is freed; dave,
        // arriving next, gets alice's old one.
        let alice = index.by_id["alice"];
        let with = |who: &str| {
            crate::load_str(&POLICY.replace("id: alice", who), "t.yaml").expect("valid")
        };
        let c =
            compile(&with("id: carol"), Weekday::Mon, 0, &mut index, &INLINE).expect("compiles");
        let carol = c
            .subscribers
            .iter()
            .find(|(id, _)| id == "carol")
            .expect("carol")
            .1;
        assert_ne!(carol, alice);
        assert_eq!(index.id_of(alice), None);
        assert_eq!(index.id_of(carol), Some("carol"));
        compile(&with("id: dave"), Weekday::Mon, 0, &mut index, &INLINE).expect("compiles");
        assert_eq!(index.id_of(alice), Some("dave"));
        assert_eq!(index.id_of(carol), None);
        assert_eq!(index.id_of(index.by_id["bob"]), Some("bob"));
        assert_eq!(index.id_of(99), None);
        let mut small = SubscriberIndex::default();
        assert!(matches!(
            compile(
                &policy(),
                Weekday::Mon,
                0,
                &mut small,
                &CompileOptions {
                    max_subscribers: 1,
                    ..INLINE
                }
            ),
            Err(CompileError::TooManySubscribers(1))
        ));
    }
}
