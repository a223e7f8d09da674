//! The checks of `mode`, `interfaces` and `subscriber_networks`: which interfaces each
//! mode needs, and the subscriber networks of observe mode.

use super::{Config, Mode};

/// Which interfaces each mode needs, and the subscriber networks of observe mode.
pub(super) fn check_mode(c: &Config) -> Vec<String> {
    let i = &c.interfaces;
    let mut out = Vec::new();
    match c.mode {
        Mode::Inline => {
            if i.downlink.is_empty() || i.uplink.is_empty() {
                out.push(
                    "interfaces: inline mode needs both downlink and uplink (or set mode: observe with interfaces: { mirror: IFACE })"
                        .into(),
                );
            }
            if i.mirror.is_some() {
                out.push(
                    "interfaces.mirror: only for mode: observe (inline mode uses downlink and uplink)"
                        .into(),
                );
            }
            if !c.subscriber_networks.is_empty() {
                out.push(
                    "subscriber_networks: only for mode: observe (inline mode knows the direction from the interface)"
                        .into(),
                );
            }
        }
        Mode::Observe => {
            if i.mirror.is_none() {
                out.push(
                    "interfaces: observe mode needs the mirror port: interfaces: { mirror: IFACE }"
                        .into(),
                );
            }
            if !i.downlink.is_empty() || !i.uplink.is_empty() {
                out.push(
                    "interfaces: observe mode uses only the mirror port; remove downlink and uplink"
                        .into(),
                );
            }
            if c.subscriber_networks.is_empty() && c.policy.is_none() {
                out.push(
                    "subscriber_networks: observe mode needs the subscribers' networks (e.g. [100.64.0.0/10]) or a policy with their prefixes, to tell up from down"
                        .into(),
                );
            }
        }
    }
    for n in &c.subscriber_networks {
        use peerwarden_policies::PrefixError;
        let why = match n.parse::<peerwarden_policies::Prefix>() {
            Ok(_) => continue,
            Err(PrefixError::Syntax) => "expected ADDRESS/LENGTH".to_string(),
            Err(PrefixError::LengthTooLong { max }) => format!("the length is at most {max}"),
            Err(PrefixError::HostBits { network }) => {
                format!("host bits set; did you mean {network}?")
            }
        };
        out.push(format!(
            "subscriber_networks: {n:?} is not a network ({why})"
        ));
    }
    let max = peerwarden_common::observe::MAX_OBSERVE_NETWORKS as usize;
    if c.subscriber_networks.len() > max {
        out.push(format!(
            "subscriber_networks: {} networks; at most {max}",
            c.subscriber_networks.len()
        ));
    }
    out
}

/// The sections the mode's checks read: a problem found there is dropped by `config check`
/// when one of them could not be read (its default would make the problem up).
pub(super) const MODE_KEYS: &[&str] = &["mode", "interfaces", "subscriber_networks", "policy"];
