//! The policy in force in the kernel: [`Enforcer`] compiles the active policy
//! ([`peerwarden_policies::compile`]) for the probe's kernel, installs it (HTB classes, then
//! the maps), and compiles again when a schedule window opens or closes.

use peerwarden_common::policy::{PlanSlots, Rule};
use peerwarden_policies::{
    Policy,
    compile::{Compiled, SubscriberIndex, compile, open_windows},
};

/// Keeps the kernel's policy maps (and the HTB classes of `shape` rules) in step with the
/// active policy and the clock.
pub struct Enforcer {
    probe: std::sync::Arc<crate::probe::Probe>,
    clock: std::sync::Arc<crate::policy_clock::PolicyClock>,
    shaper: Option<std::sync::Mutex<crate::shaping::Shaper>>,
    index: std::sync::Mutex<SubscriberIndex>,
    /// The policy last installed, and the rules it compiled to, to re-install only when a
    /// schedule changes them. One lock around compile and install: a schedule tick never
    /// installs a policy older than the one a reload just put in.
    installed: std::sync::Mutex<Option<Installed>>,
}

struct Installed {
    policy: std::sync::Arc<Policy>,
    rules: Vec<(u32, Rule)>,
    plans: Vec<PlanSlots>,
    /// The schedule windows open when they were compiled (see [`open_windows`]).
    windows: Vec<bool>,
}

impl Enforcer {
    /// An enforcer writing into `probe`'s maps.
    pub fn new(
        probe: std::sync::Arc<crate::probe::Probe>,
        clock: std::sync::Arc<crate::policy_clock::PolicyClock>,
    ) -> Enforcer {
        Enforcer {
            probe,
            clock,
            shaper: None,
            index: Default::default(),
            installed: Default::default(),
        }
    }

    /// Also keeps `shaper`'s HTB classes in step (the daemon; tests of the maps alone go
    /// without).
    pub fn with_shaper(mut self, shaper: crate::shaping::Shaper) -> Enforcer {
        self.shaper = Some(std::sync::Mutex::new(shaper));
        self
    }

    fn compile_now(&self, policy: &Policy) -> anyhow::Result<(Compiled, Vec<bool>)> {
        let (day, minute) = self
            .clock
            .local(policy.timezone())
            .map_err(anyhow::Error::msg)?;
        let windows = open_windows(policy, day, minute);
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let c = compile(
            policy,
            day,
            minute,
            &mut index,
            &self.probe.compile_options(),
        )?;
        Ok((c, windows))
    }

    /// Which schedule windows are open now, for `tick` to skip the compile when none
    /// opened or closed (a 100,000-subscriber compile each second cost 7-8% of a core).
    fn windows_now(&self, policy: &Policy) -> anyhow::Result<Vec<bool>> {
        let (day, minute) = self
            .clock
            .local(policy.timezone())
            .map_err(anyhow::Error::msg)?;
        Ok(open_windows(policy, day, minute))
    }

    /// HTB classes first, then the maps: a class exists before the kernel steers into it.
    fn install(&self, c: &Compiled) -> anyhow::Result<u32> {
        if let Some(shaper) = &self.shaper {
            shaper
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sync(&c.shaped)?;
        }
        Ok(self.probe.install_policy(c)?)
    }

    /// Compiles `policy` for the current local time and installs it.
    pub fn apply(&self, policy: &Policy) -> anyhow::Result<()> {
        let mut installed = self.installed.lock().unwrap_or_else(|p| p.into_inner());
        let (c, windows) = self.compile_now(policy)?;
        let generation = self.install(&c)?;
        tracing::info!(
            generation,
            subscribers = c.subscribers.len(),
            rules = c.rules.len(),
            shaped = c.shaped.len(),
            "policy installed in the kernel"
        );
        *installed = Some(Installed {
            policy: std::sync::Arc::new(policy.clone()),
            rules: c.rules,
            plans: c.plans,
            windows,
        });
        Ok(())
    }

    /// Re-installs the last applied policy if the rules in force changed since it was
    /// installed (a schedule window opened or closed, or the clock was moved). Returns
    /// whether it did.
    pub fn tick(&self) -> anyhow::Result<bool> {
        self.tick_after(&|| ())
    }

    /// [`Enforcer::tick`] after `before` (the schedule clock's move), both under the lock
    /// the once-a-second tick takes: the tick runs before the move or after this
    /// evaluation, never between them.
    pub fn tick_after(&self, before: &dyn Fn()) -> anyhow::Result<bool> {
        let mut installed = self.installed.lock().unwrap_or_else(|p| p.into_inner());
        before();
        let Some(last) = installed.as_mut() else {
            return Ok(false);
        };
        if self.windows_now(&last.policy)? == last.windows {
            return Ok(false);
        }
        let (c, windows) = self.compile_now(&last.policy)?;
        last.windows = windows;
        if last.rules == c.rules && last.plans == c.plans {
            return Ok(false);
        }
        let generation = self.install(&c)?;
        tracing::info!(
            generation,
            "schedule changed the rules in force; policy re-installed"
        );
        last.rules = c.rules;
        last.plans = c.plans;
        Ok(true)
    }

    /// Removes the HTB qdiscs (at shutdown; also done when the enforcer is dropped).
    pub fn remove_shaping(&self) -> anyhow::Result<()> {
        if let Some(shaper) = &self.shaper {
            shaper.lock().unwrap_or_else(|p| p.into_inner()).remove()?;
        }
        Ok(())
    }

    /// The subscriber id of a stable index.
    pub fn subscriber_id(&self, index: u32) -> Option<String> {
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .id_of(index)
            .map(str::to_string)
    }
}
