//! The media types of RFC 7285 (section 14.1), the resource ids this server gives its
//! resources, and where the daemon serves them.

/// The information resource directory (section 9.2.1).
pub const DIRECTORY: &str = "application/alto-directory+json";
/// A network map, filtered or not (section 11.2.1.1).
pub const NETWORK_MAP: &str = "application/alto-networkmap+json";
/// The input of a filtered network map (section 11.3.1.3).
pub const NETWORK_MAP_FILTER: &str = "application/alto-networkmapfilter+json";
/// A cost map, filtered or not (section 11.2.3.1).
pub const COST_MAP: &str = "application/alto-costmap+json";
/// The input of a filtered cost map (section 11.3.2.3).
pub const COST_MAP_FILTER: &str = "application/alto-costmapfilter+json";
/// The input of the endpoint cost service (section 11.5.1.3).
pub const ENDPOINT_COST_PARAMS: &str = "application/alto-endpointcostparams+json";
/// The endpoint cost service's answer (section 11.5.1.1).
pub const ENDPOINT_COST: &str = "application/alto-endpointcost+json";
/// An error (section 8.5.1).
pub const ERROR: &str = "application/alto-error+json";

/// Resource ids (section 10.2) of this server's resources.
pub mod id {
    /// The network map (the directory's `default-alto-network-map`).
    pub const NETWORK_MAP: &str = "networkmap";
    /// The filtered network map.
    pub const NETWORK_MAP_FILTERED: &str = "networkmap-filtered";
    /// The numerical `routingcost` cost map.
    pub const COST_MAP_NUM: &str = "costmap-num-routingcost";
    /// The ordinal `routingcost` cost map.
    pub const COST_MAP_ORD: &str = "costmap-ord-routingcost";
    /// The filtered cost map.
    pub const COST_MAP_FILTERED: &str = "costmap-filtered";
    /// The endpoint cost service.
    pub const ENDPOINT_COST: &str = "endpointcost";
}

/// Where the daemon's API serves each resource.
pub mod path {
    /// The directory: the URI to give ALTO clients.
    pub const DIRECTORY: &str = "/api/v1/alto";
    /// `GET`: the network map.
    pub const NETWORK_MAP: &str = "/api/v1/alto/networkmap";
    /// `POST`: the filtered network map.
    pub const NETWORK_MAP_FILTERED: &str = "/api/v1/alto/networkmap/filtered";
    /// `GET`: the numerical `routingcost` map.
    pub const COST_MAP_NUM: &str = "/api/v1/alto/costmap/num-routingcost";
    /// `GET`: the ordinal `routingcost` map.
    pub const COST_MAP_ORD: &str = "/api/v1/alto/costmap/ord-routingcost";
    /// `POST`: the filtered cost map.
    pub const COST_MAP_FILTERED: &str = "/api/v1/alto/costmap/filtered";
    /// `POST`: the endpoint cost service.
    pub const ENDPOINT_COST: &str = "/api/v1/alto/endpointcost";
}

/// Cost type names in the directory (`meta.cost-types`).
pub mod cost_type {
    /// `routingcost`, numerical.
    pub const NUM_ROUTING: &str = "num-routing";
    /// `routingcost`, ordinal.
    pub const ORD_ROUTING: &str = "ord-routing";
}
