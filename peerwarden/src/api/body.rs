//! Request bodies with a limit per route: [`Body<MAX>`] reads at most `MAX` bytes and
//! answers 413 beyond (a `Content-Length` over the limit is refused before reading).
//! Handlers take it last, after their [`Writer`](super::auth::Writer), so nothing of an
//! unauthenticated body is read.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::header,
};

use super::ApiError;

/// The largest policy accepted over the API: 16 MiB. The benchmark's policy of 100,000
/// subscribers (tests/benches/policy_scale.rs: an IPv4 /32 and an IPv6 /64 each, a plan)
/// is 8.3 MiB of YAML; twice that leaves room for longer ids and more prefixes.
pub const POLICY_MAX_BYTES: usize = 16 << 20;
/// The largest ALTO request (RFC 7285 filters and endpoint cost queries): 64 KiB is about
/// 3,000 typed addresses; the endpoint cost service bounds the pairs asked for on its own.
pub const ALTO_MAX_BYTES: usize = 64 << 10;
/// The largest clock request: `{"now": "..."}` is under 100 bytes.
pub const CLOCK_MAX_BYTES: usize = 4096;

/// A request body of at most `MAX` bytes.
pub struct Body<const MAX: usize>(pub Bytes);

impl<S: Send + Sync, const MAX: usize> FromRequest<S> for Body<MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let too_large = || ApiError::TooLarge(format!("the body is over {MAX} bytes"));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX as u64) {
            return Err(too_large());
        }
        match axum::body::to_bytes(req.into_body(), MAX).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) => match e
                .into_inner()
                .downcast::<http_body_util::LengthLimitError>()
            {
                Ok(_) => Err(too_large()),
                Err(e) => Err(ApiError::BadRequest(format!("reading the body: {e}"))),
            },
        }
    }
}
