//! The responses, made from the live policy: [`Alto`] keeps the network map it built for
//! the policy it was last asked about and builds again only when the policy is another
//! one (a reload), so requests between reloads cost a lookup, not a rebuild.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use peerwarden_policies::Policy;
use serde_json::Number;

use crate::{
    AltoConfig,
    cost::{self, cost_type},
    error::AltoError,
    media::{self, cost_type as names, id, path},
    model::{
        Capabilities, CostMapData, CostMode, EndpointCostMeta, EndpointCostResponse,
        InfoResourceDirectory, IrdMeta, IrdResourceEntry,
    },
    network::NetworkMap,
    request,
};

/// What is built from one policy.
#[derive(Debug)]
pub struct Maps {
    /// The network map.
    pub network: NetworkMap,
}

/// A policy (none loaded) and the maps built from it.
type Built = (Option<Arc<Policy>>, Arc<Maps>);

/// The ALTO server's state: its configuration and the maps of the last policy seen.
#[derive(Debug)]
pub struct Alto {
    config: AltoConfig,
    /// The policy the maps were built from (kept, so its address is not reused) and them.
    cache: Mutex<Option<Built>>,
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Alto {
    /// A server with the `alto` section of the configuration.
    pub fn new(config: AltoConfig) -> Alto {
        Alto {
            config,
            cache: Mutex::new(None),
        }
    }

    /// The maps of `policy` (none loaded: only the default PID, or `alto.pids`).
    pub fn maps(&self, policy: Option<&Arc<Policy>>) -> Arc<Maps> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let same = |seen: &Option<Arc<Policy>>| match (seen, policy) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            // PIDs from the config do not depend on the policy.
            _ => self.config.pids.is_some(),
        };
        if let Some((seen, maps)) = cache.as_ref()
            && same(seen)
        {
            return maps.clone();
        }
        let maps = Arc::new(Maps {
            network: NetworkMap::build(policy.map(|p| p.as_ref()), self.config.pids.as_ref()),
        });
        *cache = Some((policy.cloned(), maps.clone()));
        maps
    }

    /// The information resource directory (section 9.2).
    pub fn directory(&self) -> InfoResourceDirectory {
        let entry = |uri: &str, media: &str, accepts: Option<&str>, caps: Option<Capabilities>| {
            IrdResourceEntry {
                uri: uri.to_string(),
                media_type: media.to_string(),
                accepts: accepts.map(str::to_string),
                capabilities: caps,
                uses: (uri != path::NETWORK_MAP && uri != path::ENDPOINT_COST)
                    .then(|| vec![id::NETWORK_MAP.to_string()]),
            }
        };
        let names_caps = |n: &[&str], constraints: bool| {
            Some(Capabilities {
                cost_type_names: Some(n.iter().map(|s| s.to_string()).collect()),
                cost_constraints: constraints.then_some(true),
                other: Default::default(),
            })
        };
        let both = [names::NUM_ROUTING, names::ORD_ROUTING];
        let resources = BTreeMap::from([
            (
                id::NETWORK_MAP.to_string(),
                entry(path::NETWORK_MAP, media::NETWORK_MAP, None, None),
            ),
            (
                id::NETWORK_MAP_FILTERED.to_string(),
                entry(
                    path::NETWORK_MAP_FILTERED,
                    media::NETWORK_MAP,
                    Some(media::NETWORK_MAP_FILTER),
                    None,
                ),
            ),
            (
                id::COST_MAP_NUM.to_string(),
                entry(
                    path::COST_MAP_NUM,
                    media::COST_MAP,
                    None,
                    names_caps(&[names::NUM_ROUTING], false),
                ),
            ),
            (
                id::COST_MAP_ORD.to_string(),
                entry(
                    path::COST_MAP_ORD,
                    media::COST_MAP,
                    None,
                    names_caps(&[names::ORD_ROUTING], false),
                ),
            ),
            (
                id::COST_MAP_FILTERED.to_string(),
                entry(
                    path::COST_MAP_FILTERED,
                    media::COST_MAP,
                    Some(media::COST_MAP_FILTER),
                    names_caps(&both, true),
                ),
            ),
            (
                id::ENDPOINT_COST.to_string(),
                entry(
                    path::ENDPOINT_COST,
                    media::ENDPOINT_COST,
                    Some(media::ENDPOINT_COST_PARAMS),
                    names_caps(&both, true),
                ),
            ),
        ]);
        let described = |mode, text: &str| {
            let mut t = cost_type(mode);
            t.description = Some(text.to_string());
            t
        };
        InfoResourceDirectory {
            meta: IrdMeta {
                cost_types: BTreeMap::from([
                    (
                        names::NUM_ROUTING.to_string(),
                        described(
                            CostMode::Numerical,
                            "alto.costs: local between subscribers, transit to the rest",
                        ),
                    ),
                    (
                        names::ORD_ROUTING.to_string(),
                        described(CostMode::Ordinal, "the same costs, ranked from 1"),
                    ),
                ]),
                default_network_map: Some(id::NETWORK_MAP.to_string()),
            },
            resources,
        }
    }

    /// The directory as JSON.
    pub fn directory_json(&self) -> Vec<u8> {
        to_json(&self.directory())
    }

    /// The full network map as JSON.
    pub fn network_map_json(&self, policy: Option<&Arc<Policy>>) -> Vec<u8> {
        to_json(&self.maps(policy).network.response(None, None))
    }

    /// A filtered network map as JSON (its vtag is the full map's, section 11.3.1.6).
    pub fn network_map_filtered_json(
        &self,
        policy: Option<&Arc<Policy>>,
        body: &[u8],
    ) -> Result<Vec<u8>, AltoError> {
        let f = request::network_map_filter(body)?;
        let maps = self.maps(policy);
        Ok(to_json(
            &maps
                .network
                .response(f.pids.as_deref(), f.address_types.as_deref()),
        ))
    }

    /// The full cost map of `mode` as JSON.
    pub fn cost_map_json(&self, policy: Option<&Arc<Policy>>, mode: CostMode) -> Vec<u8> {
        let maps = self.maps(policy);
        to_json(&cost::cost_map(
            &maps.network,
            &self.config.costs,
            mode,
            None,
            None,
            &[],
        ))
    }

    /// A filtered cost map as JSON.
    pub fn cost_map_filtered_json(
        &self,
        policy: Option<&Arc<Policy>>,
        body: &[u8],
    ) -> Result<Vec<u8>, AltoError> {
        let f = request::cost_map_filter(body)?;
        let maps = self.maps(policy);
        Ok(to_json(&cost::cost_map(
            &maps.network,
            &self.config.costs,
            f.mode,
            f.srcs.as_deref(),
            f.dsts.as_deref(),
            &f.constraints,
        )))
    }

    /// The endpoint cost service's answer: each source to each destination, at the cost
    /// between the PIDs they fall in.
    pub fn endpoint_cost(
        &self,
        policy: Option<&Arc<Policy>>,
        body: &[u8],
        client: Option<IpAddr>,
    ) -> Result<EndpointCostResponse, AltoError> {
        let r = request::endpoint_cost(body, client)?;
        let maps = self.maps(policy);
        let net = &maps.network;
        let pid = |a: IpAddr| net.pid(net.pid_of(a));
        let mut out = CostMapData::new();
        for (s_text, s) in &r.srcs {
            let Some(sp) = pid(*s) else { continue };
            let row: BTreeMap<String, Number> = r
                .dsts
                .iter()
                .filter_map(|(d_text, d)| {
                    let c = cost::between(&self.config.costs, r.mode, sp, pid(*d)?)?;
                    r.constraints
                        .iter()
                        .all(|k| k.holds(c))
                        .then(|| (d_text.clone(), cost::number(c)))
                })
                .collect();
            out.insert(s_text.clone(), row);
        }
        Ok(EndpointCostResponse {
            meta: EndpointCostMeta {
                cost_type: cost_type(r.mode),
            },
            endpoint_cost_map: out,
        })
    }

    /// The endpoint cost service's answer as JSON.
    pub fn endpoint_cost_json(
        &self,
        policy: Option<&Arc<Policy>>,
        body: &[u8],
        client: Option<IpAddr>,
    ) -> Result<Vec<u8>, AltoError> {
        self.endpoint_cost(policy, body, client)
            .map(|r| to_json(&r))
    }
}
