//! `subscribers:`: ids, prefixes, plans, and prefixes shared between subscribers.

use serde_saphyr::Spanned;

use super::{Checker, plans_hint};
use crate::document::SubscriberDoc;
use crate::error::Pos;
use crate::model::Subscriber;
use crate::prefix::{Prefix, PrefixError};

/// A prefix as found in the file, for the overlap check.
struct Placed {
    prefix: Prefix,
    at: Pos,
    /// Index of the subscriber in the file.
    owner: usize,
}

/// Checks the subscribers. `None` if any has an error; an empty list if there are none.
pub(crate) fn check(
    ck: &mut Checker<'_>,
    doc: Option<&Spanned<Vec<Spanned<SubscriberDoc>>>>,
    plans: &[&str],
    default_plan: Option<usize>,
) -> Option<Vec<Subscriber>> {
    let mut ok = true;
    let mut out = Vec::new();
    // (id, position) of every subscriber, for duplicates and for overlap messages, and the
    // first position of each id (a map: a list search made 100,000 subscribers quadratic).
    let mut ids: Vec<(String, Pos)> = Vec::new();
    let mut first_at: std::collections::HashMap<String, Pos> = std::collections::HashMap::new();
    let mut placed = Vec::new();

    for (owner, s) in doc.iter().flat_map(|d| &d.value).enumerate() {
        let at: Pos = s.referenced.into();
        let doc = &s.value;
        let id = match &doc.id {
            None => {
                ok = false;
                ck.err(
                    at,
                    "subscriber without an `id`",
                    "add `id: NAME`, unique among subscribers",
                );
                ids.push((String::new(), at));
                None
            }
            Some(id) if id.value.trim().is_empty() => {
                ok = false;
                ck.err(
                    id.referenced,
                    "empty subscriber id",
                    "give the subscriber a name, e.g. `id: alice`",
                );
                ids.push((String::new(), id.referenced.into()));
                None
            }
            Some(id) => {
                let pos: Pos = id.referenced.into();
                if let Some(first) = first_at.get(&id.value) {
                    ok = false;
                    ck.err(
                        pos,
                        format!(
                            "duplicate subscriber id `{}`, first at line {}",
                            id.value, first.line
                        ),
                        "ids must be unique; merge the two entries or rename one",
                    );
                }
                first_at.entry(id.value.clone()).or_insert(pos);
                ids.push((id.value.clone(), pos));
                Some(id.value.clone())
            }
        };
        let label = id
            .as_deref()
            .map(|i| format!("subscriber `{i}`"))
            .unwrap_or_else(|| "subscriber".to_owned());

        let mut prefixes = Vec::new();
        let prefix_hint = "add e.g. `prefixes: [100.64.1.10/32, 2001:db8:1::10/128]`";
        match &doc.prefixes {
            None => {
                ok = false;
                ck.err(at, format!("{label} has no `prefixes`"), prefix_hint);
            }
            Some(p) if p.value.is_empty() => {
                ok = false;
                ck.err(
                    p.referenced,
                    format!("{label} has no prefixes"),
                    prefix_hint,
                );
            }
            Some(p) => {
                for t in &p.value {
                    match check_prefix(ck, &t.value, t.referenced.into()) {
                        Some(prefix) => {
                            prefixes.push(prefix);
                            placed.push(Placed {
                                prefix,
                                at: t.referenced.into(),
                                owner,
                            });
                        }
                        None => ok = false,
                    }
                }
            }
        }

        let plan_index = match &doc.plan {
            Some(p) => {
                let found = plans.iter().position(|n| *n == p.value);
                if found.is_none() {
                    ok = false;
                }
                // With no plans at all, "no plans" has been said already.
                if found.is_none() && !plans.is_empty() {
                    ck.err(
                        p.referenced,
                        format!("unknown plan `{}` for {label}", p.value),
                        plans_hint(&p.value, plans),
                    );
                }
                found
            }
            // Missing or unknown default_plan is reported once, at the top level.
            None => default_plan,
        };

        if let (Some(id), Some(plan_index)) = (id, plan_index) {
            let plan = plans
                .get(plan_index)
                .map(|p| (*p).to_owned())
                .unwrap_or_default();
            out.push(Subscriber {
                id,
                prefixes,
                plan,
                plan_index,
            });
        } else {
            ok = false;
        }
    }

    ok &= check_overlaps(ck, &mut placed, &ids);
    ok.then_some(out)
}

fn check_prefix(ck: &mut Checker<'_>, s: &str, at: Pos) -> Option<Prefix> {
    match s.trim().parse::<Prefix>() {
        Ok(p) if p.prefix_len() == 0 => {
            ck.err(
                at,
                format!("prefix `{s}` covers every address"),
                "a subscriber owns only its own addresses; default_plan covers addresses no subscriber owns",
            );
            None
        }
        Ok(p) => Some(p),
        Err(PrefixError::Syntax) => {
            ck.err(
                at,
                format!("invalid prefix `{s}`"),
                "write an IPv4 or IPv6 address with an optional length, e.g. 100.64.1.10/32 or 2001:db8:1::/64",
            );
            None
        }
        Err(PrefixError::LengthTooLong { max }) => {
            ck.err(
                at,
                format!("prefix `{s}` is longer than {max} bits"),
                "IPv4 lengths run 0-32, IPv6 lengths 0-128",
            );
            None
        }
        Err(PrefixError::HostBits { network }) => {
            let host = s.split('/').next().unwrap_or(s);
            let full = if network.is_ipv4() { 32 } else { 128 };
            ck.err(
                at,
                format!("prefix `{s}` has host bits set"),
                format!("write {network} for the network, or {host}/{full} for the one address"),
            );
            None
        }
    }
}

/// Reports every prefix that overlaps another (of the same or another subscriber),
/// at whichever of the two comes later in the file. Prefixes either nest or are
/// disjoint, so after sorting by address (wider first) a stack of enclosing prefixes
/// finds each overlap in one pass, O(n log n) for an ISP's many subscribers.
fn check_overlaps(ck: &mut Checker<'_>, placed: &mut [Placed], ids: &[(String, Pos)]) -> bool {
    placed.sort_by_key(|p| (!p.prefix.is_ipv4(), p.prefix.bits(), p.prefix.prefix_len()));
    let mut ok = true;
    let mut stack: Vec<&Placed> = Vec::new();
    for p in placed.iter() {
        while stack
            .last()
            .is_some_and(|top| !top.prefix.overlaps(&p.prefix))
        {
            stack.pop();
        }
        if let Some(outer) = stack.last() {
            ok = false;
            let (first, later) = if outer.at <= p.at {
                (*outer, p)
            } else {
                (p, *outer)
            };
            let owner = |i: usize| ids.get(i).map(|(id, _)| id.as_str()).unwrap_or("");
            if first.owner == later.owner {
                ck.err(
                    later.at,
                    format!(
                        "prefix {} of `{}` overlaps its own {} at line {}",
                        later.prefix,
                        owner(later.owner),
                        first.prefix,
                        first.at.line
                    ),
                    "drop the narrower of the two; the wider prefix covers it",
                );
            } else {
                ck.err(
                    later.at,
                    format!(
                        "prefix {} of `{}` overlaps {} of `{}` at line {}",
                        later.prefix,
                        owner(later.owner),
                        first.prefix,
                        owner(first.owner),
                        first.at.line
                    ),
                    "an address belongs to one subscriber; remove or narrow one of the prefixes",
                );
            }
        }
        stack.push(p);
    }
    ok
}
