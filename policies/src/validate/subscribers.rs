//! `subscribers:`: ids, prefixes, plans, and prefixes shared between subscribers.

use std::collections::HashMap;

use super::{Checker, plans_hint};
use crate::error::Pos;
use crate::model::Subscriber;
use crate::oneline::Entry;
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
    entries: Vec<Entry>,
    plans: &[&str],
    default_plan: Option<usize>,
) -> Option<Vec<Subscriber>> {
    let mut ok = true;
    let mut out = Vec::with_capacity(entries.len());
    // Duplicate ids first, through a map of the ids as read (a list search made
    // 100,000 subscribers quadratic).
    let mut first_at: HashMap<&str, Pos> = HashMap::with_capacity(entries.len());
    for id in entries.iter().filter_map(|e| e.id.as_ref()) {
        if id.value.trim().is_empty() {
            continue;
        }
        if let Some(first) = first_at.get(id.value.as_ref()) {
            ok = false;
            ck.err(
                id.at,
                format!(
                    "duplicate subscriber id `{}`, first at line {}",
                    id.value, first.line
                ),
                "ids must be unique; merge the two entries or rename one",
            );
        } else {
            first_at.insert(&id.value, id.at);
        }
    }
    drop(first_at);
    // The id of every subscriber, for overlap messages.
    let mut ids: Vec<Option<String>> = Vec::with_capacity(entries.len());
    let plan_at: HashMap<&str, usize> = plans.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let mut placed = Vec::with_capacity(entries.len() * 2);

    for (owner, doc) in entries.into_iter().enumerate() {
        let at = doc.at;
        let id = match doc.id {
            None => {
                ok = false;
                ck.err(
                    at,
                    "subscriber without an `id`",
                    "add `id: NAME`, unique among subscribers",
                );
                None
            }
            Some(id) if id.value.trim().is_empty() => {
                ok = false;
                ck.err(
                    id.at,
                    "empty subscriber id",
                    "give the subscriber a name, e.g. `id: alice`",
                );
                None
            }
            Some(id) => Some(id.value.into_owned()),
        };
        let label = || {
            id.as_deref()
                .map(|i| format!("subscriber `{i}`"))
                .unwrap_or_else(|| "subscriber".to_owned())
        };

        let mut prefixes = Vec::new();
        let prefix_hint = "add e.g. `prefixes: [100.64.1.10/32, 2001:db8:1::10/128]`";
        match &doc.prefixes {
            None => {
                ok = false;
                ck.err(at, format!("{} has no `prefixes`", label()), prefix_hint);
            }
            Some((list, list_at)) if list.is_empty() => {
                ok = false;
                ck.err(
                    *list_at,
                    format!("{} has no prefixes", label()),
                    prefix_hint,
                );
            }
            Some((list, _)) => {
                prefixes.reserve_exact(list.len());
                for t in list {
                    match check_prefix(ck, &t.value, t.at) {
                        Some(prefix) => {
                            prefixes.push(prefix);
                            placed.push(Placed {
                                prefix,
                                at: t.at,
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
                let found = plan_at.get(p.value.as_ref()).copied();
                if found.is_none() {
                    ok = false;
                }
                // With no plans at all, "no plans" has been said already.
                if found.is_none() && !plans.is_empty() {
                    ck.err(
                        p.at,
                        format!("unknown plan `{}` for {}", p.value, label()),
                        plans_hint(&p.value, plans),
                    );
                }
                found
            }
            // Missing or unknown default_plan is reported once, at the top level.
            None => default_plan,
        };

        if let (Some(id), Some(plan_index)) = (&id, plan_index) {
            let plan = plans
                .get(plan_index)
                .map(|p| (*p).to_owned())
                .unwrap_or_default();
            out.push(Subscriber {
                id: id.clone(),
                prefixes,
                plan,
                plan_index,
            });
        } else {
            ok = false;
        }
        ids.push(id);
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
fn check_overlaps(ck: &mut Checker<'_>, placed: &mut [Placed], ids: &[Option<String>]) -> bool {
    placed.sort_unstable_by_key(|p| (!p.prefix.is_ipv4(), p.prefix.bits(), p.prefix.prefix_len()));
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
            let owner = |i: usize| ids.get(i).and_then(Option::as_deref).unwrap_or("");
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
