//! Top-level `classes:` (user-defined classes) and the names plans use for traffic.

use peerwarden_common::label::{ALL_CLASSES, ALL_LABELS};
use peerwarden_common::{Class, Label};
use serde_saphyr::Spanned;

use super::Checker;
use crate::document::{Entries, Text, UserClassDoc};
use crate::host::HostPattern;
use crate::model::{Target, UserClass};
use crate::suggest::suggest;

/// The user-defined classes: those that validated, and the names of all (so a class
/// with a mistake is still known to plans).
pub(crate) struct UserClasses {
    pub built: Vec<UserClass>,
    pub names: Vec<String>,
}

pub(crate) fn check(
    ck: &mut Checker<'_>,
    doc: Option<&Spanned<Entries<Text, Spanned<UserClassDoc>>>>,
) -> UserClasses {
    let mut out = UserClasses {
        built: Vec::new(),
        names: Vec::new(),
    };
    let Some(doc) = doc else { return out };
    for (name, class) in &doc.value.0 {
        out.names.push(name.value.clone());
        if let Some(c) = user_class(ck, name, &class.value) {
            out.built.push(c);
        }
    }
    out
}

fn user_class(ck: &mut Checker<'_>, name: &Text, doc: &UserClassDoc) -> Option<UserClass> {
    let mut ok = true;
    let n = name.value.as_str();
    if Class::from_name(n).is_some() || Label::from_name(n).is_some() {
        let kind = if Class::from_name(n).is_some() {
            "class"
        } else {
            "label"
        };
        ck.err(
            name.referenced,
            format!("class name `{n}` is taken by a built-in {kind}"),
            "choose another name; built-in classes and labels can be used in plans directly",
        );
        ok = false;
    }
    if n.trim().is_empty() {
        ck.err(
            name.referenced,
            "empty class name",
            "give the class a name, e.g. games",
        );
        ok = false;
    }

    let mut labels = Vec::new();
    for l in doc.labels.iter().flatten() {
        match Label::from_name(&l.value) {
            Some(label) => labels.push(label),
            None => {
                ok = false;
                label_error(ck, l);
            }
        }
    }
    let mut hosts = Vec::new();
    for h in doc.hosts.iter().flatten() {
        match HostPattern::parse(&h.value) {
            Some(p) => hosts.push(p),
            None => {
                ok = false;
                ck.err(
                    h.referenced,
                    format!("invalid host pattern `{}`", h.value),
                    "write a host name like example.com, or *.example.com for its subdomains",
                );
            }
        }
    }
    let empty = doc.labels.as_ref().is_none_or(Vec::is_empty)
        && doc.hosts.as_ref().is_none_or(Vec::is_empty);
    if empty {
        ck.err(
            name.referenced,
            format!("class `{n}` matches nothing"),
            "give it `labels: [...]` or `hosts: [...]`, or remove it",
        );
        ok = false;
    }
    ok.then(|| UserClass {
        name: n.to_owned(),
        labels,
        hosts,
    })
}

fn label_error(ck: &mut Checker<'_>, l: &Text) {
    let v = l.value.as_str();
    if Class::from_name(v).is_some() {
        ck.err(
            l.referenced,
            format!("`{v}` is a class, not a label"),
            format!("list labels here, such as bittorrent or hls, or use the class `{v}` in plans directly"),
        );
        return;
    }
    let hint = match suggest(v, ALL_LABELS.iter().map(|l| l.name())) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("labels: {}", label_list()),
    };
    ck.err(l.referenced, format!("unknown label `{v}`"), hint);
}

fn label_list() -> String {
    ALL_LABELS
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl UserClasses {
    /// What a key under a plan's `classes:` names: a built-in class, a user-defined
    /// class or a label. Reports unknown names.
    pub(crate) fn target(&self, ck: &mut Checker<'_>, key: &Text) -> Option<Target> {
        let k = key.value.as_str();
        if let Some(c) = Class::from_name(k) {
            return Some(Target::Class(c));
        }
        if self.names.iter().any(|n| n == k) {
            return Some(Target::User(k.to_owned()));
        }
        if let Some(l) = Label::from_name(k) {
            return Some(Target::Label(l));
        }
        let known = ALL_CLASSES
            .iter()
            .map(|c| c.name())
            .chain(self.names.iter().map(String::as_str))
            .chain(ALL_LABELS.iter().map(|l| l.name()));
        let mean = suggest(k, known)
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        ck.err(
            key.referenced,
            format!("unknown class `{k}`"),
            format!(
                "{mean}use a built-in class p2p, video, web or other, a label such as bittorrent or hls, or a class defined under top-level `classes:`"
            ),
        );
        None
    }
}
