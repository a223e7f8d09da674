//! The network map (RFC 7285 section 11.2.1): PIDs and their prefixes, the longest-prefix
//! lookup of an address into its PID (section 11.2.2), and the map's version tag.
//!
//! PIDs come from the policy (one per plan, `plan-<name>`, holding its subscribers'
//! prefixes) or from `alto.pids`; `default` holds `0.0.0.0/0` and `::/0`, so every
//! address falls in some PID (the RFC's completeness property). Subscribers' prefixes are
//! disjoint (the policy checks it) and `alto.pids` lists a prefix once (the config check),
//! so no prefix is in two PIDs (the non-overlapping property).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
};

use peerwarden_policies::{Policy, Prefix};
use sha2::{Digest as _, Sha256};

use crate::{
    media,
    model::{NetworkMapMeta, NetworkMapResponse, VersionTag},
};

/// The PID of every address outside the others.
pub const DEFAULT_PID: &str = "default";
/// The prefix of a PID made for a plan.
pub const PLAN_PREFIX: &str = "plan-";

/// Whether `name` is a PID name (section 10.1): 1 to 64 of alphanumerics, `-`, `:`, `@`,
/// `_` (the `.` the RFC reserves is left out).
pub fn valid_pid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'@' | b'_'))
}

/// One PID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pid {
    /// Its name.
    pub name: String,
    /// Its prefixes, sorted.
    pub prefixes: Vec<Prefix>,
    /// Whether it is the default PID (the rest of the internet).
    pub transit: bool,
}

/// A network map with its lookup table and version tag.
#[derive(Clone, Debug)]
pub struct NetworkMap {
    /// The PIDs, by name; `default` among them.
    pids: Vec<Pid>,
    /// (is IPv4, prefix length) → network bits → index in `pids`.
    table: BTreeMap<(bool, std::cmp::Reverse<u8>), HashMap<u128, usize>>,
    tag: String,
}

/// The PID name of plan `plan`: `plan-` and the name with characters a PID name may not
/// hold replaced by `_`, cut to 64.
pub fn plan_pid(plan: &str) -> String {
    let mut s: String = PLAN_PREFIX.to_string();
    s.extend(plan.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '@' | '_') {
            c
        } else {
            '_'
        }
    }));
    s.truncate(64);
    s
}

impl NetworkMap {
    /// PIDs from `config_pids` when given (prefixes that do not parse are left out: the
    /// config check refuses them first), else one per plan of `policy`'s subscribers; and
    /// the default PID.
    pub fn build(
        policy: Option<&Policy>,
        config_pids: Option<&BTreeMap<String, Vec<String>>>,
    ) -> NetworkMap {
        let mut groups: BTreeMap<String, Vec<Prefix>> = BTreeMap::new();
        match (config_pids, policy) {
            (Some(pids), _) => {
                for (name, prefixes) in pids {
                    let parsed = prefixes.iter().filter_map(|p| p.parse::<Prefix>().ok());
                    groups.entry(name.clone()).or_default().extend(parsed);
                }
            }
            (None, Some(policy)) => {
                // Two plans whose names differ only in characters a PID name cannot hold
                // would share a PID; the second gets a suffix instead.
                let mut names: HashMap<&str, String> = HashMap::new();
                let mut taken: HashSet<String> = HashSet::new();
                for plan in policy.plans() {
                    let base = plan_pid(&plan.name);
                    let mut name = base.clone();
                    for n in 2.. {
                        if !taken.contains(&name) {
                            break;
                        }
                        name = format!("{}-{n}", &base[..base.len().min(58)]);
                    }
                    taken.insert(name.clone());
                    names.insert(&plan.name, name);
                }
                for s in policy.subscribers() {
                    if let Some(name) = names.get(s.plan.as_str()) {
                        groups.entry(name.clone()).or_default().extend(&s.prefixes);
                    }
                }
            }
            (None, None) => {}
        }
        let mut pids: Vec<Pid> = groups
            .into_iter()
            .filter(|(name, _)| name != DEFAULT_PID)
            .map(|(name, mut prefixes)| {
                prefixes.sort();
                prefixes.dedup();
                Pid {
                    name,
                    prefixes,
                    transit: false,
                }
            })
            .collect();
        // The whole space, but for a family a PID of the network already covers whole.
        let all = |s: &str| s.parse::<Prefix>().ok();
        let taken = |p: &Prefix| pids.iter().any(|pid| pid.prefixes.contains(p));
        let default: Vec<Prefix> = [all("0.0.0.0/0"), all("::/0")]
            .into_iter()
            .flatten()
            .filter(|p| !taken(p))
            .collect();
        pids.push(Pid {
            name: DEFAULT_PID.to_string(),
            prefixes: default,
            transit: true,
        });
        pids.sort_by(|a, b| a.name.cmp(&b.name));
        let mut table: BTreeMap<_, HashMap<u128, usize>> = BTreeMap::new();
        for (i, pid) in pids.iter().enumerate() {
            for p in &pid.prefixes {
                table
                    .entry((p.is_ipv4(), std::cmp::Reverse(p.prefix_len())))
                    .or_default()
                    .insert(bits(p.addr()), i);
            }
        }
        let tag = tag_of(&pids);
        NetworkMap { pids, table, tag }
    }

    /// The PIDs, by name.
    pub fn pids(&self) -> &[Pid] {
        &self.pids
    }

    /// The PID with this name.
    pub fn pid(&self, name: &str) -> Option<&Pid> {
        self.pids.iter().find(|p| p.name == name)
    }

    /// The PID holding `addr` by longest-prefix match (IPv4-mapped IPv6 as IPv4).
    pub fn pid_of(&self, addr: IpAddr) -> &str {
        self.pid_index(addr)
            .and_then(|i| self.pids.get(i))
            .map_or(DEFAULT_PID, |p| p.name.as_str())
    }

    fn pid_index(&self, addr: IpAddr) -> Option<usize> {
        let addr = addr.to_canonical();
        let (v4, width) = (addr.is_ipv4(), if addr.is_ipv4() { 32 } else { 128 });
        let b = bits(addr);
        // Longest first: the table is ordered by family, then length descending.
        self.table
            .range((v4, std::cmp::Reverse(u8::MAX))..=(v4, std::cmp::Reverse(0)))
            .find_map(|(&(_, std::cmp::Reverse(len)), by_bits)| {
                by_bits.get(&mask(b, len, width)).copied()
            })
    }

    /// The version tag's `tag`: SHA-256 (hex) of the PIDs' names and prefixes, so it
    /// changes when and only when the map does.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The version tag.
    pub fn vtag(&self) -> VersionTag {
        VersionTag {
            resource_id: media::id::NETWORK_MAP.to_string(),
            tag: self.tag.clone(),
        }
    }

    /// The network map response, with the PIDs in `only` (every PID when `None`) and the
    /// address types in `types` (both when `None`).
    pub fn response(
        &self,
        only: Option<&[String]>,
        types: Option<&[String]>,
    ) -> NetworkMapResponse {
        let mut network_map = BTreeMap::new();
        for pid in &self.pids {
            if only.is_some_and(|o| !o.contains(&pid.name)) {
                continue;
            }
            let mut group: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for p in &pid.prefixes {
                let ty = if p.is_ipv4() { "ipv4" } else { "ipv6" };
                if types.is_some_and(|t| !t.iter().any(|x| x == ty)) {
                    continue;
                }
                group.entry(ty.to_string()).or_default().push(p.to_string());
            }
            network_map.insert(pid.name.clone(), group);
        }
        NetworkMapResponse {
            meta: NetworkMapMeta { vtag: self.vtag() },
            network_map,
        }
    }
}

fn tag_of(pids: &[Pid]) -> String {
    let mut h = Sha256::new();
    for pid in pids {
        h.update(pid.name.as_bytes());
        h.update(b"\n");
        for p in &pid.prefixes {
            h.update(p.to_string().as_bytes());
            h.update(b" ");
        }
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Keeps the top `len` of `width` bits.
fn mask(b: u128, len: u8, width: u8) -> u128 {
    let host = u32::from(width.saturating_sub(len));
    if host >= 128 {
        return 0;
    }
    b & (u128::MAX << host)
}
