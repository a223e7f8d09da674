//! The POST bodies, read field by field so a wrong request is answered with the RFC's
//! code and the path of the field at fault (section 8.5.2): `E_SYNTAX` for a body that is
//! not a JSON object, `E_MISSING_FIELD`, `E_INVALID_FIELD_TYPE` for a value of the wrong
//! JSON type, `E_INVALID_FIELD_VALUE` for a wrong value (an array element of the wrong type
//! included, as the RFC says). Unknown fields are ignored (section 8.3.7).

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde_json::{Map, Value};

use crate::{cost::Constraint, cost::ROUTINGCOST, error::AltoError, model::CostMode};

/// The most source × destination pairs one endpoint cost request may ask for.
pub const MAX_PAIRS: usize = 100_000;

/// An endpoint cost request (section 11.5.1.3).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointCostRequest {
    /// The mode (the metric is `routingcost`).
    pub mode: CostMode,
    /// All to hold.
    pub constraints: Vec<Constraint>,
    /// Typed addresses as written, each once, with the address.
    pub srcs: Vec<(String, IpAddr)>,
    /// Typed addresses as written, each once, with the address.
    pub dsts: Vec<(String, IpAddr)>,
}

/// A filtered cost map request (section 11.3.2.3).
#[derive(Clone, Debug, PartialEq)]
pub struct CostMapFilter {
    /// The mode.
    pub mode: CostMode,
    /// All to hold.
    pub constraints: Vec<Constraint>,
    /// Source PIDs (`None`: every PID).
    pub srcs: Option<Vec<String>>,
    /// Destination PIDs (`None`: every PID).
    pub dsts: Option<Vec<String>>,
}

/// A filtered network map request (section 11.3.1.3).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkMapFilter {
    /// PIDs (`None`: every PID).
    pub pids: Option<Vec<String>>,
    /// Address types (`None`: both).
    pub address_types: Option<Vec<String>>,
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>, AltoError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AltoError::Syntax("the body is not a JSON object".into())),
        Err(e) => Err(AltoError::Syntax(format!(
            "line {}, column {}: {e}",
            e.line(),
            e.column()
        ))),
    }
}

/// A value as the string the RFC puts in an error's `value`.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `cost-type` (its `description` ignored).
fn cost_type(req: &Map<String, Value>) -> Result<CostMode, AltoError> {
    let ct = match req.get("cost-type") {
        None => return Err(AltoError::MissingField("cost-type".into())),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(AltoError::InvalidFieldType("cost-type".into())),
    };
    let text = |name: &str| -> Result<&str, AltoError> {
        let path = format!("cost-type/{name}");
        match ct.get(name) {
            None => Err(AltoError::MissingField(path)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(AltoError::InvalidFieldType(path)),
        }
    };
    let mode = match text("cost-mode")? {
        "numerical" => CostMode::Numerical,
        "ordinal" => CostMode::Ordinal,
        other => return Err(AltoError::value("cost-type/cost-mode", other)),
    };
    match text("cost-metric")? {
        ROUTINGCOST => Ok(mode),
        other => Err(AltoError::value("cost-type/cost-metric", other)),
    }
}

/// An optional array of strings at `path`; an element that is not a string is a wrong
/// value (section 8.5.2).
fn strings(v: Option<&Value>, path: &str) -> Result<Option<Vec<String>>, AltoError> {
    let items = match v {
        None => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(AltoError::InvalidFieldType(path.into())),
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) => {
                if seen.insert(s) {
                    out.push(s.clone());
                }
            }
            other => return Err(AltoError::value(path, as_text(other))),
        }
    }
    Ok(Some(out))
}

fn constraints(req: &Map<String, Value>) -> Result<Vec<Constraint>, AltoError> {
    let texts = strings(req.get("constraints"), "constraints")?.unwrap_or_default();
    texts
        .iter()
        .map(|t| Constraint::parse(t).ok_or_else(|| AltoError::value("constraints", t.clone())))
        .collect()
}

/// A typed endpoint address (section 10.4.1): `ipv4:192.0.2.2`, `ipv6:2001:db8::1`.
pub fn typed_address(text: &str) -> Option<IpAddr> {
    let (ty, addr) = text.split_once(':')?;
    match ty {
        "ipv4" => addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        "ipv6" => addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    }
}

/// The typed address of `addr` (`ipv4:...` for an IPv4-mapped IPv6 address too).
pub fn typed(addr: IpAddr) -> String {
    match addr.to_canonical() {
        IpAddr::V4(a) => format!("ipv4:{a}"),
        IpAddr::V6(a) => format!("ipv6:{a}"),
    }
}

/// Reads an endpoint cost request; an empty or absent list of sources or destinations is
/// the client's own address (`client`, section 11.5.1.3).
pub fn endpoint_cost(
    body: &[u8],
    client: Option<IpAddr>,
) -> Result<EndpointCostRequest, AltoError> {
    let req = object(body)?;
    let mode = cost_type(&req)?;
    let constraints = constraints(&req)?;
    let eps = match req.get("endpoints") {
        None => return Err(AltoError::MissingField("endpoints".into())),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(AltoError::InvalidFieldType("endpoints".into())),
    };
    let list = |name: &str| -> Result<Vec<(String, IpAddr)>, AltoError> {
        let path = format!("endpoints/{name}");
        let texts = strings(eps.get(name), &path)?.unwrap_or_default();
        texts
            .into_iter()
            .map(|t| match typed_address(&t) {
                Some(a) => Ok((t, a)),
                None => Err(AltoError::value(&path, t)),
            })
            .collect()
    };
    let (mut srcs, mut dsts) = (list("srcs")?, list("dsts")?);
    if srcs.is_empty() && dsts.is_empty() {
        return Err(AltoError::value(
            "endpoints",
            "both srcs and dsts are empty",
        ));
    }
    for (name, l) in [("srcs", &mut srcs), ("dsts", &mut dsts)] {
        if l.is_empty() {
            let a = client.ok_or_else(|| AltoError::MissingField(format!("endpoints/{name}")))?;
            l.push((typed(a), a));
        }
    }
    let pairs = srcs.len().saturating_mul(dsts.len());
    if pairs > MAX_PAIRS {
        return Err(AltoError::value(
            "endpoints",
            format!("{pairs} source-destination pairs; at most {MAX_PAIRS}"),
        ));
    }
    Ok(EndpointCostRequest {
        mode,
        constraints,
        srcs,
        dsts,
    })
}

/// Reads a filtered cost map request.
pub fn cost_map_filter(body: &[u8]) -> Result<CostMapFilter, AltoError> {
    let req = object(body)?;
    let mode = cost_type(&req)?;
    let constraints = constraints(&req)?;
    let (srcs, dsts) = match req.get("pids") {
        None => (None, None),
        Some(Value::Object(p)) => (
            strings(p.get("srcs"), "pids/srcs")?,
            strings(p.get("dsts"), "pids/dsts")?,
        ),
        Some(_) => return Err(AltoError::InvalidFieldType("pids".into())),
    };
    // An empty list is every PID (section 11.3.2.3).
    let every = |l: Option<Vec<String>>| l.filter(|l| !l.is_empty());
    Ok(CostMapFilter {
        mode,
        constraints,
        srcs: every(srcs),
        dsts: every(dsts),
    })
}

/// Reads a filtered network map request (`pids` is required, empty meaning every PID).
pub fn network_map_filter(body: &[u8]) -> Result<NetworkMapFilter, AltoError> {
    let req = object(body)?;
    let pids =
        strings(req.get("pids"), "pids")?.ok_or_else(|| AltoError::MissingField("pids".into()))?;
    let types = strings(req.get("address-types"), "address-types")?;
    Ok(NetworkMapFilter {
        pids: Some(pids).filter(|p| !p.is_empty()),
        address_types: types.filter(|t| !t.is_empty()),
    })
}
