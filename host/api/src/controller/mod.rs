//! The controllers, per object, on the semantics of
//! `kube::runtime::Controller` ([`runtime`]), driven by the store's watch
//! on either backend:
//!
//! - the **Gateway** controller ([`gateways`]) polls each gateway for its
//!   devices, records whether it is reachable, copies presence, heartbeats
//!   and runtimes into the devices' statuses, and has it revoke devices
//!   whose `spec.revoked` is set;
//! - the **Application** controller ([`applications`]) places each
//!   application on its matching devices at their gateways, polls state
//!   and results, removes it where it no longer belongs, and undeploys it
//!   before its deletion ([`UNDEPLOY_FINALIZER`](crate::model::UNDEPLOY_FINALIZER)).
//!
//! The Device controller that boots emulated devices lives with the
//! emulator manager, in `wasmbed up`, on the same [`runtime`].
//!
//! A gateway that cannot be reached is left alone for a while, doubling
//! the wait at each failure; the reason is written in the statuses and as
//! an event ([`events`]). An application's reconcile is two halves: `plan`
//! decides, without any I/O, the operations (place, poll, remove, record)
//! from what the application wants and what was observed; `executor`
//! performs them through a [`GatewayClient`] ([`HttpsGatewayClient`], or a
//! fake in tests). Gateways' answers are typed by their contract,
//! [`wasmbed_gateway_api`].

mod applications;
mod backoff;
pub mod events;
mod executor;
#[cfg(any(test, feature = "conformance"))]
pub mod fixtures;
pub mod gateway_client;
mod gateways;
pub mod leader;
mod plan;
pub mod runtime;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use sha2::{Digest, Sha256};

use self::applications::ApplicationReconciler;
use self::backoff::Backoffs;
use self::events::{EventRecorder, LogEvents};
pub use self::gateway_client::{CallError, GatewayClient, HttpsGatewayClient, MAX_GATEWAY_ANSWER};
use self::gateways::GatewayReconciler;
use self::runtime::Reconciler as _;
pub use self::runtime::{Action, Related};
use crate::model::{Application, Gateway, Object};
use crate::store::{Store, StoreError};

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often each gateway is polled, and each application placed on
    /// devices has its deployments polled (one with nothing placed is
    /// looked at again after 60 s, or at the first change that concerns it).
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

/// Why a reconcile failed; the object is reconciled again after a
/// backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gateway {gateway} unreachable: {reason}")]
    Unreachable { gateway: String, reason: String },
}

/// The Gateway and Application controllers of one API server.
#[derive(Debug)]
pub struct Controller<G = HttpsGatewayClient> {
    store: Store,
    gateways: GatewayReconciler<G>,
    applications: ApplicationReconciler<G>,
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

/// The fleet-wide id of the deployment of revision `revision` of the
/// application `uid` on device `device_id`: the same at every gateway the
/// device moves to, so that the device, which runs a deployment id once,
/// does not run it again there. Within
/// [`wasmbed_gateway_api::FLEET_DEPLOYMENT_IDS`].
pub fn fleet_deployment_id(uid: &str, revision: &str, device_id: &str) -> u64 {
    let digest = Sha256::digest(format!("{uid}/{revision}/{device_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let range = wasmbed_gateway_api::FLEET_DEPLOYMENT_IDS;
    range.start() | (u64::from_be_bytes(bytes) >> 12)
}

impl Controller<HttpsGatewayClient> {
    /// Controllers calling gateways over HTTPS ([`HttpsGatewayClient`]).
    pub fn new(store: &Store, config: ControllerConfig) -> Self {
        let client = HttpsGatewayClient::new(config.gateway_tls.as_ref(), config.request_timeout);
        Controller::with_client(store, config, client)
    }
}

impl<G: GatewayClient + Clone> Controller<G> {
    /// Controllers calling gateways through `client`.
    pub fn with_client(store: &Store, config: ControllerConfig, client: G) -> Self {
        let backoffs = || Backoffs::new(config.backoff_min, config.backoff_max);
        Controller {
            store: store.clone(),
            gateways: GatewayReconciler {
                store: store.clone(),
                client: client.clone(),
                config: config.clone(),
                backoffs: backoffs(),
            },
            applications: ApplicationReconciler {
                store: store.clone(),
                client,
                config: config.clone(),
                backoffs: backoffs(),
            },
        }
    }

    /// Runs both controllers until `shutdown` completes. Each writes
    /// through a store of its own ([`Store::quiet`]), so that its own
    /// writes do not wake it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shutdown = shutdown.shared();
        let Controller {
            gateways,
            applications,
            ..
        } = self;
        tracing::info!(interval = ?gateways.config.interval, "controllers running");
        let (gateway_store, gateway_writes) = gateways.store.quiet();
        let (application_store, application_writes) = applications.store.quiet();
        let gateways = GatewayReconciler {
            store: gateway_store.clone(),
            ..gateways
        };
        let applications = ApplicationReconciler {
            store: application_store.clone(),
            ..applications
        };
        tokio::join!(
            runtime::run(gateway_store, gateway_writes, gateways, shutdown.clone()),
            runtime::run(
                application_store,
                application_writes,
                applications,
                shutdown
            ),
        );
    }

    /// One pass over everything, in order: every gateway, then every
    /// application, each reconciled once as its controller would. For
    /// tests and tools that want a deterministic step; [`run`](Self::run)
    /// is what serves.
    pub async fn reconcile(&mut self) -> Result<(), StoreError> {
        for gateway in self.store.list::<Gateway>().await? {
            let related = Related::load(&self.store, self.gateways.related()).await?;
            match self.gateways.reconcile_gateway(&gateway, &related).await {
                Ok(_) | Err(ReconcileError::Unreachable { .. }) => {}
                Err(ReconcileError::Store(e)) => return Err(e),
            }
        }
        for application in self.store.list::<Application>().await? {
            let related = Related::load(&self.store, self.applications.related()).await?;
            match self
                .applications
                .reconcile_application(&application, &related)
                .await
            {
                Ok(_) | Err(ReconcileError::Unreachable { .. }) => {}
                Err(ReconcileError::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<G: GatewayClient + Clone> Controller<G> {
    /// Reconciles gateway `name` once, as the Gateway controller does
    /// when it falls due: reads it, then polls it. A missing one needs
    /// nothing. The devices, which the running controller keeps from its
    /// watch, are listed first.
    pub async fn reconcile_gateway(&mut self, name: &str) -> Result<Action, ReconcileError> {
        let Some(gateway) = self.store.get::<Gateway>(name).await? else {
            return Ok(Action::AwaitChange);
        };
        let related = Related::load(&self.store, self.gateways.related()).await?;
        self.gateways.reconcile_gateway(&gateway, &related).await
    }

    /// Reconciles application `name` once, as the Application controller
    /// does when it falls due; its devices and gateways, which the running
    /// controller keeps from its watches, are listed first.
    pub async fn reconcile_application(&mut self, name: &str) -> Result<Action, ReconcileError> {
        let Some(application) = self.store.get::<Application>(name).await? else {
            return Ok(Action::AwaitChange);
        };
        let related = Related::load(&self.store, self.applications.related()).await?;
        self.applications
            .reconcile_application(&application, &related)
            .await
    }
}

/// Changes the status of an object, unless it is gone.
async fn status_ignoring_gone<T: Object>(
    store: &Store,
    name: &str,
    change: impl FnMut(&mut T) -> bool,
) -> Result<(), StoreError> {
    match store.modify_status(name, change).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn base(gateway: &Gateway) -> String {
    gateway.spec.http_endpoint.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::events::EventType;
    use crate::controller::fixtures::{FakeGateway, RecordedEvents, application, device, gateway};
    use crate::model::Device;
    use tokio::time::Instant;

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
        store.create(&gateway("gw-a")).await.expect("created");
        store
    }

    /// Gateway `gw-a`, device `d1` at it, and `app` selecting `d1`, its
    /// module stored.
    async fn store_with_application_and_device() -> Store {
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
        let store = store_with_application_and_device().await;
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
        let placed = placements(&store).await;
        let id = placed[0].1.expect("placed");
        assert_eq!(placed, [("d1".to_owned(), Some(id))]);
        // Numbered fleet-wide, the same at any gateway the device moves to.
        assert!(wasmbed_gateway_api::FLEET_DEPLOYMENT_IDS.contains(&id));
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
                .contains(&format!("GET https://gw-a/v1/deployments/{id}"))
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
        assert_eq!(placements(&store).await, [("d1".to_owned(), Some(id))]);
        let posts = gateway
            .calls()
            .iter()
            .filter(|c| c.starts_with("POST"))
            .count();
        assert_eq!(posts, 1);
        assert_eq!(gateway.deployments.lock().expect("not poisoned").len(), 1);
    }

    #[tokio::test]
    async fn an_application_gone_without_its_undeploy_is_taken_off_its_devices() {
        let store = store_with_application_and_device().await;
        let controller = Controller::with_client(
            &store,
            config(Duration::from_secs(60)),
            Arc::new(FakeGateway::default()),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));
        let listed = |store: Store| async move {
            store
                .fetch::<Device>("d1")
                .await
                .expect("there")
                .status
                .deployments
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(store.clone()).await.is_empty() {
            assert!(Instant::now() < deadline, "d1 never listed the application");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Its finalizer removed by hand, then deleted: gone at once.
        store
            .modify::<Application>("app", |a| {
                a.metadata.finalizers.clear();
                true
            })
            .await
            .expect("modified");
        store
            .delete::<Application>("app", None)
            .await
            .expect("deleted");
        while !listed(store.clone()).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "d1 still lists the deleted application"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        running.await.expect("stopped");
    }
}
