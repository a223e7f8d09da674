//! Observe-only mode (`mode: observe`): the daemon on a mirror (SPAN) port. One XDP program,
//! `xdp_observe`, sees copies of both directions on the `mirror` interface; it takes a
//! packet's direction from the subscriber networks (the config's `subscriber_networks` and
//! the policy's prefixes), classifies and counts exactly as inline, and passes every frame
//! unchanged. The policy is loaded for subscriber names and accounting: what it would have
//! dropped is counted (`observe_would_drop`), nothing is enforced, no shaping is set up and
//! no DSCP is rewritten (the policy is compiled for observe-only, see
//! `Probe::compile_options` and `peerwarden_policies::compile::CompileOptions::observe`).

use std::net::IpAddr;

use anyhow::Context as _;
use peerwarden_policies::{Policy, Prefix};

use crate::{
    config::Config,
    probe::{Attachment, Probe},
};

/// Attaches the observe program to the config's mirror interface (checked by the daemon
/// before anything is loaded); before any policy is installed, so that no policy with DSCP
/// rewrites ever reaches the maps.
pub fn attach(probe: &mut Probe, config: &Config) -> anyhow::Result<Attachment> {
    let mirror = config
        .interfaces
        .mirror
        .as_deref()
        .context("observe mode needs interfaces.mirror")?;
    let a = probe
        .attach_observe(mirror)
        .with_context(|| format!("attaching the observe program to {mirror}"))?;
    Ok(a)
}

/// The networks that tell up from down: the config's, then every subscriber prefix of
/// `policy`, without duplicates.
pub fn networks(configured: &[Prefix], policy: Option<&Policy>) -> Vec<(IpAddr, u8)> {
    let mut out: Vec<Prefix> = configured.to_vec();
    if let Some(p) = policy {
        out.extend(
            p.subscribers()
                .iter()
                .flat_map(|s| s.prefixes.iter().copied()),
        );
    }
    out.sort();
    out.dedup();
    out.iter().map(|p| (p.addr(), p.prefix_len())).collect()
}

/// Writes [`networks`] into the observe program's tries.
pub fn set_networks(
    probe: &Probe,
    configured: &[Prefix],
    policy: Option<&Policy>,
) -> anyhow::Result<()> {
    probe
        .set_observe_networks(&networks(configured, policy))
        .context("writing the subscriber networks of observe mode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_join_the_config_and_the_policy_without_duplicates() {
        let policy = peerwarden_policies::load_str(
            "plans: { p: { rate: { down: 10mbit, up: 1mbit } } }\n\
             subscribers:\n\
             - { id: a, prefixes: [100.64.1.10/32, 2001:db8:1::10/128], plan: p }\n\
             - { id: b, prefixes: [100.64.2.0/24], plan: p }\n\
             default_plan: p\n",
            "test",
        )
        .expect("valid policy");
        // The /24 twice (config and policy): written once.
        let configured: Vec<Prefix> = ["100.64.0.0/10", "100.64.2.0/24"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let n = networks(&configured, Some(&policy));
        let shown: Vec<String> = n.iter().map(|(a, l)| format!("{a}/{l}")).collect();
        assert_eq!(
            shown,
            [
                "100.64.0.0/10",
                "100.64.1.10/32",
                "100.64.2.0/24",
                "2001:db8:1::10/128"
            ],
            "sorted, the config's and the policy's"
        );
        assert_eq!(networks(&configured, None).len(), 2);
    }
}
