//! The crate's responses against RFC 7285: its examples read into the types and written
//! back unchanged, every response held to the schemas written from its text
//! (`schema.rs`), the network map and costs made from a policy, and the errors.

mod rfc_examples;
pub mod schema;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::{
    AltoConfig,
    config::Costs,
    model::{CostMode, EndpointCostResponse},
    server::Alto,
};

pub(crate) const POLICY: &str = "\
plans:
  home: { rate: { down: 100mbit, up: 10mbit } }
  business: { rate: { down: 1gbit, up: 1gbit } }
  unused: { rate: { down: 1mbit, up: 1mbit } }
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32, \"2001:db8:1::10/128\"], plan: home }
  - { id: bob, prefixes: [100.64.1.20/32], plan: home }
  - { id: acme, prefixes: [100.64.8.0/24, \"2001:db8:8::/48\"], plan: business }
default_plan: home
";

pub(crate) fn policy(src: &str) -> Arc<peerwarden_policies::Policy> {
    Arc::new(peerwarden_policies::load_str(src, "policy.yaml").expect("the test policy is valid"))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the server writes JSON")
}

#[test]
fn the_network_map_groups_subscribers_by_plan_and_has_a_default_pid() {
    let alto = Alto::new(AltoConfig::default());
    let p = policy(POLICY);
    let map = json(&alto.network_map_json(Some(&p)));
    schema::assert_valid(&schema::network_map(), &map, "the network map");
    assert_eq!(
        map["network-map"],
        json!({
            "default": {"ipv4": ["0.0.0.0/0"], "ipv6": ["::/0"]},
            "plan-business": {"ipv4": ["100.64.8.0/24"], "ipv6": ["2001:db8:8::/48"]},
            "plan-home": {"ipv4": ["100.64.1.10/32", "100.64.1.20/32"], "ipv6": ["2001:db8:1::10/128"]},
        }),
        "a plan without subscribers has no PID"
    );
    assert_eq!(map["meta"]["vtag"]["resource-id"], "networkmap");
    let net = &alto.maps(Some(&p)).network;
    for (addr, pid) in [
        ("100.64.1.10", "plan-home"),
        ("100.64.1.11", "default"),
        ("100.64.8.200", "plan-business"),
        ("2001:db8:8:ffff::1", "plan-business"),
        ("::ffff:100.64.1.20", "plan-home"),
        ("198.51.100.7", "default"),
        ("2001:db8:9::1", "default"),
    ] {
        assert_eq!(net.pid_of(addr.parse().expect("address")), pid, "{addr}");
    }
}

#[test]
fn the_pids_of_the_config_replace_the_plans() {
    let config: AltoConfig = serde_json::from_value(json!({
        "pids": {"north": ["100.64.0.0/16", "2001:db8:1::/48"], "south": ["100.65.0.0/16", "100.64.1.0/24"]}
    }))
    .expect("section");
    let alto = Alto::new(config);
    let p = policy(POLICY);
    let map = json(&alto.network_map_json(Some(&p)));
    schema::assert_valid(&schema::network_map(), &map, "the network map");
    let names: Vec<&String> = map["network-map"]
        .as_object()
        .expect("map")
        .keys()
        .collect();
    assert_eq!(names, ["default", "north", "south"]);
    let net = &alto.maps(Some(&p)).network;
    // Longest prefix: 100.64.1.0/24 (south) inside 100.64.0.0/16 (north).
    assert_eq!(net.pid_of("100.64.1.10".parse().expect("a")), "south");
    assert_eq!(net.pid_of("100.64.2.10".parse().expect("a")), "north");
    // The config's PIDs do not follow the policy: the same tag without one.
    assert_eq!(alto.maps(None).network.tag(), net.tag());
}

#[test]
fn the_vtag_follows_the_pids_and_nothing_else() {
    let alto = Alto::new(AltoConfig::default());
    let tag = |src: &str| alto.maps(Some(&policy(src))).network.tag().to_string();
    let base = tag(POLICY);
    assert_eq!(base.len(), 64);
    assert_eq!(tag(POLICY), base, "the same policy again");
    let rates = POLICY.replace("down: 100mbit", "down: 200mbit");
    assert_eq!(tag(&rates), base, "a rate is not in the network map");
    let renamed = POLICY.replace("id: bob", "id: robert");
    assert_eq!(tag(&renamed), base, "ids are not in the network map");
    let moved = POLICY.replace("100.64.1.20/32", "100.64.1.21/32");
    assert_ne!(tag(&moved), base, "a prefix moved");
    let replanned = POLICY.replace(
        "100.64.1.20/32], plan: home",
        "100.64.1.20/32], plan: business",
    );
    assert_ne!(tag(&replanned), base, "a subscriber changed plan");
    assert_ne!(
        alto.maps(None).network.tag(),
        base,
        "no policy: only the default PID"
    );
}

#[test]
fn cost_maps_charge_transit_and_rank_it_second() {
    let config = AltoConfig {
        pids: None,
        costs: Costs {
            local: 2.0,
            transit: 25.5,
        },
    };
    let alto = Alto::new(config);
    let p = policy(POLICY);
    let net_tag = alto.maps(Some(&p)).network.vtag();
    for (mode, local, transit) in [
        (CostMode::Numerical, json!(2), json!(25.5)),
        (CostMode::Ordinal, json!(1), json!(2)),
    ] {
        let map = json(&alto.cost_map_json(Some(&p), mode));
        schema::assert_valid(&schema::cost_map(), &map, "the cost map");
        assert_eq!(
            map["meta"]["cost-type"],
            json!({"cost-mode": mode.as_str(), "cost-metric": "routingcost"})
        );
        assert_eq!(map["meta"]["dependent-vtags"], json!([net_tag]));
        let c = &map["cost-map"];
        assert_eq!(c["plan-home"]["plan-home"], local);
        assert_eq!(c["plan-home"]["plan-business"], local);
        assert_eq!(c["plan-business"]["default"], transit);
        assert_eq!(c["default"]["plan-home"], transit);
        assert!(
            c["default"].get("default").is_none(),
            "no cost between two outside addresses"
        );
    }
}

fn ecs(alto: &Alto, body: Value) -> Result<EndpointCostResponse, crate::AltoError> {
    let p = policy(POLICY);
    let bytes = serde_json::to_vec(&body).expect("body");
    alto.endpoint_cost(Some(&p), &bytes, Some("100.64.1.10".parse().expect("a")))
}

#[test]
fn the_endpoint_cost_service_costs_addresses_by_their_pids() {
    let alto = Alto::new(AltoConfig::default());
    let body = json!({
        "cost-type": {"cost-mode": "numerical", "cost-metric": "routingcost", "description": "ignored"},
        "endpoints": {
            "srcs": ["ipv4:100.64.1.10"],
            "dsts": ["ipv4:100.64.1.20", "ipv6:2001:db8:8::5", "ipv4:203.0.113.9", "ipv4:100.64.1.20"]
        },
        "extension-field": "ignored (section 8.3.7)"
    });
    schema::assert_valid(&schema::endpoint_cost_params(), &body, "the request");
    let r = ecs(&alto, body).expect("answered");
    let v = serde_json::to_value(&r).expect("json");
    schema::assert_valid(&schema::endpoint_cost(), &v, "the endpoint cost answer");
    assert_eq!(
        v["endpoint-cost-map"],
        json!({"ipv4:100.64.1.10": {"ipv4:100.64.1.20": 1, "ipv6:2001:db8:8::5": 1, "ipv4:203.0.113.9": 10}})
    );
    // No sources: the client's address; constraints filter.
    let r = ecs(
        &alto,
        json!({
            "cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"},
            "constraints": ["gt 1"],
            "endpoints": {"dsts": ["ipv4:100.64.1.20", "ipv4:203.0.113.9"]}
        }),
    )
    .expect("answered");
    assert_eq!(
        serde_json::to_value(&r).expect("json")["endpoint-cost-map"],
        json!({"ipv4:100.64.1.10": {"ipv4:203.0.113.9": 2}})
    );
}

#[test]
fn bad_requests_get_the_rfc_codes_with_the_field() {
    let alto = Alto::new(AltoConfig::default());
    let ok_type = json!({"cost-mode": "numerical", "cost-metric": "routingcost"});
    // (body, code, field, value)
    type Case<'a> = (Vec<u8>, &'a str, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (b"{\"cost-type\":".to_vec(), "E_SYNTAX", None, None),
        (b"[1, 2]".to_vec(), "E_SYNTAX", None, None),
        (b"\xff\xfe".to_vec(), "E_SYNTAX", None, None),
        (br#"{"endpoints": {"srcs": ["ipv4:1.2.3.4"]}}"#.to_vec(), "E_MISSING_FIELD", Some("cost-type"), None),
        (br#"{"cost-type": {"cost-metric": "routingcost"}, "endpoints": {}}"#.to_vec(), "E_MISSING_FIELD", Some("cost-type/cost-mode"), None),
        (serde_json::to_vec(&json!({"cost-type": ok_type})).expect("j"), "E_MISSING_FIELD", Some("endpoints"), None),
        (br#"{"cost-type": "routingcost", "endpoints": {}}"#.to_vec(), "E_INVALID_FIELD_TYPE", Some("cost-type"), None),
        (br#"{"cost-type": {"cost-mode": 1, "cost-metric": "routingcost"}, "endpoints": {}}"#.to_vec(), "E_INVALID_FIELD_TYPE", Some("cost-type/cost-mode"), None),
        (serde_json::to_vec(&json!({"cost-type": ok_type, "endpoints": {"srcs": "ipv4:1.2.3.4"}})).expect("j"), "E_INVALID_FIELD_TYPE", Some("endpoints/srcs"), None),
        (br#"{"cost-type": {"cost-mode": "fastest", "cost-metric": "routingcost"}, "endpoints": {}}"#.to_vec(), "E_INVALID_FIELD_VALUE", Some("cost-type/cost-mode"), Some("fastest")),
        (br#"{"cost-type": {"cost-mode": "numerical", "cost-metric": "hopcount"}, "endpoints": {}}"#.to_vec(), "E_INVALID_FIELD_VALUE", Some("cost-type/cost-metric"), Some("hopcount")),
        (serde_json::to_vec(&json!({"cost-type": ok_type, "endpoints": {"srcs": ["ipv4:300.1.2.3"]}})).expect("j"), "E_INVALID_FIELD_VALUE", Some("endpoints/srcs"), Some("ipv4:300.1.2.3")),
        (serde_json::to_vec(&json!({"cost-type": ok_type, "endpoints": {"dsts": [7]}})).expect("j"), "E_INVALID_FIELD_VALUE", Some("endpoints/dsts"), Some("7")),
        (serde_json::to_vec(&json!({"cost-type": ok_type, "endpoints": {"dsts": ["ipx:1"]}})).expect("j"), "E_INVALID_FIELD_VALUE", Some("endpoints/dsts"), Some("ipx:1")),
        (serde_json::to_vec(&json!({"cost-type": ok_type, "endpoints": {}})).expect("j"), "E_INVALID_FIELD_VALUE", Some("endpoints"), None),
        (serde_json::to_vec(&json!({"cost-type": ok_type, "constraints": ["about 3"], "endpoints": {"srcs": ["ipv4:1.2.3.4"]}})).expect("j"), "E_INVALID_FIELD_VALUE", Some("constraints"), Some("about 3")),
    ];
    let p = policy(POLICY);
    for (body, code, field, value) in cases {
        let e = alto
            .endpoint_cost_json(Some(&p), &body, None)
            .expect_err("refused");
        let v = serde_json::to_value(e.response()).expect("json");
        schema::assert_valid(&schema::error(), &v, "the error");
        let shown = String::from_utf8_lossy(&body);
        assert_eq!(v["meta"]["code"], code, "{shown}: {v}");
        if let Some(f) = field {
            assert_eq!(v["meta"]["field"], f, "{shown}: {v}");
        }
        if let Some(x) = value {
            assert_eq!(v["meta"]["value"], x, "{shown}: {v}");
        }
        if code == "E_SYNTAX" {
            assert!(v["meta"]["syntax-error"].is_string(), "{v}");
        }
    }
    // Too many pairs.
    let many: Vec<String> = (0..400)
        .map(|i| format!("ipv4:100.64.{}.{}", i / 250, i % 250))
        .collect();
    let body = serde_json::to_vec(
        &json!({"cost-type": ok_type, "endpoints": {"srcs": many, "dsts": many}}),
    )
    .expect("j");
    let e = alto
        .endpoint_cost_json(Some(&p), &body, None)
        .expect_err("refused");
    assert_eq!(e.code(), "E_INVALID_FIELD_VALUE");
}

#[test]
fn filtered_maps_keep_what_was_asked() {
    let alto = Alto::new(AltoConfig::default());
    let p = policy(POLICY);
    let full = json(&alto.network_map_json(Some(&p)));
    let f = json(
        &alto
            .network_map_filtered_json(
                Some(&p),
                br#"{"pids": ["plan-home", "nope", "plan-home"], "address-types": ["ipv6"]}"#,
            )
            .expect("answered"),
    );
    schema::assert_valid(&schema::network_map(), &f, "the filtered network map");
    assert_eq!(
        f["network-map"],
        json!({"plan-home": {"ipv6": ["2001:db8:1::10/128"]}})
    );
    assert_eq!(
        f["meta"]["vtag"], full["meta"]["vtag"],
        "the full map's tag (section 11.3.1.6)"
    );
    let all = json(
        &alto
            .network_map_filtered_json(Some(&p), br#"{"pids": []}"#)
            .expect("answered"),
    );
    assert_eq!(all, full, "an empty list is every PID");
    let e = alto
        .network_map_filtered_json(Some(&p), b"{}")
        .expect_err("pids is required");
    assert_eq!(e.code(), "E_MISSING_FIELD");

    let c = json(
        &alto
            .cost_map_filtered_json(
                Some(&p),
                br#"{"cost-type": {"cost-mode": "numerical", "cost-metric": "routingcost"},
                     "constraints": ["le 5"], "pids": {"srcs": ["plan-home"], "dsts": []}}"#,
            )
            .expect("answered"),
    );
    schema::assert_valid(&schema::cost_map(), &c, "the filtered cost map");
    assert_eq!(
        c["cost-map"],
        json!({"plan-home": {"plan-business": 1, "plan-home": 1}})
    );
}

#[test]
fn the_directory_lists_every_resource_with_its_media_type() {
    let alto = Alto::new(AltoConfig::default());
    let d = json(&alto.directory_json());
    schema::assert_valid(&schema::directory(), &d, "the directory");
    let r = &d["resources"];
    assert_eq!(d["meta"]["default-alto-network-map"], "networkmap");
    assert_eq!(
        r["networkmap"]["media-type"],
        "application/alto-networkmap+json"
    );
    assert_eq!(
        r["costmap-num-routingcost"]["capabilities"]["cost-type-names"],
        json!(["num-routing"])
    );
    assert_eq!(r["costmap-ord-routingcost"]["uses"], json!(["networkmap"]));
    assert_eq!(
        r["endpointcost"]["accepts"],
        "application/alto-endpointcostparams+json"
    );
    assert!(
        r["endpointcost"].get("uses").is_none(),
        "section 11.5.1.5: no uses"
    );
    // Every name a resource gives is defined in meta.cost-types.
    for (id, e) in r.as_object().expect("resources") {
        for n in e["capabilities"]["cost-type-names"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let n = n.as_str().expect("name");
            assert!(d["meta"]["cost-types"].get(n).is_some(), "{id}: {n}");
        }
    }
}

#[test]
fn a_client_ranks_peers_local_first_as_section_12_describes() {
    let alto = Alto::new(AltoConfig::default());
    let p = policy(POLICY);
    // Section 12.3: the endpoint cost service, ordinal, the peers as destinations.
    let peers = [
        "ipv4:203.0.113.9",
        "ipv4:100.64.8.7",
        "ipv6:2001:db8:9::1",
        "ipv4:100.64.1.20",
    ];
    let body = serde_json::to_vec(&json!({
        "cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"},
        "endpoints": {"srcs": ["ipv4:100.64.1.10"], "dsts": peers}
    }))
    .expect("j");
    let r = alto.endpoint_cost(Some(&p), &body, None).expect("answered");
    let row = &r.endpoint_cost_map["ipv4:100.64.1.10"];
    let mut ranked: Vec<&str> = peers.to_vec();
    ranked.sort_by(|a, b| {
        let c = |x: &str| row.get(x).and_then(|n| n.as_f64()).unwrap_or(f64::INFINITY);
        c(a).total_cmp(&c(b))
    });
    assert_eq!(
        &ranked[..2],
        ["ipv4:100.64.8.7", "ipv4:100.64.1.20"],
        "the peers inside first"
    );
}
