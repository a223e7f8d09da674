//! The ALTO server (RFC 7285) under `/api/v1/alto`: the routes only; the maps, costs,
//! requests and errors are `peerwarden_alto`'s. Reads, so `api.read_token` applies when
//! configured (the network map lists subscribers' prefixes). Answers carry the RFC's media
//! types; a wrong request is a 400 with `application/alto-error+json`.

use std::sync::Arc;

use axum::{
    Extension,
    extract::{ConnectInfo, State as Ext},
    http::{StatusCode, header},
    response::{IntoResponse as _, Response},
};
use peerwarden_alto::{AltoError, media, model::CostMode, server::Alto};
use peerwarden_policies::Policy;

use super::{
    ApiError,
    auth::Reader,
    body::{ALTO_MAX_BYTES, Body},
    tls::Peer,
};
use crate::state::State;

/// Runs `f` on the blocking pool (a network map of 100,000 subscribers is built there) with
/// the ALTO server and the active policy; answers its bytes as `media`, or its ALTO error.
async fn answer<F>(state: Arc<State>, media: &'static str, f: F) -> Result<Response, ApiError>
where
    F: FnOnce(&Alto, Option<&Arc<Policy>>) -> Result<Vec<u8>, AltoError> + Send + 'static,
{
    let out = tokio::task::spawn_blocking(move || {
        let policy = state.policy.active().map(|a| a.policy);
        f(&state.alto, policy.as_ref())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("ALTO task: {e}")))?;
    Ok(match out {
        Ok(body) => ([(header::CONTENT_TYPE, media)], body).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, media::ERROR)],
            e.to_json(),
        )
            .into_response(),
    })
}

/// The information resource directory (RFC 7285 section 9.2): the URI to give ALTO clients.
#[utoipa::path(get, path = "/api/v1/alto", tag = "alto", security((), ("bearer" = [])),
    responses((status = 200, description = "the directory", content_type = "application/alto-directory+json", body = Object),
        (status = 401, body = super::error::ErrorBody)))]
pub async fn directory(Ext(state): Ext<Arc<State>>, _: Reader) -> Result<Response, ApiError> {
    answer(state, media::DIRECTORY, |alto, _| Ok(alto.directory_json())).await
}

/// The network map (section 11.2.1): a PID per plan (or `alto.pids`) and `default`.
#[utoipa::path(get, path = "/api/v1/alto/networkmap", tag = "alto", security((), ("bearer" = [])),
    responses((status = 200, description = "the network map", content_type = "application/alto-networkmap+json", body = Object),
        (status = 401, body = super::error::ErrorBody)))]
pub async fn network_map(Ext(state): Ext<Arc<State>>, _: Reader) -> Result<Response, ApiError> {
    answer(state, media::NETWORK_MAP, |alto, p| {
        Ok(alto.network_map_json(p))
    })
    .await
}

/// A filtered network map (section 11.3.1).
#[utoipa::path(post, path = "/api/v1/alto/networkmap/filtered", tag = "alto", security((), ("bearer" = [])),
    request_body(content = Object, content_type = "application/alto-networkmapfilter+json"),
    responses((status = 200, description = "the PIDs asked for", content_type = "application/alto-networkmap+json", body = Object),
        (status = 400, description = "an RFC 7285 error", content_type = "application/alto-error+json", body = Object),
        (status = 401, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)))]
pub async fn network_map_filtered(
    Ext(state): Ext<Arc<State>>,
    _: Reader,
    Body(body): Body<ALTO_MAX_BYTES>,
) -> Result<Response, ApiError> {
    answer(state, media::NETWORK_MAP, move |alto, p| {
        alto.network_map_filtered_json(p, &body)
    })
    .await
}

/// The numerical `routingcost` map (section 11.2.3).
#[utoipa::path(get, path = "/api/v1/alto/costmap/num-routingcost", tag = "alto", security((), ("bearer" = [])),
    responses((status = 200, description = "alto.costs between PIDs", content_type = "application/alto-costmap+json", body = Object),
        (status = 401, body = super::error::ErrorBody)))]
pub async fn cost_map_num(Ext(state): Ext<Arc<State>>, _: Reader) -> Result<Response, ApiError> {
    answer(state, media::COST_MAP, |alto, p| {
        Ok(alto.cost_map_json(p, CostMode::Numerical))
    })
    .await
}

/// The ordinal `routingcost` map: the same costs ranked from 1.
#[utoipa::path(get, path = "/api/v1/alto/costmap/ord-routingcost", tag = "alto", security((), ("bearer" = [])),
    responses((status = 200, description = "ranks between PIDs", content_type = "application/alto-costmap+json", body = Object),
        (status = 401, body = super::error::ErrorBody)))]
pub async fn cost_map_ord(Ext(state): Ext<Arc<State>>, _: Reader) -> Result<Response, ApiError> {
    answer(state, media::COST_MAP, |alto, p| {
        Ok(alto.cost_map_json(p, CostMode::Ordinal))
    })
    .await
}

/// A filtered cost map (section 11.3.2), constraints included.
#[utoipa::path(post, path = "/api/v1/alto/costmap/filtered", tag = "alto", security((), ("bearer" = [])),
    request_body(content = Object, content_type = "application/alto-costmapfilter+json"),
    responses((status = 200, description = "the costs asked for", content_type = "application/alto-costmap+json", body = Object),
        (status = 400, description = "an RFC 7285 error", content_type = "application/alto-error+json", body = Object),
        (status = 401, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)))]
pub async fn cost_map_filtered(
    Ext(state): Ext<Arc<State>>,
    _: Reader,
    Body(body): Body<ALTO_MAX_BYTES>,
) -> Result<Response, ApiError> {
    answer(state, media::COST_MAP, move |alto, p| {
        alto.cost_map_filtered_json(p, &body)
    })
    .await
}

/// The endpoint cost service (section 11.5): the cost between addresses, by their PIDs.
/// No sources (or no destinations): the client's own address.
#[utoipa::path(post, path = "/api/v1/alto/endpointcost", tag = "alto", security((), ("bearer" = [])),
    request_body(content = Object, content_type = "application/alto-endpointcostparams+json"),
    responses((status = 200, description = "source → destination → cost", content_type = "application/alto-endpointcost+json", body = Object),
        (status = 400, description = "an RFC 7285 error", content_type = "application/alto-error+json", body = Object),
        (status = 401, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)))]
pub async fn endpoint_cost(
    Ext(state): Ext<Arc<State>>,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    _: Reader,
    Body(body): Body<ALTO_MAX_BYTES>,
) -> Result<Response, ApiError> {
    let client = peer.map(|Extension(ConnectInfo(Peer(a)))| a.ip());
    answer(state, media::ENDPOINT_COST, move |alto, p| {
        alto.endpoint_cost_json(p, &body, client)
    })
    .await
}
