//! The JSON of RFC 7285, as types: what the server sends and what clients send it. Field
//! names are the RFC's (`resource-id`, `cost-map`, ...); maps are `BTreeMap`s, so the
//! output is in a stable order. Unknown fields are ignored when reading (section 8.3.7).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// A version tag (section 10.3): a resource and an identifier of its contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionTag {
    /// The resource it versions.
    #[serde(rename = "resource-id")]
    pub resource_id: String,
    /// At most 64 characters from `!` to `~`.
    pub tag: String,
}

/// `numerical` or `ordinal` (section 10.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostMode {
    /// Costs are numbers to compare and add.
    Numerical,
    /// Costs are ranks: only their order means something.
    Ordinal,
}

impl CostMode {
    /// The RFC's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CostMode::Numerical => "numerical",
            CostMode::Ordinal => "ordinal",
        }
    }
}

/// A cost metric and mode (section 10.7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostType {
    /// `numerical` or `ordinal`.
    #[serde(rename = "cost-mode")]
    pub mode: CostMode,
    /// `routingcost` here.
    #[serde(rename = "cost-metric")]
    pub metric: String,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Address type (`ipv4`, `ipv6`) → prefixes (section 10.4.5).
pub type EndpointAddrGroup = BTreeMap<String, Vec<String>>;

/// A network map's `meta` (section 11.2.1.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkMapMeta {
    /// The map's version.
    pub vtag: VersionTag,
}

/// A network map (section 11.2.1.6): PID name → its endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkMapResponse {
    /// Its version.
    pub meta: NetworkMapMeta,
    /// PID → addresses.
    #[serde(rename = "network-map")]
    pub network_map: BTreeMap<String, EndpointAddrGroup>,
}

/// A cost map's `meta` (section 11.2.3.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostMapMeta {
    /// The network map's version (one element).
    #[serde(rename = "dependent-vtags")]
    pub dependent_vtags: Vec<VersionTag>,
    /// The costs' type.
    #[serde(rename = "cost-type")]
    pub cost_type: CostType,
    /// The cost map's own version, when the server gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtag: Option<VersionTag>,
}

/// Source PID → destination PID → cost.
pub type CostMapData = BTreeMap<String, BTreeMap<String, Number>>;

/// A cost map (section 11.2.3.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostMapResponse {
    /// The network map it uses and the cost type.
    pub meta: CostMapMeta,
    /// The costs.
    #[serde(rename = "cost-map")]
    pub cost_map: CostMapData,
}

/// The endpoint cost service's `meta` (section 11.5.1.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointCostMeta {
    /// The costs' type.
    #[serde(rename = "cost-type")]
    pub cost_type: CostType,
}

/// The endpoint cost service's answer (section 11.5.1.6): source → destination → cost,
/// each a typed address (`ipv4:192.0.2.2`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointCostResponse {
    /// The cost type.
    pub meta: EndpointCostMeta,
    /// The costs.
    #[serde(rename = "endpoint-cost-map")]
    pub endpoint_cost_map: CostMapData,
}

/// The endpoint cost service's input (section 11.5.1.3), as the RFC writes it; the server
/// reads it field by field ([`crate::request`]) to answer the RFC's error codes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointCostParams {
    /// The cost type wanted.
    #[serde(rename = "cost-type")]
    pub cost_type: CostType,
    /// `lt 5`, `ge 1`, ... all to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<String>>,
    /// Sources and destinations.
    pub endpoints: EndpointFilter,
}

/// Sources and destinations of an endpoint cost request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointFilter {
    /// Typed addresses (empty or absent: the client's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srcs: Option<Vec<String>>,
    /// Typed addresses (empty or absent: the client's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsts: Option<Vec<String>>,
}

/// A resource's capabilities (section 9.1.3): the ones this server uses, and any other.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Names from the directory's `cost-types`.
    #[serde(
        rename = "cost-type-names",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cost_type_names: Option<Vec<String>>,
    /// Whether requests may carry `constraints`.
    #[serde(
        rename = "cost-constraints",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cost_constraints: Option<bool>,
    /// Capabilities of other resources (`prop-types`, ...).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of the directory (section 9.2.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IrdResourceEntry {
    /// Where (may be relative to the directory's URI).
    pub uri: String,
    /// What it answers.
    #[serde(rename = "media-type")]
    pub media_type: String,
    /// What a POST to it takes (none: it answers GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepts: Option<String>,
    /// What it can do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// The resources it depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<Vec<String>>,
}

/// The directory's `meta` (section 9.2.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IrdMeta {
    /// Names for the cost types the resources offer.
    #[serde(
        rename = "cost-types",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cost_types: BTreeMap<String, CostType>,
    /// The network map of a root directory.
    #[serde(
        rename = "default-alto-network-map",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub default_network_map: Option<String>,
}

/// The information resource directory (section 9.2.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InfoResourceDirectory {
    /// Cost types and the default network map.
    pub meta: IrdMeta,
    /// Resource id → entry.
    pub resources: BTreeMap<String, IrdResourceEntry>,
}

/// An error's `meta` (section 8.5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMeta {
    /// `E_SYNTAX`, `E_MISSING_FIELD`, `E_INVALID_FIELD_TYPE`, `E_INVALID_FIELD_VALUE`.
    pub code: String,
    /// Where the JSON could not be parsed (E_SYNTAX).
    #[serde(
        rename = "syntax-error",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub syntax_error: Option<String>,
    /// The field at fault, as a path (`cost-type/cost-mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The wrong value, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// An error answer (section 8.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The code and where.
    pub meta: ErrorMeta,
}
