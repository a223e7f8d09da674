//! JSON schemas of RFC 7285's messages, written from the RFC's text (sections 8.5, 9.2.2,
//! 10 and 11), and a checker for the subset of JSON Schema they use: `type`, `properties`,
//! `required`, `additionalProperties`, `propertyNames`, `items`, `minItems`, `maxItems`,
//! `enum`, `minLength`, `maxLength`, `minimum`, and `format` with the RFC's own formats
//! (`pid-name`, `resource-id`, `vtag-tag`, `cost-metric`, `typed-endpoint`, `ipv4-prefix`,
//! `ipv6-prefix`).
//!
//! Shared by the crate's unit tests and the API test binary
//! (`tests/tests/api/alto.rs` includes this file), so both hold responses to one schema.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

/// Every way `v` breaks `schema`, each `PATH: what`; empty when it conforms.
pub fn violations(schema: &Value, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, v, "$", &mut out);
    out
}

/// Panics with every violation unless `v` conforms to `schema`.
pub fn assert_valid(schema: &Value, v: &Value, what: &str) {
    let bad = violations(schema, v);
    assert!(
        bad.is_empty(),
        "{what} breaks its RFC 7285 schema:\n{}\n{v:#}",
        bad.join("\n")
    );
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

/// RFC 7285 section 10.1 (PID names and, 10.2, resource ids): at most 64 of
/// alphanumerics, `-`, `:`, `@`, `_`, `.` (the `.` reserved, so refused here).
fn pid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-:@_".contains(&b))
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "pid-name" | "resource-id" => pid_name(s),
        // Section 10.3: at most 64 characters, none below U+0021 or above U+007E.
        "vtag-tag" => !s.is_empty() && s.len() <= 64 && s.chars().all(|c| ('!'..='~').contains(&c)),
        // Section 10.6: at most 32 of alphanumerics, `-`, `:`, `_` (and the reserved `.`).
        "cost-metric" => {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-:_".contains(&b))
        }
        // Sections 10.4.1 to 10.4.3.
        "typed-endpoint" => match s.split_once(':') {
            Some(("ipv4", a)) => a.parse::<Ipv4Addr>().is_ok(),
            Some(("ipv6", a)) => a.parse::<Ipv6Addr>().is_ok(),
            _ => false,
        },
        // Section 10.4.4: RFC 4632 and RFC 5952 prefixes.
        "ipv4-prefix" => prefix(s, 32, |a| a.parse::<Ipv4Addr>().is_ok()),
        "ipv6-prefix" => prefix(s, 128, |a| a.parse::<Ipv6Addr>().is_ok()),
        _ => false,
    }
}

fn prefix(s: &str, max: u8, addr_ok: impl Fn(&str) -> bool) -> bool {
    match s.split_once('/') {
        Some((a, len)) => addr_ok(a) && len.parse::<u8>().is_ok_and(|l| l <= max),
        None => false,
    }
}

fn check(schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let Some(s) = schema.as_object() else { return };
    if let Some(ty) = s.get("type").and_then(Value::as_str)
        && !type_ok(ty, v)
    {
        out.push(format!("{at}: not of type {ty}: {v}"));
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {allowed:?}"));
    }
    if let Some(text) = v.as_str() {
        let n = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            out.push(format!("{at}: shorter than minLength"));
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            out.push(format!("{at}: longer than maxLength"));
        }
        if let Some(f) = s.get("format").and_then(Value::as_str)
            && !format_ok(f, text)
        {
            out.push(format!("{at}: {text:?} is not a {f}"));
        }
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64())
        && x < min
    {
        out.push(format!("{at}: {x} is below the minimum {min}"));
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            out.push(format!("{at}: fewer than minItems"));
        }
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            out.push(format!("{at}: more than maxItems"));
        }
        if let Some(item) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                check(item, x, &format!("{at}[{i}]"), out);
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(k) = r.as_str()
                && !obj.contains_key(k)
            {
                out.push(format!("{at}: the required field {k:?} is missing"));
            }
        }
        for (k, x) in obj {
            let path = format!("{at}/{k}");
            if let Some(names) = s.get("propertyNames") {
                check(
                    names,
                    &Value::String(k.clone()),
                    &format!("{path} (name)"),
                    out,
                );
            }
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(p), _) => check(p, x, &path, out),
                (None, Some(Value::Bool(false))) => {
                    out.push(format!("{at}: unexpected field {k:?}"))
                }
                (None, Some(extra)) => check(extra, x, &path, out),
                (None, None) => {}
            }
        }
    }
}

/// VersionTag (section 10.3).
pub fn version_tag() -> Value {
    json!({
        "type": "object",
        "required": ["resource-id", "tag"],
        "properties": {
            "resource-id": {"type": "string", "format": "resource-id"},
            "tag": {"type": "string", "format": "vtag-tag"}
        }
    })
}

/// CostType (section 10.7), CostMode (10.5), CostMetric (10.6).
pub fn cost_type() -> Value {
    json!({
        "type": "object",
        "required": ["cost-metric", "cost-mode"],
        "properties": {
            "cost-metric": {"type": "string", "format": "cost-metric"},
            "cost-mode": {"type": "string", "enum": ["numerical", "ordinal"]},
            "description": {"type": "string"}
        }
    })
}

/// EndpointAddrGroup (section 10.4.5) with the `ipv4` and `ipv6` types.
pub fn endpoint_addr_group() -> Value {
    json!({
        "type": "object",
        "properties": {
            "ipv4": {"type": "array", "items": {"type": "string", "format": "ipv4-prefix"}},
            "ipv6": {"type": "array", "items": {"type": "string", "format": "ipv6-prefix"}}
        },
        "additionalProperties": {"type": "array", "items": {"type": "string"}}
    })
}

/// InfoResourceDirectory of a root directory (section 9.2.2).
pub fn directory() -> Value {
    json!({
        "type": "object",
        "required": ["meta", "resources"],
        "properties": {
            "meta": {
                "type": "object",
                "required": ["default-alto-network-map"],
                "properties": {
                    "cost-types": {"type": "object", "propertyNames": {"format": "pid-name"},
                                   "additionalProperties": cost_type()},
                    "default-alto-network-map": {"type": "string", "format": "resource-id"}
                }
            },
            "resources": {
                "type": "object",
                "propertyNames": {"type": "string", "format": "resource-id"},
                "additionalProperties": {
                    "type": "object",
                    "required": ["uri", "media-type"],
                    "properties": {
                        "uri": {"type": "string", "minLength": 1},
                        "media-type": {"type": "string", "minLength": 1},
                        "accepts": {"type": "string"},
                        "capabilities": {
                            "type": "object",
                            "properties": {
                                "cost-type-names": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                                "cost-constraints": {"type": "boolean"}
                            }
                        },
                        "uses": {"type": "array", "items": {"type": "string", "format": "resource-id"}}
                    }
                }
            }
        }
    })
}

/// InfoResourceNetworkMap (section 11.2.1.6).
pub fn network_map() -> Value {
    json!({
        "type": "object",
        "required": ["meta", "network-map"],
        "properties": {
            "meta": {"type": "object", "required": ["vtag"], "properties": {"vtag": version_tag()}},
            "network-map": {
                "type": "object",
                "propertyNames": {"type": "string", "format": "pid-name"},
                "additionalProperties": endpoint_addr_group()
            }
        }
    })
}

/// InfoResourceCostMap (section 11.2.3.6); costs are JSON numbers.
pub fn cost_map() -> Value {
    json!({
        "type": "object",
        "required": ["meta", "cost-map"],
        "properties": {
            "meta": {
                "type": "object",
                "required": ["dependent-vtags", "cost-type"],
                "properties": {
                    "dependent-vtags": {"type": "array", "minItems": 1, "maxItems": 1, "items": version_tag()},
                    "cost-type": cost_type(),
                    "vtag": version_tag()
                }
            },
            "cost-map": {
                "type": "object",
                "propertyNames": {"type": "string", "format": "pid-name"},
                "additionalProperties": {
                    "type": "object",
                    "propertyNames": {"type": "string", "format": "pid-name"},
                    "additionalProperties": {"type": "number"}
                }
            }
        }
    })
}

/// ReqEndpointCostMap (section 11.5.1.3).
pub fn endpoint_cost_params() -> Value {
    let addrs = json!({"type": "array", "items": {"type": "string", "format": "typed-endpoint"}});
    json!({
        "type": "object",
        "required": ["cost-type", "endpoints"],
        "properties": {
            "cost-type": cost_type(),
            "constraints": {"type": "array", "items": {"type": "string"}},
            "endpoints": {"type": "object", "properties": {"srcs": addrs, "dsts": addrs}}
        }
    })
}

/// InfoResourceEndpointCostMap (section 11.5.1.6).
pub fn endpoint_cost() -> Value {
    json!({
        "type": "object",
        "required": ["meta", "endpoint-cost-map"],
        "properties": {
            "meta": {"type": "object", "required": ["cost-type"], "properties": {"cost-type": cost_type()}},
            "endpoint-cost-map": {
                "type": "object",
                "propertyNames": {"type": "string", "format": "typed-endpoint"},
                "additionalProperties": {
                    "type": "object",
                    "propertyNames": {"type": "string", "format": "typed-endpoint"},
                    "additionalProperties": {"type": "number"}
                }
            }
        }
    })
}

/// An error response (section 8.5.2).
pub fn error() -> Value {
    json!({
        "type": "object",
        "required": ["meta"],
        "properties": {
            "meta": {
                "type": "object",
                "required": ["code"],
                "properties": {
                    "code": {"type": "string", "enum": ["E_SYNTAX", "E_MISSING_FIELD", "E_INVALID_FIELD_TYPE", "E_INVALID_FIELD_VALUE"]},
                    "syntax-error": {"type": "string"},
                    "field": {"type": "string"},
                    "value": {"type": "string"}
                }
            }
        }
    })
}
