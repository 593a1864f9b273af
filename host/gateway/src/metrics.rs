//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connected_devices: Gauge,
    pub handshakes: Counter,
    pub handshake_failures: Family<ReasonLabel, Counter>,
    pub sessions_closed: Family<ReasonLabel, Counter>,
    pub heartbeats: Counter,
    pub deployments: Family<StateLabel, Counter>,
    pub bytes_sent: Counter,
    pub enrollments: Family<ReasonLabel, Counter>,
    pub rate_limited: Family<ReasonLabel, Counter>,
    pub results_dropped: Counter,
    pub log_lines_suppressed: Counter,
    pub revoked_devices: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wasmbed_gateway");
        let metrics = Metrics {
            connected_devices: Gauge::default(),
            handshakes: Counter::default(),
            handshake_failures: Family::default(),
            sessions_closed: Family::default(),
            heartbeats: Counter::default(),
            deployments: Family::default(),
            bytes_sent: Counter::default(),
            enrollments: Family::default(),
            rate_limited: Family::default(),
            results_dropped: Counter::default(),
            log_lines_suppressed: Counter::default(),
            revoked_devices: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connected_devices",
            "Devices with an established session",
            metrics.connected_devices.clone(),
        );
        registry.register(
            "handshakes",
            "Completed mutually authenticated TLS handshakes",
            metrics.handshakes.clone(),
        );
        registry.register(
            "handshake_failures",
            "Connections refused before a session started, by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "sessions_closed",
            "Sessions ended, by reason",
            metrics.sessions_closed.clone(),
        );
        registry.register(
            "heartbeats",
            "Heartbeats received",
            metrics.heartbeats.clone(),
        );
        registry.register(
            "deployments",
            "Deployment state changes reported by devices, by new state",
            metrics.deployments.clone(),
        );
        registry.register(
            "bytes_sent",
            "Protocol bytes sent to devices (before TLS)",
            metrics.bytes_sent.clone(),
        );
        registry.register(
            "enrollments",
            "Enrollment requests, by outcome",
            metrics.enrollments.clone(),
        );
        registry.register(
            "rate_limited",
            "Device messages refused as too frequent, by kind (enrollment, heartbeat)",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "results_dropped",
            "Stored execution results dropped to keep a deployment within its cap",
            metrics.results_dropped.clone(),
        );
        registry.register(
            "log_lines_suppressed",
            "Warning lines a device caused but the per-source log rate limit suppressed",
            metrics.log_lines_suppressed.clone(),
        );
        registry.register(
            "revoked_devices",
            "Device keys revoked and refused at the handshake",
            metrics.revoked_devices.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn handshake_failed(&self, reason: &str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn count(family: &Family<ReasonLabel, Counter>, reason: &str) {
        family
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn deployment_state(&self, state: &str) {
        self.deployments
            .get_or_create(&StateLabel {
                state: state.to_owned(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
