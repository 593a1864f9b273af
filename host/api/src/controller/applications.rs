//! The Application controller: per application, places it on every
//! matching device that has no deployment at its gateway yet (adopting one
//! made before a crash), polls the state and results of those it placed,
//! removes it, at the gateway holding it, from devices that no longer
//! match, were deleted or moved, replaces deployments of an older revision,
//! and, for an application being deleted, removes its deployments and then
//! its finalizer ([`UNDEPLOY_FINALIZER`]). Each device's status lists the
//! applications placed on it.
//!
//! [`plan`](super::plan) decides the operations without I/O; the
//! [executor](super::executor) performs them. A device change concerns
//! the applications whose selector matches it or which are placed on it;
//! a gateway becoming reachable or unreachable concerns every application.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash as _};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::Instant;
use tracing::warn;

use super::backoff::Backoffs;
use super::events::{self, EventType, ObjectEvent};
use super::executor::{Executor, Placement};
use super::plan::{self, Desired, Observed, placed_as_now};
use super::runtime::{Action, Cache, Reconciler, Related};
use super::{ControllerConfig, GatewayClient, ReconcileError, gateway_application_id};
use crate::model::{
    Application, DeploymentStatus, Device, DeviceDeployment, ExecutionResult, Gateway, Kind,
    Object as _, Phase, RESULTS_PER_DEPLOYMENT, UNDEPLOY_FINALIZER,
};
use crate::store::{Store, StoreError, StoredObject, from_stored};

/// How often an application with nothing placed is reconciled without a
/// change (in case a change was missed).
const RESYNC: Duration = Duration::from_secs(60);

/// Reconciles [`Application`]s.
#[derive(Debug)]
pub(crate) struct ApplicationReconciler<G> {
    pub(crate) store: Store,
    pub(crate) client: G,
    pub(crate) config: ControllerConfig,
    pub(crate) backoffs: Backoffs,
}

impl<G: GatewayClient> Reconciler for ApplicationReconciler<G> {
    type Object = Application;
    type Error = ReconcileError;

    fn related(&self) -> &'static [Kind] {
        &[Kind::Device, Kind::Gateway]
    }

    /// A device matters for its spec (gateway, id, revocation) and its
    /// labels (selectors); a gateway for its spec and whether it is
    /// reachable, not for its heartbeats.
    fn fingerprint(&self, related: &StoredObject, hasher: &mut DefaultHasher) {
        related.metadata.generation.hash(hasher);
        related.metadata.labels.hash(hasher);
        related.metadata.deletion_timestamp.hash(hasher);
        related
            .status
            .get("reachable")
            .map(ToString::to_string)
            .hash(hasher);
    }

    fn map(&self, kind: Kind, related: &StoredObject, cache: &Cache<Application>) -> Vec<String> {
        match kind {
            Kind::Device => {
                let Ok(device) = from_stored::<Device>(related.clone()) else {
                    return Vec::new();
                };
                cache
                    .values()
                    .filter(|a| {
                        a.spec.selector.matches(&device.metadata)
                            || a.status
                                .deployments
                                .iter()
                                .any(|d| d.device == device.metadata.name)
                    })
                    .map(|a| a.metadata.name.clone())
                    .collect()
            }
            Kind::Gateway | Kind::Application => cache.keys().cloned().collect(),
        }
    }

    async fn reconcile(
        &mut self,
        application: Arc<Application>,
        related: &Related,
    ) -> Result<Action, ReconcileError> {
        self.reconcile_application(&application, related).await
    }

    /// Gone without its undeploy (its finalizer removed by hand): no device
    /// lists it any more. What it left at gateways is theirs to forget.
    async fn cleanup(&mut self, name: &str, related: &Related) {
        let devices = match related.list::<Device>() {
            Ok(devices) => devices,
            Err(e) => {
                warn!(application = name, error = %e, "the devices kept do not decode");
                return;
            }
        };
        let listing = devices
            .iter()
            .filter(|d| d.status.deployments.iter().any(|e| e.application == name));
        for device in listing {
            let removed =
                super::status_ignoring_gone::<Device>(&self.store, &device.metadata.name, |d| {
                    let before = d.status.deployments.len();
                    d.status.deployments.retain(|e| e.application != name);
                    d.status.deployments.len() != before
                })
                .await;
            if let Err(e) = removed {
                warn!(application = name, device = %device.metadata.name, error = %e, "could not take a deleted application off a device's status");
            }
        }
    }
}

impl<G: GatewayClient> ApplicationReconciler<G> {
    /// Plans and performs what `application` needs now; devices and
    /// gateways are read from `related`.
    pub(crate) async fn reconcile_application(
        &mut self,
        application: &Application,
        related: &Related,
    ) -> Result<Action, ReconcileError> {
        let now = Instant::now();
        let gateways = related.list::<Gateway>()?;
        let usable: HashMap<String, String> = gateways
            .iter()
            .filter(|g| g.status.reachable && self.backoffs.available(&g.metadata.name, now))
            .map(|g| (g.metadata.name.clone(), super::base(g)))
            .collect();
        let gateway_names: BTreeSet<String> =
            gateways.into_iter().map(|g| g.metadata.name).collect();
        let devices = related.list::<Device>()?;
        let by_name: HashMap<&str, &Device> = devices
            .iter()
            .map(|d| (d.metadata.name.as_str(), d))
            .collect();
        let observed = Observed {
            devices: &by_name,
            usable: &usable,
            gateways: &gateway_names,
        };
        let after = self.place(application, observed).await?;
        self.record_on_devices(application, after.as_deref(), &by_name)
            .await?;
        Ok(match after {
            None => Action::AwaitChange,
            Some(deployments) if deployments.is_empty() => Action::Requeue(RESYNC),
            Some(_) => Action::Requeue(self.config.interval),
        })
    }

    /// Writes into each device's status whether `application` is placed on
    /// it now, and in which phase: for the devices it was on before this
    /// reconcile and those it is on after (`None`: it is gone).
    async fn record_on_devices(
        &self,
        application: &Application,
        after: Option<&[DeploymentStatus]>,
        devices: &HashMap<&str, &Device>,
    ) -> Result<(), StoreError> {
        let name = &application.metadata.name;
        let revision = application.spec.revision();
        let concerned: BTreeSet<&str> = application
            .status
            .deployments
            .iter()
            .chain(after.into_iter().flatten())
            .map(|d| d.device.as_str())
            .collect();
        for device_name in concerned {
            let Some(device) = devices.get(device_name) else {
                continue;
            };
            let wanted: Option<Phase> = after
                .into_iter()
                .flatten()
                .find(|d| d.device == device_name && placed_as_now(d, device, &revision))
                .map(|d| d.phase);
            let phase_on = |d: &Device| {
                d.status
                    .deployments
                    .iter()
                    .find(|e| &e.application == name)
                    .map(|e| e.phase)
            };
            if phase_on(device) == wanted {
                continue;
            }
            super::status_ignoring_gone::<Device>(&self.store, device_name, |d| {
                if phase_on(d) == wanted {
                    return false;
                }
                d.status.deployments.retain(|e| &e.application != name);
                if let Some(phase) = wanted {
                    d.status.deployments.push(DeviceDeployment {
                        application: name.clone(),
                        phase,
                    });
                    d.status
                        .deployments
                        .sort_by(|a, b| a.application.cmp(&b.application));
                }
                true
            })
            .await?;
        }
        Ok(())
    }

    /// Plans and performs the gateway operations for `application`;
    /// returns its deployments after them, `None` when it is gone.
    async fn place(
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
            uid: &application.metadata.uid,
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
                // these placements belong to the old one, not to it.
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
            // Changed meanwhile: the next reconcile finishes.
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
    /// fetched now, and the kept ones of deployments not polled (their
    /// gateway is unreachable); those of devices it left are dropped.
    async fn record_results(
        &self,
        uid: &str,
        deployments: &[DeploymentStatus],
        mut fetched: HashMap<(String, u64), Vec<ExecutionResult>>,
    ) -> Result<(), StoreError> {
        let kept = self.store.results(uid).await?;
        let mut results = Vec::new();
        for deployment in deployments {
            let kept_here = kept.iter().filter(|r| {
                r.device == deployment.device
                    && Some(r.gateway_deployment_id) == deployment.gateway_deployment_id
            });
            let latest = deployment
                .gateway_deployment_id
                .and_then(|id| fetched.remove(&(deployment.device.clone(), id)));
            let Some(latest) = latest else {
                results.extend(kept_here.cloned());
                continue;
            };
            // Fetched from several gateways (the device moved) and kept
            // from earlier passes (collected where it was before): each
            // invocation once, the newest copy.
            let mut by_invocation: BTreeMap<u32, ExecutionResult> = BTreeMap::new();
            for result in kept_here.cloned().chain(latest) {
                let newer = by_invocation
                    .get(&result.invocation)
                    .is_none_or(|held| held.received_at <= result.received_at);
                if newer {
                    by_invocation.insert(result.invocation, result);
                }
            }
            let mut merged: Vec<ExecutionResult> = by_invocation.into_values().collect();
            merged.sort_by(|a, b| {
                b.received_at
                    .cmp(&a.received_at)
                    .then_with(|| b.invocation.cmp(&a.invocation))
            });
            merged.truncate(RESULTS_PER_DEPLOYMENT);
            results.extend(merged);
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
