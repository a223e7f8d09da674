//! The ALTO server (RFC 7285, issue 15) of the real daemon on a lab gateway, from the outside, as an
//! ALTO client sees it:
//!
//! - the directory, and every resource it lists, answered with the media type the
//!   directory gives and held to the schemas written from the RFC's text (the crate's
//!   `alto/src/tests/schema.rs`, included here);
//! - the network map has the lab policy's plan as a PID holding alice's and bob's
//!   prefixes, and `default`; the cost maps depend on its version tag;
//! - a client ranks a peer list as RFC 7285 section 12 describes, by the cost map
//!   (12.2) and by the endpoint cost service's ordinal costs (12.3): the peers inside the
//!   network before those across transit;
//! - the version tag stays through requests and a reload that changes no PID, and changes
//!   when a reload (`PUT /api/v1/policy`) adds a subscriber;
//! - wrong requests are 400s with the RFC's error codes as `application/alto-error+json`,
//!   too large ones 413, and none changes anything; without the read token, 401.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test api alto::`.

#[path = "../../../alto/src/tests/schema.rs"]
mod schema;

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    path::Path,
    time::Duration,
};

use peerwarden_lab::http_response;
use peerwarden_tests::lab::{Daemon, Lab, TempDir};
use serde_json::{Value, json};

const PREFIX: &str = "pwal";
const PORT: u16 = 9487;
const TOKEN: &str = "alto-test-write-token-93f1";
const READ_TOKEN: &str = "alto-test-read-token-5b2e7";

/// One answer: status, `Content-Type`, body.
struct Answer {
    code: u16,
    media: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// An HTTP/1.0 request to the daemon's API.
fn call(method: &str, path: &str, token: Option<&str>, media: &str, body: &[u8]) -> Answer {
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !media.is_empty() {
        head.push_str(&format!("Content-Type: {media}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    // A refused body may be closed on before it is all sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let (code, body) = http_response(&raw);
    let text = String::from_utf8_lossy(&raw);
    let head = text.split_once("\r\n\r\n").map_or(&*text, |(h, _)| h);
    let media = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Answer { code, media, body }
}

fn get(path: &str) -> Answer {
    call("GET", path, Some(READ_TOKEN), "", b"")
}

fn post(path: &str, media: &str, body: &Value) -> Answer {
    call(
        "POST",
        path,
        Some(READ_TOKEN),
        media,
        body.to_string().as_bytes(),
    )
}

/// The schema of what a media type carries.
fn schema_of(media: &str) -> Value {
    match media {
        "application/alto-directory+json" => schema::directory(),
        "application/alto-networkmap+json" => schema::network_map(),
        "application/alto-costmap+json" => schema::cost_map(),
        "application/alto-endpointcost+json" => schema::endpoint_cost(),
        "application/alto-error+json" => schema::error(),
        other => panic!("no schema for {other}"),
    }
}

/// `answer` is a 200 of `media` that holds to its schema.
fn valid(answer: &Answer, media: &str, what: &str) -> Value {
    assert_eq!(answer.code, 200, "{what}: {}", answer.body);
    assert_eq!(answer.media, media, "{what}");
    let v = answer.json();
    schema::assert_valid(&schema_of(media), &v, what);
    v
}

/// `answer` is an RFC 7285 error with `code`.
fn alto_error(answer: &Answer, code: &str, what: &str) {
    assert_eq!(answer.code, 400, "{what}: {}", answer.body);
    assert_eq!(answer.media, "application/alto-error+json", "{what}");
    let v = answer.json();
    schema::assert_valid(&schema::error(), &v, what);
    assert_eq!(v["meta"]["code"], code, "{what}: {v}");
}

/// The PID of `addr` by longest-prefix match over a network map (section 11.2.2), as a
/// client does it.
fn client_pid(map: &Value, addr: IpAddr) -> String {
    let mut best: Option<(u8, String)> = None;
    for (pid, group) in map["network-map"].as_object().expect("map") {
        for (ty, prefixes) in group.as_object().expect("group") {
            for p in prefixes.as_array().expect("prefixes") {
                let (net, len) = p.as_str().and_then(|p| p.split_once('/')).expect("prefix");
                let (net, len): (IpAddr, u8) =
                    (net.parse().expect("net"), len.parse().expect("len"));
                let inside = match (net, addr) {
                    (IpAddr::V4(n), IpAddr::V4(a)) if ty == "ipv4" => {
                        len == 0 || (u32::from(n) ^ u32::from(a)) >> (32 - u32::from(len)) == 0
                    }
                    (IpAddr::V6(n), IpAddr::V6(a)) if ty == "ipv6" => {
                        len == 0 || (u128::from(n) ^ u128::from(a)) >> (128 - u32::from(len)) == 0
                    }
                    _ => false,
                };
                if inside && best.as_ref().is_none_or(|(l, _)| len > *l) {
                    best = Some((len, pid.clone()));
                }
            }
        }
    }
    best.map(|(_, p)| p)
        .expect("a complete map has a PID for every address")
}

fn lab_policy() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/lab.yaml"),
    )
    .expect("lab policy")
}

fn put_policy(text: &str) -> Answer {
    call(
        "PUT",
        "/api/v1/policy",
        Some(TOKEN),
        "application/yaml",
        text.as_bytes(),
    )
}

#[test]
fn alto_serves_the_policy_as_rfc_7285_maps_and_ranks_local_peers_first() {
    let tmp = TempDir::new("alto");
    let lab = Lab::up(PREFIX, PORT, &["--no-daemon"]);
    let policy_path = tmp.0.join("policy.yaml");
    std::fs::write(&policy_path, lab_policy()).expect("policy");
    let config = tmp.0.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
             netns: {netns}\n\
             api: {{ listen: \"127.0.0.1:{PORT}\", token: {TOKEN}, read_token: {READ_TOKEN} }}\n\
             flow_table_size: 65536\n\
             policy: {policy}\n\
             history: {{ path: {store} }}\n\
             alto: {{ costs: {{ local: 2, transit: 30 }} }}\n",
            netns = lab.netns("gw"),
            policy = policy_path.display(),
            store = tmp.0.join("history.db").display(),
        ),
    )
    .expect("config");
    let daemon = Daemon::start(&config, &tmp.0.join("daemon.log"), lab.api_addr());

    // The read token guards every resource.
    assert_eq!(call("GET", "/api/v1/alto", None, "", b"").code, 401);
    assert_eq!(
        call(
            "GET",
            "/api/v1/alto/networkmap",
            Some("wrong-token-000000000"),
            "",
            b""
        )
        .code,
        401
    );

    // The directory, and each GET resource it lists, with its media type and schema.
    let dir = valid(
        &get("/api/v1/alto"),
        "application/alto-directory+json",
        "the directory",
    );
    let resources = dir["resources"].as_object().expect("resources").clone();
    assert_eq!(resources.len(), 6, "{dir:#}");
    for (id, e) in &resources {
        if e.get("accepts").is_none() {
            let uri = e["uri"].as_str().expect("uri");
            valid(&get(uri), e["media-type"].as_str().expect("media"), id);
        }
    }
    let uri = |id: &str| resources[id]["uri"].as_str().expect("uri").to_string();
    let net_id = dir["meta"]["default-alto-network-map"]
        .as_str()
        .expect("default map");

    // The network map: the lab plan's PID with alice's and bob's prefixes, and default.
    let map = valid(
        &get(&uri(net_id)),
        "application/alto-networkmap+json",
        "the network map",
    );
    assert_eq!(
        map["network-map"],
        json!({
            "default": {"ipv4": ["0.0.0.0/0"], "ipv6": ["::/0"]},
            "plan-home-50": {"ipv4": ["100.64.1.10/32", "100.64.1.20/32"],
                             "ipv6": ["2001:db8:1::10/128", "2001:db8:1::20/128"]}
        })
    );
    let vtag = map["meta"]["vtag"].clone();
    let num = valid(
        &get(&uri("costmap-num-routingcost")),
        "application/alto-costmap+json",
        "num",
    );
    let ord = valid(
        &get(&uri("costmap-ord-routingcost")),
        "application/alto-costmap+json",
        "ord",
    );
    for c in [&num, &ord] {
        assert_eq!(
            c["meta"]["dependent-vtags"],
            json!([vtag]),
            "the cost map names the network map's version"
        );
    }
    assert_eq!(
        num["cost-map"]["plan-home-50"],
        json!({"plan-home-50": 2, "default": 30})
    );
    assert_eq!(
        ord["cost-map"]["plan-home-50"],
        json!({"plan-home-50": 1, "default": 2})
    );

    // Section 12.2: alice ranks her peers by the numerical cost map.
    let peers: Vec<IpAddr> = [
        "203.0.113.9",
        "100.64.1.20",
        "198.51.100.77",
        "2001:db8:1::20",
        "2001:db8:ff::1",
    ]
    .iter()
    .map(|a| a.parse().expect("address"))
    .collect();
    let alice: IpAddr = "100.64.1.10".parse().expect("alice");
    let mine = client_pid(&map, alice);
    let cost = |peer: &IpAddr| {
        num["cost-map"][&mine][client_pid(&map, *peer)]
            .as_f64()
            .unwrap_or(f64::INFINITY)
    };
    let mut by_map = peers.clone();
    by_map.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
    let local: Vec<IpAddr> = ["100.64.1.20", "2001:db8:1::20"]
        .iter()
        .map(|a| a.parse().expect("a"))
        .collect();
    assert_eq!(
        by_map[..2],
        local[..],
        "bob's two addresses first: {by_map:?}"
    );

    // Section 12.3: the same list ranked by the endpoint cost service, ordinal.
    let typed = |a: &IpAddr| match a {
        IpAddr::V4(a) => format!("ipv4:{a}"),
        IpAddr::V6(a) => format!("ipv6:{a}"),
    };
    let dsts: Vec<String> = peers.iter().map(typed).collect();
    let ecs_params = json!({
        "cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"},
        "endpoints": {"srcs": [typed(&alice)], "dsts": dsts}
    });
    schema::assert_valid(&schema::endpoint_cost_params(), &ecs_params, "the request");
    let ecs = valid(
        &post(
            &uri("endpointcost"),
            "application/alto-endpointcostparams+json",
            &ecs_params,
        ),
        "application/alto-endpointcost+json",
        "the endpoint cost answer",
    );
    let row = &ecs["endpoint-cost-map"][typed(&alice)];
    let mut by_ecs = peers.clone();
    by_ecs.sort_by_key(|p| row[typed(p)].as_u64().unwrap_or(u64::MAX));
    assert_eq!(by_ecs, by_map, "both ways rank alike: {row}");
    assert_eq!(row[typed(&local[0])], 1);
    assert_eq!(row["ipv4:203.0.113.9"], 2);

    // Without sources, the source is the client: 127.0.0.1 is outside the network.
    let from_client = valid(
        &post(
            &uri("endpointcost"),
            "application/alto-endpointcostparams+json",
            &json!({
                "cost-type": {"cost-mode": "numerical", "cost-metric": "routingcost"},
                "endpoints": {"dsts": ["ipv4:100.64.1.10"]}
            }),
        ),
        "application/alto-endpointcost+json",
        "the endpoint cost from the client",
    );
    assert_eq!(
        from_client["endpoint-cost-map"],
        json!({"ipv4:127.0.0.1": {"ipv4:100.64.1.10": 30}})
    );

    // The filtered maps.
    let f = valid(
        &post(
            &uri("networkmap-filtered"),
            "application/alto-networkmapfilter+json",
            &json!({"pids": ["plan-home-50"], "address-types": ["ipv6"]}),
        ),
        "application/alto-networkmap+json",
        "the filtered network map",
    );
    assert_eq!(
        f["network-map"],
        json!({"plan-home-50": {"ipv6": ["2001:db8:1::10/128", "2001:db8:1::20/128"]}})
    );
    assert_eq!(f["meta"]["vtag"], vtag);
    let f = valid(
        &post(
            &uri("costmap-filtered"),
            "application/alto-costmapfilter+json",
            &json!({"cost-type": {"cost-mode": "numerical", "cost-metric": "routingcost"},
                      "constraints": ["ge 10"], "pids": {"srcs": [], "dsts": ["default"]}}),
        ),
        "application/alto-costmap+json",
        "the filtered cost map",
    );
    assert_eq!(f["cost-map"], json!({"plan-home-50": {"default": 30}}));

    // Wrong requests: the RFC's codes, nothing changed.
    let before = get("/api/v1/policy").json();
    let ecs_uri = uri("endpointcost");
    let raw = |body: &[u8]| {
        call(
            "POST",
            &ecs_uri,
            Some(READ_TOKEN),
            "application/alto-endpointcostparams+json",
            body,
        )
    };
    alto_error(&raw(b"{\"cost-type\": {"), "E_SYNTAX", "cut JSON");
    alto_error(&raw(b"\x00\xff"), "E_SYNTAX", "binary");
    alto_error(
        &raw(br#"{"endpoints": {"srcs": ["ipv4:100.64.1.10"]}}"#),
        "E_MISSING_FIELD",
        "no cost-type",
    );
    alto_error(
        &raw(br#"{"cost-type": [], "endpoints": {}}"#),
        "E_INVALID_FIELD_TYPE",
        "cost-type array",
    );
    alto_error(
        &raw(br#"{"cost-type": {"cost-mode": "ordinal", "cost-metric": "hopcount"}, "endpoints": {"srcs": ["ipv4:1.2.3.4"]}}"#),
        "E_INVALID_FIELD_VALUE",
        "hopcount",
    );
    alto_error(
        &raw(br#"{"cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"}, "endpoints": {"dsts": ["ipv4:100.64.1.300"]}}"#),
        "E_INVALID_FIELD_VALUE",
        "a bad address",
    );
    let big = vec![b' '; 70 * 1024];
    assert_eq!(raw(&big).code, 413, "over the body limit");
    assert_eq!(
        get("/api/v1/policy").json()["loaded_at"],
        before["loaded_at"]
    );
    assert_eq!(
        get(&uri(net_id)).json()["meta"]["vtag"],
        vtag,
        "nothing changed"
    );

    // A reload that moves no prefix keeps the tag; one that adds a subscriber changes it.
    let rates = lab_policy().replace(
        "rate: { down: 1gbit, up: 100mbit }",
        "rate: { down: 500mbit, up: 50mbit }",
    );
    assert_ne!(
        rates,
        lab_policy(),
        "the lab policy's rate moved; update this test"
    );
    let r = put_policy(&rates);
    assert_eq!(r.code, 200, "{}", r.body);
    assert_ne!(
        get("/api/v1/policy").json()["loaded_at"],
        before["loaded_at"],
        "a reload happened"
    );
    assert_eq!(
        get(&uri(net_id)).json()["meta"]["vtag"],
        vtag,
        "a rate is not in the network map"
    );
    let carol = lab_policy().replace(
        "  - id: bob\n",
        "  - id: carol\n    prefixes: [100.64.1.30/32]\n    plan: home-50\n  - id: bob\n",
    );
    assert_ne!(
        carol,
        lab_policy(),
        "the lab policy's subscribers moved; update this test"
    );
    let r = put_policy(&carol);
    assert_eq!(r.code, 200, "{}\n{carol}", r.body);
    let map2 = valid(
        &get(&uri(net_id)),
        "application/alto-networkmap+json",
        "the new network map",
    );
    assert_ne!(
        map2["meta"]["vtag"], vtag,
        "carol is in the map: a new version"
    );
    assert_eq!(
        map2["network-map"]["plan-home-50"]["ipv4"],
        json!(["100.64.1.10/32", "100.64.1.20/32", "100.64.1.30/32"])
    );
    let num2 = get(&uri("costmap-num-routingcost")).json();
    assert_eq!(
        num2["meta"]["dependent-vtags"],
        json!([map2["meta"]["vtag"]])
    );
    assert_eq!(
        get(&uri(net_id)).json()["meta"]["vtag"],
        map2["meta"]["vtag"],
        "and stays"
    );

    daemon.stop_cleanly("alto");
}
