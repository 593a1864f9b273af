//! The controller's events as Kubernetes Events (`events.k8s.io/v1`) on
//! the custom resources they are about: `kubectl describe wapp NAME` and
//! `kubectl get events -n wasmbed` show them.
//!
//! The same event about the same object (reason and note) is sent once per
//! [`REPEAT_AFTER`]: a gateway that keeps failing the same way makes one
//! Event, not one per pass. What is remembered for that is bounded
//! ([`REMEMBERED`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource as _};
use wasmbed_api::controller::events::{EventRecorder, ObjectEvent};
use wasmbed_api::model::Kind;

/// The reporting controller the Events name.
pub const REPORTING_CONTROLLER: &str = "wasmbed.io/api-server";

/// How long the same event about the same object is not sent again.
pub const REPEAT_AFTER: Duration = Duration::from_secs(600);

/// Most events remembered for [`REPEAT_AFTER`].
pub const REMEMBERED: usize = 4096;

/// Events on the objects of one namespace.
#[derive(Debug)]
pub struct KubeEvents {
    events: Api<Event>,
    namespace: String,
    /// The API server's pod, as `reportingInstance`.
    instance: String,
    sent: Mutex<HashMap<(String, &'static str, String), Instant>>,
}

impl KubeEvents {
    /// Events in `namespace`, reported by `instance` (the pod's name).
    pub fn new(client: Client, namespace: &str, instance: &str) -> KubeEvents {
        KubeEvents {
            events: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            instance: instance.to_owned(),
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `event` was sent less than [`REPEAT_AFTER`] ago; if not,
    /// remembers it as sent now.
    fn sent_recently(&self, event: &ObjectEvent, now: Instant) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let key = (event.uid.clone(), event.reason, event.note.clone());
        if sent
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < REPEAT_AFTER)
        {
            return true;
        }
        if sent.len() >= REMEMBERED {
            sent.retain(|_, at| now.duration_since(*at) < REPEAT_AFTER);
            if sent.len() >= REMEMBERED {
                sent.clear();
            }
        }
        sent.insert(key, now);
        false
    }

    /// The Event object for `event`.
    pub fn event_object(&self, event: &ObjectEvent) -> Event {
        let (kind, api_version) = match event.kind {
            Kind::Device => (
                crate::Device::kind(&()).into_owned(),
                crate::Device::api_version(&()),
            ),
            Kind::Application => (
                crate::Application::kind(&()).into_owned(),
                crate::Application::api_version(&()),
            ),
            Kind::Gateway => (
                crate::Gateway::kind(&()).into_owned(),
                crate::Gateway::api_version(&()),
            ),
        };
        Event {
            metadata: ObjectMeta {
                // The object's name and a random suffix, as kubectl shows.
                name: Some(format!("{}.{:016x}", event.name, rand::random::<u64>())),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(k8s_openapi::chrono::Utc::now())),
            type_: Some(event.event_type.as_str().to_owned()),
            reason: Some(event.reason.to_owned()),
            action: Some(event.reason.to_owned()),
            note: Some(event.note.clone()),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(ObjectReference {
                api_version: Some(api_version.into_owned()),
                kind: Some(kind),
                name: Some(event.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid: Some(event.uid.clone()).filter(|uid| !uid.is_empty()),
                ..ObjectReference::default()
            }),
            ..Event::default()
        }
    }
}

#[async_trait]
impl EventRecorder for KubeEvents {
    async fn record(&self, event: ObjectEvent) {
        if self.sent_recently(&event, Instant::now()) {
            return;
        }
        let object = self.event_object(&event);
        if let Err(e) = self.events.create(&PostParams::default(), &object).await {
            tracing::warn!(
                kind = event.kind.as_str(),
                name = %event.name,
                reason = event.reason,
                error = %e,
                "could not send a Kubernetes Event; dropped"
            );
        }
    }
}
