//! The request-security layers every function runs behind, locally and on Lambda alike:
//! client address, authentication, rate limits and idempotency. [`crate::app`] puts
//! them in order.

use std::net::SocketAddr;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

use jarvis_config::SecurityConfig;
use jarvis_http::ApiError;
use jarvis_identity::idempotency::{self, Begin, Saved};
use jarvis_identity::{CredentialRejection, Identity, credential};

use crate::state::AppState;

/// The client's address: API Gateway's source IP on Lambda; else, behind
/// [`trusted_proxy_hops`](SecurityConfig::trusted_proxy_hops) proxies, the `X-Forwarded-For`
/// entry the outermost of them added; else the peer address of the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The address `hops` trusted proxies saw: each appends the address it received the request
/// from, so the `hops`-th entry from the right is the one the outermost trusted proxy wrote.
/// Everything left of it came from the client and could be anything. `None` when the header
/// has fewer entries (the request did not pass every proxy) or that entry is not an address.
fn forwarded_for(headers: &HeaderMap, hops: usize) -> Option<String> {
    if hops == 0 {
        return None;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let index = entries.len().checked_sub(hops)?;
    entries[index]
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

fn client_ip(request: &Request, security: &SecurityConfig) -> Option<String> {
    if let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref()
        && let Some(ip) = &context.http.source_ip
    {
        return Some(ip.clone());
    }
    if let Some(ip) = forwarded_for(request.headers(), security.trusted_proxy_hops) {
        return Some(ip);
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// The user credential a request carries: an API key (`X-Api-Key`, or a `Bearer` value with
/// the key prefix) or an access token (a `Bearer` JWT). Other bearer values (a peer's sync
/// token) are left to the routes that take them.
fn credential_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let api_key = headers
        .get("x-api-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::Unauthorized("malformed X-Api-Key header".into()))?;
    let bearer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::Unauthorized(
                    "use Authorization: Bearer <token>".into(),
                ));
            }
            let token = token.trim();
            let ours = token.starts_with(jarvis_identity::token::API_KEY_PREFIX)
                || token.bytes().filter(|b| *b == b'.').count() == 2;
            ours.then(|| token.to_owned())
        }
    };
    match (api_key, bearer) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "send either Authorization or X-Api-Key, not both",
        )),
        (key, bearer) => Ok(key.or(bearer)),
    }
}

/// Records the client address and, when the request carries user credentials, resolves them
/// to an [`Identity`]. Refused credentials become a [`CredentialRejection`], which routes that
/// need an identity answer with (401, or 503 when they could not be checked).
pub async fn authenticate(state: AppState, mut request: Request, next: Next) -> Response {
    let ip = client_ip(&request, &state.config.security);
    request.extensions_mut().insert(ClientIp(ip));
    let outcome = match credential_of(request.headers()) {
        Ok(None) => None,
        Ok(Some(credential)) => Some(
            credential::authenticate(
                state.store.as_ref(),
                state.secrets.as_ref(),
                &state.config.security,
                &credential,
            )
            .await,
        ),
        Err(err) => Some(Err(err)),
    };
    match outcome {
        None => {}
        Some(Ok(identity)) => {
            tracing::Span::current().record("user_id", identity.user_id.as_str());
            request.extensions_mut().insert(identity);
        }
        Some(Err(err)) => {
            if let ApiError::Unavailable(cause) | ApiError::Internal(cause) = &err {
                tracing::warn!(error = %cause, "credentials could not be checked");
            }
            request
                .extensions_mut()
                .insert(CredentialRejection(std::sync::Arc::new(err)));
        }
    }
    next.run(request).await
}

/// The client address recorded by [`authenticate`], or `unknown`.
fn address_of(request: &Request) -> String {
    request
        .extensions()
        .get::<ClientIp>()
        .and_then(|c| c.0.clone())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whom a request's budget and idempotency keys belong to: the account, or the address of
/// an anonymous caller.
fn caller_of(request: &Request) -> String {
    match request.extensions().get::<Identity>() {
        Some(identity) => format!("user:{}", identity.user_id),
        None => format!("ip:{}", address_of(request)),
    }
}

fn refused(err: &ApiError, budget: &'static str) {
    if matches!(err, ApiError::TooManyRequests { .. }) {
        metrics::counter!("rate_limit_refusals_total", "budget" => budget).increment(1);
    }
}

/// Counts the request against the caller's budget (per account, or per address when
/// anonymous) and, on `/auth/` routes, against the address's sign-in budget too.
pub async fn rate_limit(state: AppState, request: Request, next: Next) -> Response {
    let security = &state.config.security;
    let store = state.store.as_ref();
    let sign_in = request.uri().path().starts_with("/auth/");
    let (ip, bucket) = (address_of(&request), caller_of(&request));
    let outcome = async {
        if sign_in {
            state
                .limiter
                .hit(
                    store,
                    state.replica,
                    &format!("auth-ip:{ip}"),
                    security.auth_rate_limit_per_minute,
                )
                .await
                .inspect_err(|e| refused(e, "sign_in"))?;
        }
        state
            .limiter
            .hit(
                store,
                state.replica,
                &bucket,
                security.rate_limit_per_minute,
            )
            .await
            .inspect_err(|e| refused(e, "caller"))
    }
    .await;
    match outcome {
        Ok(_) => next.run(request).await,
        // An unreachable store must not take `/health` down with it; every route that needs
        // the store fails on its own anyway.
        Err(ApiError::Unavailable(cause)) => {
            tracing::warn!(error = %cause, "rate limit not applied: store unavailable");
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

/// Makes a POST with an `Idempotency-Key` header run once (see [`idempotency`]).
pub async fn idempotent(state: AppState, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw_key) = request.headers().get(idempotency::HEADER).cloned() else {
        return next.run(request).await;
    };
    match run_idempotent(&state, raw_key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run_idempotent(
    state: &AppState,
    raw_key: HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let reject = |err: ApiError| err.into_response();
    let key = raw_key
        .to_str()
        .map_err(|_| ApiError::invalid_field("Idempotency-Key", "must be visible ASCII"))
        .and_then(|k| idempotency::parse_key(k).map(str::to_owned))
        .map_err(reject)?;
    let scope = caller_of(&request);
    let (parts, body) = request.into_parts();
    let bytes: Bytes = to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| reject(ApiError::PayloadTooLarge))?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let fingerprint = idempotency::fingerprint(parts.method.as_str(), &path, &bytes);
    let store = state.store.as_ref();
    let clock = &state.clock;
    let secrets = state
        .secrets
        .current()
        .await
        .map_err(|err| reject(err.into()))?;
    match idempotency::begin(store, clock, &secrets, &scope, &key, &fingerprint)
        .await
        .map_err(reject)?
    {
        Begin::Replay(saved) => return Ok(replay(saved)),
        Begin::Claimed => {}
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Some(stream) = streamed_at(&response) {
        // A streamed answer is not held back to be kept: a retry is sent to the stream,
        // which replays every event from the first.
        let saved = Saved {
            status: StatusCode::SEE_OTHER.as_u16(),
            content_type: None,
            location: Some(stream),
            body: Vec::new(),
        };
        if let Err(err) = idempotency::finish(store, clock, &secrets, &scope, &key, &saved).await {
            tracing::warn!(error = %err, "could not keep an idempotent answer for replay");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = match to_bytes(body, idempotency::MAX_RESPONSE_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            // Too large to keep: release the key rather than replay a truncated answer.
            let _ = idempotency::abandon(store, clock, &scope, &key).await;
            return Err(reject(ApiError::internal(
                "response too large to keep for replay",
            )));
        }
    };
    if !idempotency::is_final(parts.status.as_u16()) {
        if let Err(err) = idempotency::abandon(store, clock, &scope, &key).await {
            tracing::warn!(error = %err, "could not release an idempotency key");
        }
    } else {
        let header_text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let saved = Saved {
            status: parts.status.as_u16(),
            content_type: header_text(header::CONTENT_TYPE),
            location: header_text(header::LOCATION),
            body: body.to_vec(),
        };
        // The side effect happened, so the client gets its answer even if the record cannot
        // be kept: an error would only invite the retry that runs it again. The key stays
        // claimed (409 to a retry) until its lease ends.
        if let Err(err) = idempotency::finish(store, clock, &secrets, &scope, &key, &saved).await {
            tracing::error!(error = %err, "could not keep an idempotent response for replay");
        }
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// Where a streamed answer (`text/event-stream`) can be read again: its `Content-Location`.
fn streamed_at(response: &Response) -> Option<String> {
    let headers = response.headers();
    let streamed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    streamed
        .then(|| {
            headers
                .get(header::CONTENT_LOCATION)?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .flatten()
}

fn replay(saved: Saved) -> Response {
    let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
    let mut response = (status, saved.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for (name, value) in [
        (header::CONTENT_TYPE, saved.content_type),
        (header::LOCATION, saved.location),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    headers.insert(
        idempotency::REPLAYED_HEADER,
        HeaderValue::from_static("true"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_the_entry_the_trusted_proxy_added_is_the_client_address() {
        let forwarded = |value: &'static str, hops| {
            forwarded_for(&headers(&[("x-forwarded-for", value)]), hops)
        };
        // One proxy: it appended the address it saw; the client wrote the rest.
        assert_eq!(
            forwarded("6.6.6.6, 203.0.113.9", 1).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            forwarded("1.1.1.1, 2.2.2.2, 203.0.113.9", 1).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            forwarded("6.6.6.6, 203.0.113.9, 10.0.0.2", 2).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(forwarded("203.0.113.9", 2), None, "did not pass both");
        assert_eq!(forwarded("not-an-address", 1), None);
        assert_eq!(forwarded("203.0.113.9", 0), None, "untrusted by default");
    }

    #[test]
    fn a_peer_sync_token_is_not_taken_for_a_user_credential() {
        let found = credential_of(&headers(&[(
            "authorization",
            "Bearer a-long-sync-token-value",
        )]))
        .expect("no error");
        assert_eq!(found, None);
    }

    #[test]
    fn jwts_and_api_keys_are_taken_from_either_header() {
        assert_eq!(
            credential_of(&headers(&[("authorization", "Bearer a.b.c")])).expect("ok"),
            Some("a.b.c".to_owned())
        );
        assert_eq!(
            credential_of(&headers(&[("x-api-key", "jvk_x")])).expect("ok"),
            Some("jvk_x".to_owned())
        );
        assert!(credential_of(&headers(&[("authorization", "Basic abc")])).is_err());
        assert!(
            credential_of(&headers(&[
                ("authorization", "Bearer a.b.c"),
                ("x-api-key", "k")
            ]))
            .is_err()
        );
    }
}
