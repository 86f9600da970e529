//! Component health: each part of the system registers a [`HealthCheck`]; a
//! [`HealthRegistry`] runs them concurrently, each under a deadline, and folds the results
//! into a [`HealthReport`] with an overall status and a score from 0 to 100.
//!
//! Scoring: a component that is up counts 100, degraded 50, down 0; critical components
//! weigh three times as much as the others. The overall status is `down` when a critical
//! component is down, `degraded` when anything is less than up, `ok` otherwise.
//!
//! Owns how components report and how reports fold; changes when the health model does.
//! Imports no other Jarvis crate: components implement [`HealthCheck`] where they live.
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The state of one component or of the whole system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working as expected.
    Ok,
    /// Working, but slow or partly impaired.
    Degraded,
    /// Not working.
    Down,
}

impl Status {
    fn points(self) -> u32 {
        match self {
            Self::Ok => 100,
            Self::Degraded => 50,
            Self::Down => 0,
        }
    }
}

/// What a check found, before the registry adds its name and latency.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The component's status.
    pub status: Status,
    /// A short explanation when the status is not `ok`.
    pub message: Option<String>,
    /// Non-secret facts about the component (backend name, location kind…).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Finding {
    /// A healthy finding with no details.
    pub fn ok() -> Self {
        Self {
            status: Status::Ok,
            message: None,
            details: serde_json::Map::new(),
        }
    }

    /// An unhealthy finding with a reason.
    pub fn down(message: impl Into<String>) -> Self {
        Self {
            status: Status::Down,
            message: Some(message.into()),
            details: serde_json::Map::new(),
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// One component that can report on itself.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// The component's name in reports, e.g. `store`.
    fn name(&self) -> &'static str;

    /// Whether the system is down when this component is.
    fn critical(&self) -> bool {
        true
    }

    /// Looks at the component. Must not take longer than needed: the registry abandons a
    /// check after its deadline and reports the component as down.
    async fn check(&self) -> Finding;
}

/// One component in a [`HealthReport`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentReport {
    /// Component name.
    pub name: String,
    /// Component status.
    pub status: Status,
    /// Whether the system is down when this component is.
    pub critical: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// Why the component is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Non-secret facts about the component.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty", default)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The health of the whole system.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// Overall status.
    pub status: Status,
    /// 0 (nothing works) to 100 (everything is up).
    pub score: u8,
    /// Each component's report, in registration order.
    pub components: Vec<ComponentReport>,
}

impl HealthReport {
    /// The report without component messages, details or timings: what anyone may see.
    pub fn summary(mut self) -> Self {
        for component in &mut self.components {
            component.message = None;
            component.details = serde_json::Map::new();
            component.latency_ms = 0.0;
        }
        self
    }
}

/// How long a single check may take before its component counts as down.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The registered checks.
#[derive(Clone)]
pub struct HealthRegistry {
    checks: Vec<Arc<dyn HealthCheck>>,
    timeout: Duration,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new(DEFAULT_CHECK_TIMEOUT)
    }
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry")
            .field(
                "checks",
                &self.checks.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HealthRegistry {
    /// An empty registry whose checks each get `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            checks: Vec::new(),
            timeout,
        }
    }

    /// Adds a component.
    pub fn register(&mut self, check: Arc<dyn HealthCheck>) {
        self.checks.push(check);
    }

    /// Names of the registered components.
    pub fn components(&self) -> Vec<&'static str> {
        self.checks.iter().map(|c| c.name()).collect()
    }

    /// Runs every check concurrently and folds the results.
    pub async fn report(&self) -> HealthReport {
        let runs = self.checks.iter().map(|check| {
            let check = Arc::clone(check);
            let timeout = self.timeout;
            async move {
                let started = Instant::now();
                let finding = match tokio::time::timeout(timeout, check.check()).await {
                    Ok(finding) => finding,
                    Err(_) => Finding::down(format!("no answer within {} ms", timeout.as_millis())),
                };
                ComponentReport {
                    name: check.name().to_owned(),
                    status: finding.status,
                    critical: check.critical(),
                    latency_ms: round_ms(started.elapsed()),
                    message: finding.message,
                    details: finding.details,
                }
            }
        });
        // Concurrent on the current task: a check abandoned at its deadline leaves nothing
        // running behind the request.
        let components = futures_util::future::join_all(runs).await;
        fold(components)
    }
}

fn round_ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// Folds component reports into the overall status and score.
pub fn fold(components: Vec<ComponentReport>) -> HealthReport {
    let weight = |c: &ComponentReport| if c.critical { 3 } else { 1 };
    let total_weight: u32 = components.iter().map(weight).sum();
    let points: u32 = components
        .iter()
        .map(|c| c.status.points() * weight(c))
        .sum();
    // Rounded to the nearest integer; at most 100 by construction; 100 with no components.
    let score = (points + total_weight / 2)
        .checked_div(total_weight)
        .map_or(100, |s| u8::try_from(s).unwrap_or(100));
    let status = if components
        .iter()
        .any(|c| c.critical && c.status == Status::Down)
    {
        Status::Down
    } else if components.iter().any(|c| c.status != Status::Ok) {
        Status::Degraded
    } else {
        Status::Ok
    };
    HealthReport {
        status,
        score,
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        name: &'static str,
        critical: bool,
        finding: Finding,
        delay: Duration,
    }

    #[async_trait]
    impl HealthCheck for Fixed {
        fn name(&self) -> &'static str {
            self.name
        }
        fn critical(&self) -> bool {
            self.critical
        }
        async fn check(&self) -> Finding {
            tokio::time::sleep(self.delay).await;
            self.finding.clone()
        }
    }

    fn fixed(name: &'static str, critical: bool, status: Status) -> Arc<dyn HealthCheck> {
        Arc::new(Fixed {
            name,
            critical,
            finding: Finding {
                status,
                message: None,
                details: serde_json::Map::new(),
            },
            delay: Duration::ZERO,
        })
    }

    #[tokio::test]
    async fn all_components_up_scores_100() {
        let mut registry = HealthRegistry::default();
        registry.register(fixed("store", true, Status::Ok));
        registry.register(fixed("cache", false, Status::Ok));
        let report = registry.report().await;
        assert_eq!(report.status, Status::Ok);
        assert_eq!(report.score, 100);
        assert_eq!(report.components.len(), 2);
    }

    #[tokio::test]
    async fn critical_component_down_takes_the_system_down() {
        let mut registry = HealthRegistry::default();
        registry.register(fixed("store", true, Status::Down));
        registry.register(fixed("cache", false, Status::Ok));
        let report = registry.report().await;
        assert_eq!(report.status, Status::Down);
        // (0 * 3 + 100 * 1) / 4 = 25
        assert_eq!(report.score, 25);
    }

    #[tokio::test]
    async fn non_critical_component_down_only_degrades() {
        let mut registry = HealthRegistry::default();
        registry.register(fixed("store", true, Status::Ok));
        registry.register(fixed("cache", false, Status::Down));
        let report = registry.report().await;
        assert_eq!(report.status, Status::Degraded);
        assert_eq!(report.score, 75);
    }

    #[tokio::test]
    async fn a_check_past_its_deadline_counts_as_down() {
        let mut registry = HealthRegistry::new(Duration::from_millis(20));
        registry.register(Arc::new(Fixed {
            name: "slow",
            critical: true,
            finding: Finding::ok(),
            delay: Duration::from_secs(30),
        }));
        let report = registry.report().await;
        assert_eq!(report.status, Status::Down);
        assert!(
            report.components[0]
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("no answer")
        );
    }

    struct Rendezvous(Arc<tokio::sync::Barrier>);

    #[async_trait]
    impl HealthCheck for Rendezvous {
        fn name(&self) -> &'static str {
            "rendezvous"
        }
        async fn check(&self) -> Finding {
            self.0.wait().await;
            Finding::ok()
        }
    }

    #[tokio::test]
    async fn checks_run_concurrently() {
        // Each check waits until all three are running: run one after another, the first
        // would wait past its deadline and be reported down.
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let mut registry = HealthRegistry::new(Duration::from_secs(5));
        for _ in 0..3 {
            registry.register(Arc::new(Rendezvous(Arc::clone(&barrier))));
        }
        let report = registry.report().await;
        assert_eq!(report.status, Status::Ok, "{report:?}");
    }

    #[tokio::test]
    async fn no_components_is_healthy() {
        let report = HealthRegistry::default().report().await;
        assert_eq!(report.status, Status::Ok);
        assert_eq!(report.score, 100);
    }
}
