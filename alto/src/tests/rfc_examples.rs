//! RFC 7285's own examples read into this crate's types and written back: the same JSON
//! comes out (field for field, numbers as written), and each holds to its schema.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::schema;
use crate::model::{
    CostMapResponse, EndpointCostParams, EndpointCostResponse, ErrorResponse,
    InfoResourceDirectory, NetworkMapResponse,
};

/// Reads `text` as a `T` and writes it back: the JSON must be the same.
fn round_trip<T: DeserializeOwned + Serialize>(text: &str, what: &str) -> Value {
    let original: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let typed: T =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} into its type: {e}"));
    let back = serde_json::to_value(&typed).expect("writing it back");
    assert_eq!(back, original, "{what} changed on the way through");
    original
}

/// Section 9.2.3. The RFC's text has a comma after the last field of the
/// `endpoint-property` entry, which JSON does not allow; it is left out here.
const DIRECTORY: &str = r#"{
  "meta" : {
     "cost-types": {
        "num-routing": {"cost-mode" : "numerical", "cost-metric": "routingcost", "description": "My default"},
        "num-hop":     {"cost-mode" : "numerical", "cost-metric": "hopcount"},
        "ord-routing": {"cost-mode" : "ordinal", "cost-metric": "routingcost"},
        "ord-hop":     {"cost-mode" : "ordinal", "cost-metric": "hopcount"}
     },
     "default-alto-network-map" : "my-default-network-map"
  },
  "resources" : {
     "my-default-network-map" : {
        "uri" : "http://alto.example.com/networkmap",
        "media-type" : "application/alto-networkmap+json"
     },
     "numerical-routing-cost-map" : {
        "uri" : "http://alto.example.com/costmap/num/routingcost",
        "media-type" : "application/alto-costmap+json",
        "capabilities" : {"cost-type-names" : [ "num-routing" ]},
        "uses": [ "my-default-network-map" ]
     },
     "numerical-hopcount-cost-map" : {
        "uri" : "http://alto.example.com/costmap/num/hopcount",
        "media-type" : "application/alto-costmap+json",
        "capabilities" : {"cost-type-names" : [ "num-hop" ]},
        "uses": [ "my-default-network-map" ]
     },
     "custom-maps-resources" : {
        "uri" : "http://custom.alto.example.com/maps",
        "media-type" : "application/alto-directory+json"
     },
     "endpoint-property" : {
        "uri" : "http://alto.example.com/endpointprop/lookup",
        "media-type" : "application/alto-endpointprop+json",
        "accepts" : "application/alto-endpointpropparams+json",
        "capabilities" : {
          "prop-types" : [ "my-default-network-map.pid", "priv:ietf-example-prop" ]
        }
     },
     "endpoint-cost" : {
        "uri" : "http://alto.example.com/endpointcost/lookup",
        "media-type" : "application/alto-endpointcost+json",
        "accepts" : "application/alto-endpointcostparams+json",
        "capabilities" : {
           "cost-constraints" : true,
           "cost-type-names" : [ "num-routing", "num-hop", "ord-routing", "ord-hop"]
        }
     }
  }
}"#;

/// Section 11.2.1.7.
const NETWORK_MAP: &str = r#"{
  "meta" : {
    "vtag": {"resource-id": "my-default-network-map", "tag": "da65eca2eb7a10ce8b059740b0b2e3f8eb1d4785"}
  },
  "network-map" : {
    "PID1" : {"ipv4" : ["192.0.2.0/24", "198.51.100.0/25"]},
    "PID2" : {"ipv4" : ["198.51.100.128/25"]},
    "PID3" : {"ipv4" : ["0.0.0.0/0"], "ipv6" : ["::/0"]}
  }
}"#;

/// Section 11.2.3.7.
const COST_MAP: &str = r#"{
  "meta" : {
    "dependent-vtags" : [
      {"resource-id": "my-default-network-map", "tag": "3ee2cb7e8d63d9fab71b9b34cbf764436315542e"}
    ],
    "cost-type" : {"cost-mode"  : "numerical", "cost-metric": "routingcost"}
  },
  "cost-map" : {
    "PID1": { "PID1": 1,  "PID2": 5,  "PID3": 10 },
    "PID2": { "PID1": 5,  "PID2": 1,  "PID3": 15 },
    "PID3": { "PID1": 20, "PID2": 15  }
  }
}"#;

/// Section 11.3.2.7, the answer.
const FILTERED_COST_MAP: &str = r#"{
  "meta" : {
    "dependent-vtags" : [
      {"resource-id": "my-default-network-map", "tag": "75ed013b3cb58f896e839582504f622838ce670f"}
    ],
    "cost-type": {"cost-mode" : "numerical", "cost-metric" : "routingcost"}
  },
  "cost-map" : {
    "PID1": { "PID1": 0,  "PID2": 1,  "PID3": 2 }
  }
}"#;

/// Section 11.5.1.7, the request.
const ENDPOINT_COST_PARAMS: &str = r#"{
  "cost-type": {"cost-mode" : "ordinal", "cost-metric" : "routingcost"},
  "endpoints" : {
    "srcs": [ "ipv4:192.0.2.2" ],
    "dsts": ["ipv4:192.0.2.89", "ipv4:198.51.100.34", "ipv4:203.0.113.45"]
  }
}"#;

/// Section 11.5.1.7, the answer.
const ENDPOINT_COST: &str = r#"{
  "meta" : {
    "cost-type": {"cost-mode" : "ordinal", "cost-metric" : "routingcost"}
  },
  "endpoint-cost-map" : {
    "ipv4:192.0.2.2": {
      "ipv4:192.0.2.89"    : 1,
      "ipv4:198.51.100.34" : 2,
      "ipv4:203.0.113.45"  : 3
    }
  }
}"#;

#[test]
fn the_rfc_examples_round_trip_and_hold_to_the_schemas() {
    let d = round_trip::<InfoResourceDirectory>(DIRECTORY, "the directory (9.2.3)");
    schema::assert_valid(&schema::directory(), &d, "the RFC's directory");
    let n = round_trip::<NetworkMapResponse>(NETWORK_MAP, "the network map (11.2.1.7)");
    schema::assert_valid(&schema::network_map(), &n, "the RFC's network map");
    for (text, what) in [
        (COST_MAP, "the cost map (11.2.3.7)"),
        (FILTERED_COST_MAP, "the filtered cost map (11.3.2.7)"),
    ] {
        let c = round_trip::<CostMapResponse>(text, what);
        schema::assert_valid(&schema::cost_map(), &c, what);
    }
    let p = round_trip::<EndpointCostParams>(
        ENDPOINT_COST_PARAMS,
        "the endpoint cost request (11.5.1.7)",
    );
    schema::assert_valid(
        &schema::endpoint_cost_params(),
        &p,
        "the RFC's endpoint cost request",
    );
    let e =
        round_trip::<EndpointCostResponse>(ENDPOINT_COST, "the endpoint cost answer (11.5.1.7)");
    schema::assert_valid(
        &schema::endpoint_cost(),
        &e,
        "the RFC's endpoint cost answer",
    );
    let err = round_trip::<ErrorResponse>(
        r#"{"meta": {"code": "E_INVALID_FIELD_VALUE", "field": "cost-type/cost-mode", "value": "foo"}}"#,
        "an error (8.5.2)",
    );
    schema::assert_valid(&schema::error(), &err, "an error");
}

#[test]
fn the_schemas_refuse_what_the_rfc_forbids() {
    let mut n: Value = serde_json::from_str(NETWORK_MAP).expect("json");
    n["network-map"]["PID 4"] = json!({"ipv4": ["192.0.2.0/33"]});
    n["meta"]["vtag"]["tag"] = json!("has a space");
    let bad = schema::violations(&schema::network_map(), &n);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    let mut c: Value = serde_json::from_str(COST_MAP).expect("json");
    c["meta"]["cost-type"]["cost-mode"] = json!("fastest");
    c["meta"]["dependent-vtags"] = json!([]);
    c["cost-map"]["PID1"]["PID2"] = json!("5");
    let bad = schema::violations(&schema::cost_map(), &c);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    let mut e: Value = serde_json::from_str(ENDPOINT_COST).expect("json");
    e["endpoint-cost-map"]["ipv4:192.0.2.2"]["ipv5:1.2.3.4"] = json!(1);
    e["meta"].as_object_mut().expect("meta").remove("cost-type");
    let bad = schema::violations(&schema::endpoint_cost(), &e);
    assert_eq!(bad.len(), 2, "{bad:#?}");
    let bad = schema::violations(&schema::error(), &json!({"meta": {"code": "E_OOPS"}}));
    assert_eq!(bad.len(), 1, "{bad:#?}");
}
