//! The Gateway controller: per gateway, asks it for its devices (which
//! also tells whether it is reachable), writes its reachability into its
//! status, copies presence, heartbeats and the runtime each of its devices
//! reported into their statuses, and has it revoke its devices whose
//! `spec.revoked` is set. Gateways are polled: their state lives outside
//! the store. A gateway that cannot be reached fails its reconcile, and is
//! polled again after a backoff that doubles at each failure.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _};
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{info, warn};
use wasmbed_gateway_api::DeviceView;

use super::backoff::Backoffs;
use super::events::{EventType, ObjectEvent};
use super::runtime::{Action, Cache, Reconciler, Related};
use super::{CallError, ControllerConfig, GatewayClient, ReconcileError, status_ignoring_gone};
use crate::http::devices::normalize_device_id;
use crate::model::{Device, DeviceRuntime, Gateway, Kind, Presence, now_ms};
use crate::store::{Store, StoreError, StoredObject, from_stored};

/// Reconciles [`Gateway`]s.
#[derive(Debug)]
pub(crate) struct GatewayReconciler<G> {
    pub(crate) store: Store,
    pub(crate) client: G,
    pub(crate) config: ControllerConfig,
    pub(crate) backoffs: Backoffs,
}

impl<G: GatewayClient> Reconciler for GatewayReconciler<G> {
    type Object = Gateway;
    type Error = ReconcileError;

    fn related(&self) -> &'static [Kind] {
        &[Kind::Device]
    }

    /// A device matters to its gateway for where it is, its id and whether
    /// it is revoked: all in its spec.
    fn fingerprint(&self, device: &StoredObject, hasher: &mut DefaultHasher) {
        device.metadata.generation.hash(hasher);
    }

    fn map(&self, _kind: Kind, device: &StoredObject, cache: &Cache<Gateway>) -> Vec<String> {
        let Ok(device) = from_stored::<Device>(device.clone()) else {
            return Vec::new();
        };
        let mut gateways: Vec<String> = [&device.spec.gateway, device.current_gateway()]
            .into_iter()
            .filter(|g| cache.contains_key(*g))
            .map(|g| g.to_owned())
            .collect();
        gateways.dedup();
        gateways
    }

    async fn reconcile(
        &mut self,
        gateway: Arc<Gateway>,
        related: &Related,
    ) -> Result<Action, ReconcileError> {
        self.reconcile_gateway(&gateway, related).await
    }

    fn error_policy(&mut self, gateway: &Gateway, error: &ReconcileError, failures: u32) -> Action {
        match error {
            ReconcileError::Unreachable { .. } => Action::Requeue(
                self.backoffs
                    .remaining(&gateway.metadata.name, Instant::now()),
            ),
            ReconcileError::Store(_) => Action::Requeue(super::runtime::backoff(failures)),
        }
    }
}

impl<G: GatewayClient> GatewayReconciler<G> {
    /// Polls `gateway`; its devices are read from `related`.
    pub(crate) async fn reconcile_gateway(
        &mut self,
        gateway: &Gateway,
        related: &Related,
    ) -> Result<Action, ReconcileError> {
        let name = &gateway.metadata.name;
        let now = Instant::now();
        if !self.backoffs.available(name, now) {
            return Ok(Action::Requeue(self.backoffs.remaining(name, now)));
        }
        let seen = match self.client.devices(&super::base(gateway)).await {
            Ok(devices) => {
                self.backoffs.succeeded(name);
                self.record_gateway(gateway, None).await?;
                devices
            }
            Err(e) => {
                warn!(gateway = %name, error = %e, "gateway not reachable");
                self.backoffs.failed(name, Instant::now());
                let reason = e.to_string();
                self.record_gateway(gateway, Some(reason.clone())).await?;
                // Its devices' presence is unknown until a gateway reports them.
                for device in related.list::<Device>()? {
                    if device.current_gateway() == name.as_str()
                        && device.status.presence != Presence::Unknown
                    {
                        self.record_presence(&device, None, name).await?;
                    }
                }
                return Err(ReconcileError::Unreachable {
                    gateway: name.clone(),
                    reason,
                });
            }
        };
        let by_id: HashMap<String, DeviceView> = seen
            .into_iter()
            .filter_map(|d| normalize_device_id(&d.id).map(|id| (id, d)))
            .collect();
        // Behind a load balancer a device may be at any gateway: this one
        // reports those connected to it, and its own devices' absence.
        let devices = related.list::<Device>()?;
        for device in &devices {
            let view = device
                .spec
                .device_id
                .as_deref()
                .and_then(normalize_device_id)
                .and_then(|id| by_id.get(&id));
            let connected_here =
                view.is_some_and(|v| v.presence == wasmbed_gateway_api::Presence::Connected);
            let served_here = device.current_gateway() == name.as_str();
            if connected_here || served_here {
                self.record_presence(device, view, name).await?;
            }
            // Revoked at every gateway that knows it (they forget it then).
            let revoke =
                device.spec.revoked && (view.is_some() || (served_here && !device.status.revoked));
            if revoke {
                self.revoke(device, name, &super::base(gateway)).await?;
            }
        }
        Ok(Action::Requeue(self.config.interval))
    }

    async fn record_gateway(
        &self,
        gateway: &Gateway,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let reachable = reason.is_none();
        let was = &gateway.status;
        let event = match (&reason, was.reachable) {
            (None, false) => Some((EventType::Normal, "Reachable", "reachable".to_owned())),
            (Some(why), true) => Some((EventType::Warning, "Unreachable", why.clone())),
            (Some(why), false) if was.reason.as_ref() != Some(why) => {
                Some((EventType::Warning, "Unreachable", why.clone()))
            }
            _ => None,
        };
        if let Some((event_type, what, note)) = event {
            let meta = &gateway.metadata;
            self.config
                .events
                .record(ObjectEvent::new(
                    Kind::Gateway,
                    &meta.name,
                    &meta.uid,
                    event_type,
                    what,
                    note,
                ))
                .await;
        }
        status_ignoring_gone::<Gateway>(&self.store, &gateway.metadata.name, |g| {
            let status = &mut g.status;
            let stale = status
                .last_seen
                .is_none_or(|t| now.saturating_sub(t) >= 5_000);
            let change =
                status.reachable != reachable || status.reason != reason || (reachable && stale);
            status.reachable = reachable;
            status.reason = reason.clone();
            if reachable {
                status.last_seen = Some(now);
            }
            change
        })
        .await
    }

    /// Records in `device`'s status what gateway `here` reports of it
    /// (`view`; `None`: it does not know the device, or cannot be
    /// reached). A device connected there is served there from now on.
    async fn record_presence(
        &self,
        device: &Device,
        view: Option<&DeviceView>,
        here: &str,
    ) -> Result<(), StoreError> {
        let presence = match view.map(|v| v.presence) {
            Some(wasmbed_gateway_api::Presence::Connected) => Presence::Connected,
            Some(_) => Presence::Disconnected,
            None => Presence::Unknown,
        };
        let heartbeat = view
            .and_then(|v| v.last_heartbeat_ms)
            .or(device.status.last_heartbeat);
        let reported = view
            .and_then(|v| v.runtime.as_ref())
            .map(|r| DeviceRuntime {
                kind: r.kind.clone(),
                version: r.version.clone(),
            });
        let runtime = match reported {
            Some(runtime) if runtime.is_plausible() => Some(runtime),
            Some(runtime) => {
                warn!(
                    device = %device.metadata.name,
                    gateway = %device.spec.gateway,
                    kind_len = runtime.kind.len(),
                    version_len = runtime.version.len(),
                    "the gateway reported a runtime no device could have sent; ignored"
                );
                device.status.runtime.clone()
            }
            None => device.status.runtime.clone(),
        };
        let gateway = if presence == Presence::Connected {
            Some(here.to_owned())
        } else {
            device.status.gateway.clone()
        };
        let status = &device.status;
        if status.presence == presence
            && status.last_heartbeat == heartbeat
            && status.runtime == runtime
            && status.gateway == gateway
        {
            return Ok(());
        }
        if gateway != status.gateway {
            info!(device = %device.metadata.name, from = ?status.gateway, to = here, "device connected through another gateway");
        }
        status_ignoring_gone::<Device>(&self.store, &device.metadata.name, |d| {
            // Another gateway reported the device connected meanwhile.
            if presence != Presence::Connected && d.current_gateway() != here {
                return false;
            }
            let change = d.status.presence != presence
                || d.status.last_heartbeat != heartbeat
                || d.status.runtime != runtime
                || d.status.gateway != gateway;
            d.status.presence = presence;
            d.status.last_heartbeat = heartbeat;
            d.status.runtime = runtime.clone();
            d.status.gateway = gateway.clone();
            change
        })
        .await
    }

    /// Has the device's gateway (at `base`) revoke it, and records the
    /// outcome.
    async fn revoke(
        &mut self,
        device: &Device,
        gateway: &str,
        base: &str,
    ) -> Result<(), StoreError> {
        let name = &device.metadata.name;
        let outcome = match device
            .spec
            .device_id
            .as_deref()
            .and_then(normalize_device_id)
        {
            // Revoked once it enrolls (the reconcile that sees its id).
            None => Err("not enrolled yet: revoked at its gateway once it enrolls".to_owned()),
            Some(id) => match self.client.revoke(base, &id).await {
                // Also when revoked before (an answer was lost).
                Ok(_) => {
                    info!(device = %name, %gateway, id, "device revoked at its gateway");
                    Ok(())
                }
                Err(CallError::Refused(404, _)) => Err(format!(
                    "gateway {gateway} does not know device {id}: check spec.device_id \
                     and spec.gateway"
                )),
                Err(e) => {
                    if e.backs_off() {
                        self.backoffs.failed(gateway, Instant::now());
                    }
                    Err(e.to_string())
                }
            },
        };
        let (revoked, reason) = match outcome {
            Ok(()) => (true, None),
            Err(reason) => (false, Some(reason)),
        };
        if revoked && !device.status.revoked {
            self.config
                .events
                .record(ObjectEvent::new(
                    Kind::Device,
                    name,
                    &device.metadata.uid,
                    EventType::Normal,
                    "Revoked",
                    format!("its gateway {gateway} refuses it from now on and forgot it"),
                ))
                .await;
        }
        status_ignoring_gone::<Device>(&self.store, name, |d| {
            let change = d.status.revoked != revoked || d.status.reason != reason;
            d.status.revoked = revoked;
            d.status.reason = reason.clone();
            change
        })
        .await
    }
}
