//! What Jarvis measures, recorded through the `metrics` facade so every crate records the
//! same way and the host decides where it goes: CloudWatch Embedded Metric Format on stdout
//! on Lambda ([`lambda_collector`], flushed after each invocation), Prometheus text on
//! `jarvis-local`'s `GET /metrics`. With no recorder installed (tests), recording is a no-op.
//!
//! | metric | kind | labels | recorded by |
//! | --- | --- | --- | --- |
//! | `http_requests_total` | counter | `method`, `route`, `status` | the request context |
//! | `http_request_duration_seconds` | histogram | `method`, `route` | the request context |
//! | `store_operations_total` | counter | `backend`, `op` | `jarvis-store` |
//! | `store_operation_duration_seconds` | histogram | `backend`, `op` | `jarvis-store` |
//! | `store_conflicts_total` | counter | `backend` | a merge whose conditional write lost |
//! | `store_retries_exhausted_total` | counter | `backend` | a merge that gave up (409) |
//! | `sync_changes_total` | counter | `peer`, `outcome` (`merged`, `rejected`) | a pull |
//! | `sync_lag_seconds` | gauge | `peer` | a pull: seconds since the peer's feed was last read to its end |
//! | `auth_sign_in_failures_total` | counter | `reason` | sign-in |
//! | `rate_limit_refusals_total` | counter | `budget` (`caller`, `sign_in`) | the rate-limit layer |
//! | `ColdStart` | count (EMF only) | | the first invocation of a Lambda sandbox |
//!
//! Routes are the matched templates (`/archive/{id}`), never raw paths, so label values stay
//! few; an unmatched path is `unmatched`.

use metrics_cloudwatch_embedded::{Builder, Collector};

/// The CloudWatch namespace every metric is published in.
pub const NAMESPACE: &str = "Jarvis";

/// Installs the EMF recorder for a Lambda sandbox: namespace [`NAMESPACE`], a `service`
/// dimension naming the function, a `ColdStart` count on the first invocation and the
/// invocation's request id as a property. Returns `None` (metrics off, logged) when a
/// recorder is already installed.
pub fn lambda_collector(service: &str) -> Option<&'static Collector> {
    match Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("service", service.to_owned())
        .lambda_cold_start_metric("ColdStart")
        .with_lambda_request_id("request_id")
        .init()
    {
        Ok(collector) => Some(collector),
        Err(err) => {
            tracing::warn!(error = %err, "metrics are off: a recorder is already installed");
            None
        }
    }
}
