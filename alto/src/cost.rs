//! `routingcost` (RFC 7285 section 6.1.1.1) between PIDs: `alto.costs.local` between two
//! PIDs of the network, `alto.costs.transit` between one of them and `default`. Between
//! two addresses both outside the network no cost is defined (the traffic never crosses
//! it), and those entries are left out, as section 11.2.3.6 allows.
//!
//! Ordinal costs (section 6.1.2.2) are ranks: 1 for the cheapest value, 2 for the next.

use serde_json::Number;

use crate::{
    config::Costs,
    model::{CostMapData, CostMapMeta, CostMapResponse, CostMode, CostType},
    network::{NetworkMap, Pid},
};

/// The only metric served.
pub const ROUTINGCOST: &str = "routingcost";

/// The cost type of a mode (`routingcost`).
pub fn cost_type(mode: CostMode) -> CostType {
    CostType {
        mode,
        metric: ROUTINGCOST.to_string(),
        description: None,
    }
}

/// The cost from `src` to `dst` in `mode`; `None` between two transit PIDs.
pub fn between(costs: &Costs, mode: CostMode, src: &Pid, dst: &Pid) -> Option<f64> {
    let v = match (src.transit, dst.transit) {
        (true, true) => return None,
        (false, false) => costs.local,
        _ => costs.transit,
    };
    Some(match mode {
        CostMode::Numerical => v,
        CostMode::Ordinal => rank(costs, v),
    })
}

/// The rank of `v` among the distinct values of `costs`, from 1.
fn rank(costs: &Costs, v: f64) -> f64 {
    let below = [costs.local, costs.transit]
        .iter()
        .filter(|&&c| c < v)
        .count();
    // Two values below can only both be `local` and `transit` when they are equal.
    let distinct_below = if below == 2 && costs.local == costs.transit {
        1
    } else {
        below
    };
    (distinct_below + 1) as f64
}

/// `v` as a JSON number: an integer when it is one (`1`, not `1.0`).
pub fn number(v: f64) -> Number {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Number::from(v as i64)
    } else {
        Number::from_f64(v).unwrap_or_else(|| Number::from(0))
    }
}

/// A constraint (section 11.3.2.3): `lt`, `le`, `gt`, `ge` or `eq`, and a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constraint {
    op: Op,
    value: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Constraint {
    /// `"le 5"`; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Constraint> {
        let mut parts = text.split_whitespace();
        let op = match parts.next()? {
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "eq" => Op::Eq,
            _ => return None,
        };
        let value: f64 = parts.next()?.parse().ok().filter(|v: &f64| v.is_finite())?;
        parts.next().is_none().then_some(Constraint { op, value })
    }

    /// Whether `cost` meets it.
    pub fn holds(&self, cost: f64) -> bool {
        match self.op {
            Op::Lt => cost < self.value,
            Op::Le => cost <= self.value,
            Op::Gt => cost > self.value,
            Op::Ge => cost >= self.value,
            Op::Eq => cost == self.value,
        }
    }
}

/// A cost map over `net` from the PIDs named in `srcs` to those in `dsts` (every PID when
/// `None`; names not in the map are left out), keeping the costs that meet every
/// constraint.
pub fn cost_map(
    net: &NetworkMap,
    costs: &Costs,
    mode: CostMode,
    srcs: Option<&[String]>,
    dsts: Option<&[String]>,
    constraints: &[Constraint],
) -> CostMapResponse {
    let pick = |names: Option<&[String]>| -> Vec<&Pid> {
        net.pids()
            .iter()
            .filter(|p| names.is_none_or(|n| n.contains(&p.name)))
            .collect()
    };
    let (from, to) = (pick(srcs), pick(dsts));
    let mut cost_map = CostMapData::new();
    for s in &from {
        let row: std::collections::BTreeMap<String, Number> = to
            .iter()
            .filter_map(|d| {
                let c = between(costs, mode, s, d)?;
                constraints
                    .iter()
                    .all(|k| k.holds(c))
                    .then(|| (d.name.clone(), number(c)))
            })
            .collect();
        if !row.is_empty() {
            cost_map.insert(s.name.clone(), row);
        }
    }
    CostMapResponse {
        meta: CostMapMeta {
            dependent_vtags: vec![net.vtag()],
            cost_type: cost_type(mode),
            vtag: None,
        },
        cost_map,
    }
}
