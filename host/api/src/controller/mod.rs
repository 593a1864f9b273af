//! The controller: a level-triggered, idempotent reconcile loop, run every
//! `interval` and whenever a watch of the store shows a change made by
//! someone else (its own status writes do not wake it).
//!
//! Each pass:
//! 1. asks every [`Gateway`] for its devices (which also tells whether it
//!    is reachable) and copies presence, heartbeats and the runtime each
//!    device reported into [`Device`] statuses;
//! 2. for each [`Application`], places it on every matching device that
//!    has no deployment at its gateway yet (`POST /v1/deployments`, unless
//!    `GET /v1/deployments?device=` shows one made before a crash, whose id
//!    was never recorded: that one is adopted), polls
//!    the state and result count of those it placed, and removes it, at
//!    the gateway holding it, from devices that no longer match, were
//!    deleted, or moved to another gateway; a deployment of an older
//!    revision (module and limits) is removed and the current one placed;
//! 3. for an application being deleted, removes its gateway deployments
//!    and then its finalizer ([`UNDEPLOY_FINALIZER`]), which lets the store
//!    delete it; an application without the finalizer gets it;
//! 4. has the gateway of a device whose `spec.revoked` is set revoke it
//!    (`DELETE /v1/devices/{id}`); a revoked device gets no application.
//!
//! A gateway that cannot be reached is left alone for a while, doubling
//! the wait at each failure; the reason is written in the statuses.
//!
//! Step 2 is two halves: `plan` decides, without any I/O, the operations
//! (place, poll, remove, record) from what the application wants and what
//! the pass observed; `executor` performs them through a [`GatewayClient`]
//! ([`HttpsGatewayClient`], or a fake in tests). Gateways' answers are
//! typed by their contract, [`wasmbed_gateway_api`].

mod backoff;
pub mod events;
mod executor;
#[cfg(test)]
mod fixtures;
pub mod gateway_client;
pub mod leader;
mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};
use wasmbed_gateway_api::DeviceView;

use self::backoff::Backoffs;
use self::events::{EventRecorder, EventType, LogEvents, ObjectEvent};
use self::executor::{Executor, Placement};
pub use self::gateway_client::{CallError, GatewayClient, HttpsGatewayClient, MAX_GATEWAY_ANSWER};
use self::plan::{Desired, Observed, placed_as_now};
use crate::http::devices::normalize_device_id;
use crate::model::{
    Application, DeploymentStatus, Device, DeviceDeployment, DeviceRuntime, ExecutionResult,
    Gateway, Kind, Object, Presence, UNDEPLOY_FINALIZER, now_ms,
};
use crate::store::{Store, StoreError};

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Longest time between two passes.
    pub interval: Duration,
    /// First wait after a gateway failed; doubled at each further failure.
    pub backoff_min: Duration,
    /// Longest wait after failures.
    pub backoff_max: Duration,
    /// Timeout of one request to a gateway.
    pub request_timeout: Duration,
    /// The TLS client of gateways' HTTP interfaces: trusts the gateway CA
    /// and presents the API server's control certificate
    /// ([`wasmbed_pki::control_client_config`]). Without it gateways refuse
    /// every call (401), and their statuses say so.
    pub gateway_tls: Option<Arc<rustls::ClientConfig>>,
    /// Where events about the objects go ([`events`]): the log by default.
    pub events: Arc<dyn EventRecorder>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            interval: Duration::from_secs(2),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            gateway_tls: None,
            events: Arc::new(LogEvents),
        }
    }
}

/// The reconcile loop. See the module documentation.
#[derive(Debug)]
pub struct Controller<G = HttpsGatewayClient> {
    store: Store,
    changes: watch::Receiver<u64>,
    client: G,
    config: ControllerConfig,
    backoffs: Backoffs,
}

/// The gateway deployments' application id for one revision of an
/// application: a deployment found at a gateway is adopted only when it
/// carries the revision wanted.
pub fn gateway_application_id(uid: &str, revision: &str) -> u64 {
    let digest = Sha256::digest(format!("{uid}/{revision}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // 53 bits: exact in every JSON implementation.
    u64::from_be_bytes(bytes) >> 11
}

impl Controller<HttpsGatewayClient> {
    /// A controller calling gateways over HTTPS ([`HttpsGatewayClient`]).
    pub fn new(store: &Store, config: ControllerConfig) -> Self {
        let client = HttpsGatewayClient::new(config.gateway_tls.as_ref(), config.request_timeout);
        Controller::with_client(store, config, client)
    }
}

impl<G: GatewayClient> Controller<G> {
    /// A controller calling gateways through `client`.
    pub fn with_client(store: &Store, config: ControllerConfig, client: G) -> Self {
        // Its own writes must not wake it up again.
        let (store, own) = store.quiet();
        Controller {
            changes: store.wakeups(Some(own)),
            store,
            client,
            backoffs: Backoffs::new(config.backoff_min, config.backoff_max),
            config,
        }
    }

    /// Reconciles until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        info!(interval = ?self.config.interval, "controller running");
        loop {
            self.changes.borrow_and_update();
            if let Err(e) = self.reconcile().await {
                warn!(error = %e, "reconcile pass failed");
            }
            tokio::select! {
                () = &mut shutdown => return,
                _ = self.changes.changed() => {}
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// One pass over everything.
    pub async fn reconcile(&mut self) -> Result<(), StoreError> {
        let gateways: BTreeMap<String, Gateway> = self
            .store
            .list::<Gateway>()
            .await?
            .into_iter()
            .map(|g| (g.metadata.name.clone(), g))
            .collect();
        let mut seen_devices: HashMap<String, HashMap<String, DeviceView>> = HashMap::new();
        for (name, gateway) in &gateways {
            if !self.backoffs.available(name, Instant::now()) {
                continue;
            }
            let reason = match self.client.devices(&base(gateway)).await {
                Ok(devices) => {
                    self.backoffs.succeeded(name);
                    let by_id = devices
                        .into_iter()
                        .filter_map(|d| normalize_device_id(&d.id).map(|id| (id, d)))
                        .collect();
                    seen_devices.insert(name.clone(), by_id);
                    None
                }
                Err(e) => {
                    warn!(gateway = %name, error = %e, "gateway not reachable");
                    self.backoffs.failed(name, Instant::now());
                    Some(e.to_string())
                }
            };
            self.record_gateway(gateway, reason).await?;
        }

        let devices = self.store.list::<Device>().await?;
        for device in &devices {
            self.record_presence(device, &seen_devices).await?;
        }
        // A gateway is usable in this pass when it answered above.
        let usable: HashMap<String, String> = gateways
            .iter()
            .filter(|(name, _)| seen_devices.contains_key(*name))
            .map(|(name, g)| (name.clone(), base(g)))
            .collect();
        for device in devices
            .iter()
            .filter(|d| d.spec.revoked && !d.status.revoked)
        {
            self.revoke(device, &usable).await?;
        }

        let by_name: HashMap<&str, &Device> = devices
            .iter()
            .map(|d| (d.metadata.name.as_str(), d))
            .collect();
        let mut placements: BTreeMap<String, Vec<DeviceDeployment>> = BTreeMap::new();
        let gateway_names: BTreeSet<String> = gateways.into_keys().collect();
        let observed = Observed {
            devices: &by_name,
            usable: &usable,
            gateways: &gateway_names,
        };
        for application in self.store.list::<Application>().await? {
            let status = self.reconcile_application(&application, observed).await?;
            let revision = application.spec.revision();
            let current = status.iter().flatten().filter(|deployment| {
                by_name
                    .get(deployment.device.as_str())
                    .is_some_and(|device| placed_as_now(deployment, device, &revision))
            });
            for deployment in current {
                placements
                    .entry(deployment.device.clone())
                    .or_default()
                    .push(DeviceDeployment {
                        application: application.metadata.name.clone(),
                        phase: deployment.phase,
                    });
            }
        }
        for device in &devices {
            let wanted = placements.remove(&device.metadata.name).unwrap_or_default();
            if device.status.deployments != wanted {
                self.status_ignoring_gone::<Device>(&device.metadata.name, |d| {
                    let change = d.status.deployments != wanted;
                    d.status.deployments = wanted.clone();
                    change
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Changes the status of an object, unless it is gone.
    async fn status_ignoring_gone<T: Object>(
        &self,
        name: &str,
        change: impl FnMut(&mut T) -> bool,
    ) -> Result<(), StoreError> {
        match self.store.modify_status(name, change).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
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
        self.status_ignoring_gone::<Gateway>(&gateway.metadata.name, |g| {
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

    async fn record_presence(
        &self,
        device: &Device,
        seen: &HashMap<String, HashMap<String, DeviceView>>,
    ) -> Result<(), StoreError> {
        let Some(at_gateway) = seen.get(&device.spec.gateway) else {
            return Ok(());
        };
        let view = device
            .spec
            .device_id
            .as_deref()
            .and_then(normalize_device_id)
            .and_then(|id| at_gateway.get(&id));
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
        let status = &device.status;
        if status.presence == presence
            && status.last_heartbeat == heartbeat
            && status.runtime == runtime
        {
            return Ok(());
        }
        self.status_ignoring_gone::<Device>(&device.metadata.name, |d| {
            let change = d.status.presence != presence
                || d.status.last_heartbeat != heartbeat
                || d.status.runtime != runtime;
            d.status.presence = presence;
            d.status.last_heartbeat = heartbeat;
            d.status.runtime = runtime.clone();
            change
        })
        .await
    }

    /// Has the device's gateway revoke it, and records the outcome.
    async fn revoke(
        &mut self,
        device: &Device,
        usable: &HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let name = &device.metadata.name;
        let gateway = &device.spec.gateway;
        let outcome = match device
            .spec
            .device_id
            .as_deref()
            .and_then(normalize_device_id)
        {
            // Revoked once it enrolls (the pass that sees its id).
            None => Err("not enrolled yet: revoked at its gateway once it enrolls".to_owned()),
            Some(id) => match usable.get(gateway) {
                None => Err(format!("revocation waits for gateway {gateway}")),
                Some(url) => {
                    match self.client.revoke(url, &id).await {
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
                    }
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
        self.status_ignoring_gone::<Device>(name, |d| {
            let change = d.status.revoked != revoked || d.status.reason != reason;
            d.status.revoked = revoked;
            d.status.reason = reason.clone();
            change
        })
        .await
    }

    /// Plans and performs one pass for `application`; returns its
    /// deployments after it, `None` when the application is gone.
    async fn reconcile_application(
        &mut self,
        application: &Application,
        observed: Observed<'_>,
    ) -> Result<Option<Vec<DeploymentStatus>>, StoreError> {
        let name = application.metadata.name.clone();
        let revision = application.spec.revision();
        let operations = plan::plan(
            Desired {
                application,
                revision: &revision,
            },
            observed,
        );
        let placement = Placement {
            application: &name,
            revision: &revision,
            application_id: gateway_application_id(&application.metadata.uid, &revision),
            limits: &application.spec.limits,
        };
        let store = &self.store;
        let sha256 = &application.spec.module.sha256;
        let mut executor = Executor {
            client: &self.client,
            backoffs: &mut self.backoffs,
        };
        let executed = executor
            .execute(placement, operations, || store.blob(sha256).boxed())
            .await?;
        let next = executed.deployments;
        let created = executed.created;
        let fetched = executed.fetched;

        // Results first: whoever sees the new counts finds them.
        self.record_results(&application.metadata.uid, &next, fetched)
            .await?;
        let results = next.iter().map(|e| e.results).sum();
        let uid = &application.metadata.uid;
        let outcome = self
            .store
            .modify_status::<Application>(&name, |a| {
                // Deleted and created again under the same name meanwhile:
                // this pass's placements belong to the old one, not to it.
                if &a.metadata.uid != uid {
                    return false;
                }
                let change = a.status.deployments != next
                    || a.status.results != results
                    || a.status.revision.as_ref() != Some(&revision);
                a.status.deployments = next.clone();
                a.status.results = results;
                a.status.revision = Some(revision.clone());
                change
            })
            .await;
        let outcome = match outcome {
            Ok(current) if &current.metadata.uid != uid => Err(StoreError::NotFound {
                kind: Application::KIND.as_str(),
                name: name.clone(),
            }),
            other => other,
        };
        match outcome {
            Ok(current) => {
                for event in events::deployment_events(
                    &name,
                    uid,
                    &application.status.deployments,
                    &current.status.deployments,
                ) {
                    self.config.events.record(event).await;
                }
                if current.metadata.deleting() && current.status.deployments.is_empty() {
                    return self.finish_deletion(current).await;
                }
                if !current.metadata.deleting()
                    && !current.metadata.has_finalizer(UNDEPLOY_FINALIZER)
                {
                    self.add_finalizer(&name, uid).await?;
                }
                Ok(Some(current.status.deployments))
            }
            Err(StoreError::NotFound { .. }) => {
                self.store.delete_results(&application.metadata.uid).await?;
                // Deleted while we deployed: take back what we placed.
                for (url, id) in created {
                    if let Err(e) = self.client.remove_deployment(&url, id).await {
                        warn!(deployment = id, error = %e, "could not remove the deployment of a deleted application");
                    }
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the finalizer of an application that was deleted and whose
    /// deployments are gone: the store then deletes it.
    async fn finish_deletion(
        &self,
        application: Application,
    ) -> Result<Option<Vec<DeploymentStatus>>, StoreError> {
        let name = application.metadata.name.clone();
        let uid = application.metadata.uid.clone();
        let mut done = application;
        done.metadata.finalizers.retain(|f| f != UNDEPLOY_FINALIZER);
        match self.store.replace(&done).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                self.config
                    .events
                    .record(ObjectEvent::new(
                        Kind::Application,
                        &name,
                        &uid,
                        EventType::Normal,
                        "Undeployed",
                        "removed from every device; deleted",
                    ))
                    .await;
                self.store.delete_results(&uid).await?;
                Ok(None)
            }
            // Changed meanwhile: the next pass finishes.
            Err(StoreError::Conflict { .. }) => Ok(Some(Vec::new())),
            Err(e) => Err(e),
        }
    }

    /// Gives an application (one stored before finalizers, or created
    /// around the API) the finalizer that keeps it until it is undeployed.
    async fn add_finalizer(&self, name: &str, uid: &str) -> Result<(), StoreError> {
        let added = self
            .store
            .modify::<Application>(name, |a| {
                let missing = a.metadata.uid == uid
                    && !a.metadata.deleting()
                    && !a.metadata.has_finalizer(UNDEPLOY_FINALIZER);
                if missing {
                    a.metadata.finalizers.push(UNDEPLOY_FINALIZER.to_owned());
                }
                missing
            })
            .await;
        match added {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stores the latest results of an application's deployments: those
    /// fetched in this pass, and the kept ones of deployments not polled
    /// (their gateway is unreachable); those of devices it left are dropped.
    async fn record_results(
        &self,
        uid: &str,
        deployments: &[DeploymentStatus],
        mut fetched: HashMap<(String, u64), Vec<ExecutionResult>>,
    ) -> Result<(), StoreError> {
        let kept = self.store.results(uid).await?;
        let mut results = Vec::new();
        for deployment in deployments {
            let latest = deployment
                .gateway_deployment_id
                .and_then(|id| fetched.remove(&(deployment.device.clone(), id)));
            match latest {
                Some(latest) => results.extend(latest),
                None => results.extend(
                    kept.iter()
                        .filter(|r| {
                            r.device == deployment.device
                                && Some(r.gateway_deployment_id) == deployment.gateway_deployment_id
                        })
                        .cloned(),
                ),
            }
        }
        results.sort_by(|a, b| {
            b.received_at
                .cmp(&a.received_at)
                .then_with(|| b.invocation.cmp(&a.invocation))
                .then_with(|| a.device.cmp(&b.device))
        });
        if results != kept {
            self.store.put_results(uid, &results).await?;
        }
        Ok(())
    }
}

fn base(gateway: &Gateway) -> String {
    gateway.spec.http_endpoint.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{FakeGateway, RecordedEvents, application, device};
    use crate::model::GatewaySpec;

    const ID_1: &str = "00000000000000000000000000000001";
    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn config(backoff: Duration) -> ControllerConfig {
        ControllerConfig {
            backoff_min: backoff,
            backoff_max: backoff,
            ..ControllerConfig::default()
        }
    }

    fn recording(backoff: Duration) -> (ControllerConfig, Arc<RecordedEvents>) {
        let events = Arc::new(RecordedEvents::default());
        let config = ControllerConfig {
            events: events.clone(),
            ..config(backoff)
        };
        (config, events)
    }

    async fn store_with_gateway() -> Store {
        let store = Store::in_memory();
        store
            .create(&Gateway {
                metadata: crate::model::ObjectMeta {
                    name: "gw-a".into(),
                    ..Default::default()
                },
                spec: GatewaySpec {
                    http_endpoint: "https://gw-a/".into(),
                    device_endpoint: "gw-a:40029".into(),
                },
                status: Default::default(),
            })
            .await
            .expect("created");
        store
    }

    #[tokio::test]
    async fn gateway_reachability_changes_are_told_once_each() {
        let store = store_with_gateway().await;
        let gateway = Arc::new(FakeGateway::default());
        let (config, events) = recording(Duration::ZERO);
        let mut controller = Controller::with_client(&store, config, Arc::clone(&gateway));
        *gateway.failure.lock().expect("not poisoned") =
            Some(CallError::Unreachable("connection failed".into()));
        controller.reconcile().await.expect("pass");
        controller.reconcile().await.expect("pass");
        *gateway.failure.lock().expect("not poisoned") = None;
        controller.reconcile().await.expect("pass");
        controller.reconcile().await.expect("pass");
        assert_eq!(
            events.reasons(),
            [
                ("Unreachable", "gw-a".to_owned()),
                ("Reachable", "gw-a".to_owned())
            ]
        );
        let recorded = events.events.lock().expect("not poisoned");
        assert_eq!(recorded[0].event_type, EventType::Warning);
        assert_eq!(recorded[0].note, "gateway unreachable: connection failed");
    }

    #[tokio::test]
    async fn a_gateway_that_failed_is_not_called_again_before_its_backoff_ends() {
        let store = store_with_gateway().await;
        let gateway = Arc::new(FakeGateway::default());
        *gateway.failure.lock().expect("not poisoned") =
            Some(CallError::Unreachable("connection failed".into()));
        let mut controller = Controller::with_client(
            &store,
            config(Duration::from_secs(60)),
            Arc::clone(&gateway),
        );
        controller.reconcile().await.expect("pass");
        controller.reconcile().await.expect("pass");
        assert_eq!(gateway.calls(), ["GET https://gw-a/v1/devices"]);
        let status = store.fetch::<Gateway>("gw-a").await.expect("there").status;
        assert!(!status.reachable);
        assert_eq!(
            status.reason.as_deref(),
            Some("gateway unreachable: connection failed")
        );
        // Once the wait is over it is called again.
        let mut impatient =
            Controller::with_client(&store, config(Duration::ZERO), Arc::clone(&gateway));
        impatient.reconcile().await.expect("pass");
        impatient.reconcile().await.expect("pass");
        assert_eq!(gateway.calls().len(), 3);
    }

    #[tokio::test]
    async fn a_pass_places_polls_and_after_a_lost_status_adopts_instead_of_placing_twice() {
        let store = store_with_gateway().await;
        store
            .create(&device("d1", "gw-a", Some(ID_1)))
            .await
            .expect("created");
        let sha256 = "11".repeat(32);
        store.put_blob(&sha256, MODULE).await.expect("stored");
        store
            .create(&application(&sha256, Vec::new()))
            .await
            .expect("created");
        let gateway = Arc::new(FakeGateway::default());
        let (config, events) = recording(Duration::from_secs(60));
        let mut controller = Controller::with_client(&store, config, Arc::clone(&gateway));
        async fn placements(store: &Store) -> Vec<(String, Option<u64>)> {
            let app = store.fetch::<Application>("app").await.expect("there");
            app.status
                .deployments
                .into_iter()
                .map(|d| (d.device, d.gateway_deployment_id))
                .collect()
        }

        controller.reconcile().await.expect("pass");
        assert_eq!(placements(&store).await, [("d1".to_owned(), Some(1))]);
        assert!(
            events.reasons().contains(&("Placed", "app".to_owned())),
            "{:?}",
            events.reasons()
        );
        let device = store.fetch::<Device>("d1").await.expect("there");
        assert_eq!(device.status.deployments.len(), 1);

        controller.reconcile().await.expect("pass");
        assert!(
            gateway
                .calls()
                .contains(&"GET https://gw-a/v1/deployments/1".to_owned())
        );

        // The status write of the placement was lost (a crash): the
        // deployment at the gateway is adopted, not made again.
        store
            .modify_status::<Application>("app", |a| {
                a.status.deployments.clear();
                true
            })
            .await
            .expect("modified");
        controller.reconcile().await.expect("pass");
        assert_eq!(placements(&store).await, [("d1".to_owned(), Some(1))]);
        let posts = gateway
            .calls()
            .iter()
            .filter(|c| c.starts_with("POST"))
            .count();
        assert_eq!(posts, 1);
        assert_eq!(gateway.deployments.lock().expect("not poisoned").len(), 1);
    }
}
