//! What the controller tells about the objects it acts on: a device
//! revoked, an application placed on or removed from a device, one that
//! could not be placed, a gateway that became unreachable or reachable
//! again. Only changes are told, never a reconcile that changed nothing.
//!
//! Where they go is an [`EventRecorder`]: the log ([`LogEvents`], with the
//! SQLite store) or Kubernetes Events on the objects (`wasmbed-k8s`), which
//! `kubectl describe` shows.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;

use crate::model::{DeploymentStatus, Kind};

/// Longest note kept, in bytes (Kubernetes refuses notes over 1 KiB).
pub const MAX_NOTE: usize = 1024;

/// Whether an event is routine or wants attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub kind: Kind,
    pub name: String,
    pub uid: String,
    pub event_type: EventType,
    /// Short, `PascalCase`: `Placed`, `Removed`, `NotPlaced`, `Revoked`,
    /// `Unreachable`, `Reachable`, `Undeployed`.
    pub reason: &'static str,
    /// For people, at most [`MAX_NOTE`] bytes.
    pub note: String,
}

impl ObjectEvent {
    pub fn new(
        kind: Kind,
        name: &str,
        uid: &str,
        event_type: EventType,
        reason: &'static str,
        note: impl Into<String>,
    ) -> ObjectEvent {
        let mut note = note.into();
        if note.len() > MAX_NOTE {
            let mut end = MAX_NOTE;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        ObjectEvent {
            kind,
            name: name.to_owned(),
            uid: uid.to_owned(),
            event_type,
            reason,
            note,
        }
    }
}

/// Where events go. Recording never fails the controller: a recorder that
/// cannot deliver logs why and drops the event.
#[async_trait]
pub trait EventRecorder: Send + Sync + fmt::Debug {
    async fn record(&self, event: ObjectEvent);
}

/// Events as log lines (target `wasmbed_api::events`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogEvents;

#[async_trait]
impl EventRecorder for LogEvents {
    async fn record(&self, event: ObjectEvent) {
        let ObjectEvent {
            kind,
            name,
            reason,
            note,
            event_type,
            ..
        } = event;
        match event_type {
            EventType::Normal => {
                tracing::info!(target: "wasmbed_api::events", kind = kind.as_str(), %name, reason, "{note}");
            }
            EventType::Warning => {
                tracing::warn!(target: "wasmbed_api::events", kind = kind.as_str(), %name, reason, "{note}");
            }
        }
    }
}

/// The events of one reconcile of an application: what changed from the
/// deployments `before` to those `after`.
pub(crate) fn deployment_events(
    application: &str,
    uid: &str,
    before: &[DeploymentStatus],
    after: &[DeploymentStatus],
) -> Vec<ObjectEvent> {
    let event = |event_type, reason, note: String| {
        ObjectEvent::new(
            Kind::Application,
            application,
            uid,
            event_type,
            reason,
            note,
        )
    };
    let placed = |list: &[DeploymentStatus]| -> HashMap<(String, u64), DeploymentStatus> {
        list.iter()
            .filter_map(|d| {
                d.gateway_deployment_id
                    .map(|id| ((d.device.clone(), id), d.clone()))
            })
            .collect()
    };
    let (was, is) = (placed(before), placed(after));
    let mut events = Vec::new();
    for ((device, id), deployment) in &is {
        if !was.contains_key(&(device.clone(), *id)) {
            events.push(event(
                EventType::Normal,
                "Placed",
                format!(
                    "placed on device {device} through gateway {} (deployment {id}, revision {})",
                    deployment.gateway.as_deref().unwrap_or("?"),
                    deployment.revision.as_deref().unwrap_or("?"),
                ),
            ));
        }
    }
    for ((device, id), deployment) in &was {
        if !is.contains_key(&(device.clone(), *id)) {
            events.push(event(
                EventType::Normal,
                "Removed",
                format!(
                    "removed from device {device} at gateway {} (deployment {id})",
                    deployment.gateway.as_deref().unwrap_or("?"),
                ),
            ));
        }
    }
    let reasons: HashMap<&str, Option<&str>> = before
        .iter()
        .map(|d| (d.device.as_str(), d.reason.as_deref()))
        .collect();
    for deployment in after {
        let Some(reason) = deployment.reason.as_deref() else {
            continue;
        };
        if reasons.get(deployment.device.as_str()).copied().flatten() != Some(reason) {
            events.push(event(
                EventType::Warning,
                "NotPlaced",
                format!("device {}: {reason}", deployment.device),
            ));
        }
    }
    events.sort_by(|a, b| (a.reason, &a.note).cmp(&(b.reason, &b.note)));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Phase;

    fn deployment(device: &str, id: Option<u64>, reason: Option<&str>) -> DeploymentStatus {
        DeploymentStatus {
            device: device.into(),
            phase: Phase::Pending,
            reason: reason.map(str::to_owned),
            gateway_deployment_id: id,
            gateway: Some("gw".into()),
            device_id: None,
            revision: Some("r1".into()),
            results: 0,
            moved_from: Vec::new(),
            results_moved: 0,
        }
    }

    fn summary(events: &[ObjectEvent]) -> Vec<(&'static str, EventType, &str)> {
        events
            .iter()
            .map(|e| (e.reason, e.event_type, e.note.as_str()))
            .collect()
    }

    #[test]
    fn placements_removals_and_new_reasons_are_told_once() {
        let before = [
            deployment("a", Some(1), None),
            deployment("b", None, Some("gateway gw is unknown or unreachable")),
            deployment("c", Some(3), None),
        ];
        let after = [
            deployment("a", Some(1), None),
            deployment("b", None, Some("gateway gw is unknown or unreachable")),
            deployment("c", Some(4), None),
            deployment("d", None, Some("not enrolled yet")),
        ];
        let events = deployment_events("app", "u", &before, &after);
        assert_eq!(
            summary(&events),
            [
                (
                    "NotPlaced",
                    EventType::Warning,
                    "device d: not enrolled yet"
                ),
                (
                    "Placed",
                    EventType::Normal,
                    "placed on device c through gateway gw (deployment 4, revision r1)"
                ),
                (
                    "Removed",
                    EventType::Normal,
                    "removed from device c at gateway gw (deployment 3)"
                ),
            ]
        );
        assert!(
            events
                .iter()
                .all(|e| e.kind == Kind::Application && e.uid == "u")
        );
        // Nothing changed: nothing told.
        assert!(deployment_events("app", "u", &after, &after).is_empty());
    }

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_NOTE);
        let event = ObjectEvent::new(Kind::Device, "d", "u", EventType::Normal, "X", long);
        assert!(event.note.len() <= MAX_NOTE);
        assert!(event.note.len() >= MAX_NOTE - 1);
    }
}
