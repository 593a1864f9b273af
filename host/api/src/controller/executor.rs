//! Performs a [plan](super::plan)'s operations through a
//! [`GatewayClient`] and works out the application's deployments after
//! them, their latest results, and the deployments this pass created.

use std::collections::HashMap;

use base64::Engine;
use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tracing::{info, warn};
use wasmbed_gateway_api::{DeployRequest, DeploymentView, LimitsJson, ResultView, ValueJson};

use super::backoff::Backoffs;
use super::gateway_client::{CallError, GatewayClient};
use super::plan::{Drain, Operation, adoptable};
use crate::model::{
    DeploymentStatus, ExecutionResult, Limits, Phase, RESULTS_PER_DEPLOYMENT, WasmValue,
};
use crate::store::StoreError;

/// Most results asked of a gateway per deployment and pass (to count them).
pub(crate) const RESULTS_FETCHED: u32 = 1000;

/// What is placed: one revision of one application.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement<'a> {
    /// The application's resource name (for logs).
    pub(crate) application: &'a str,
    /// Its revision.
    pub(crate) revision: &'a str,
    /// The gateway deployments' id for that revision
    /// ([`super::gateway_application_id`]).
    pub(crate) application_id: u64,
    /// The application's uid (for [`super::fleet_deployment_id`]).
    pub(crate) uid: &'a str,
    pub(crate) limits: &'a Limits,
}

/// What the operations came to.
#[derive(Debug, Default)]
pub(crate) struct Executed {
    /// The application's deployments after the pass, in operation order.
    pub(crate) deployments: Vec<DeploymentStatus>,
    /// Deployments created or adopted in this pass (gateway base URL, id):
    /// taken back if the application turns out to be gone.
    pub(crate) created: Vec<(String, u64)>,
    /// The latest results of the deployments polled, by device name and
    /// gateway deployment id, newest first.
    pub(crate) fetched: HashMap<(String, u64), Vec<ExecutionResult>>,
}

impl Executed {
    /// Adds results fetched for `device`'s deployment `id`.
    fn fetch(&mut self, device: &str, id: u64, results: Vec<ExecutionResult>) {
        self.fetched
            .entry((device.to_owned(), id))
            .or_default()
            .extend(results);
    }
}

/// Performs operations for one application.
#[derive(Debug)]
pub(crate) struct Executor<'a, G> {
    pub(crate) client: &'a G,
    pub(crate) backoffs: &'a mut Backoffs,
}

impl<G: GatewayClient> Executor<'_, G> {
    /// Performs `operations` in order. `load_module` gives the module's
    /// bytes (`None` when the store lost them); it is called at most once,
    /// when something is created.
    pub(crate) async fn execute<'m>(
        &mut self,
        placement: Placement<'_>,
        operations: Vec<Operation>,
        mut load_module: impl FnMut() -> BoxFuture<'m, Result<Option<Vec<u8>>, StoreError>> + Send,
    ) -> Result<Executed, StoreError> {
        let mut executed = Executed::default();
        let mut module_b64: Option<String> = None;
        for operation in operations {
            match operation {
                Operation::Record(entry) => executed.deployments.push(entry),
                Operation::Remove {
                    mut entry,
                    gateway,
                    base,
                    id,
                } => match self.client.remove_deployment(&base, id).await {
                    Ok(()) => {
                        info!(application = placement.application, device = %entry.device, %gateway, deployment = id, "removed from device");
                    }
                    Err(e) if e.is_not_found() => {
                        info!(application = placement.application, device = %entry.device, %gateway, deployment = id, "already gone from the gateway");
                    }
                    Err(e) => {
                        self.note_failure(&gateway, &e);
                        entry.reason = Some(e.to_string());
                        executed.deployments.push(entry);
                    }
                },
                Operation::Poll {
                    mut entry,
                    gateway,
                    base,
                    id,
                    drain,
                } => {
                    let polled = self.poll(&base, id, &mut entry, &gateway).await;
                    if let Some(results) = &polled {
                        executed.fetch(&entry.device, id, results.clone());
                    }
                    self.drain(&mut entry, id, drain, polled.as_deref(), &mut executed)
                        .await;
                    executed.deployments.push(entry);
                }
                Operation::Place {
                    mut entry,
                    gateway,
                    base,
                    device_id,
                    drain,
                } => {
                    let moved_from = entry.gateway.clone().filter(|g| *g != gateway);
                    let found = match self.client.deployments_of(&base, &device_id).await {
                        Ok(views) => adoptable(&views, placement.application_id).cloned(),
                        Err(e) => {
                            self.note_failure(&gateway, &e);
                            entry.reason = Some(e.to_string());
                            executed.deployments.push(entry);
                            continue;
                        }
                    };
                    let view = match found {
                        Some(view) => {
                            info!(application = placement.application, device = %entry.device, deployment = view.id, "adopted");
                            Some(view)
                        }
                        None => {
                            if module_b64.is_none() {
                                let Some(bytes) = load_module().await? else {
                                    entry.phase = Phase::Failed;
                                    entry.reason = Some("the module's bytes are missing".into());
                                    executed.deployments.push(entry);
                                    continue;
                                };
                                module_b64 =
                                    Some(base64::engine::general_purpose::STANDARD.encode(bytes));
                            }
                            let deployment_id = entry.gateway_deployment_id.unwrap_or_else(|| {
                                super::fleet_deployment_id(
                                    placement.uid,
                                    placement.revision,
                                    &device_id,
                                )
                            });
                            let request = DeployRequest {
                                application_id: placement.application_id,
                                module: module_b64.clone().unwrap_or_default(),
                                devices: vec![device_id.clone()],
                                limits: limits_json(placement.limits),
                                deployment_id: Some(deployment_id),
                            };
                            match self.client.deploy(&base, &request).await {
                                Ok(views) if !views.is_empty() => {
                                    let view = views.into_iter().next();
                                    if let Some(view) = &view {
                                        info!(application = placement.application, device = %entry.device, deployment = view.id, "deployed");
                                    }
                                    view
                                }
                                Ok(_) => {
                                    entry.reason = Some("gateway created no deployment".into());
                                    None
                                }
                                Err(e) => {
                                    self.note_failure(&gateway, &e);
                                    entry.reason = Some(e.to_string());
                                    None
                                }
                            }
                        }
                    };
                    if let Some(view) = view {
                        if let Some(left) = moved_from {
                            info!(application = placement.application, device = %entry.device, from = %left, to = %gateway, deployment = view.id, "deployment moved with its device");
                            if !entry.moved_from.contains(&left) {
                                entry.moved_from.push(left);
                            }
                        }
                        entry.moved_from.retain(|g| *g != gateway);
                        entry.gateway_deployment_id = Some(view.id);
                        entry.gateway = Some(gateway);
                        entry.device_id = Some(device_id);
                        entry.revision = Some(placement.revision.to_owned());
                        entry.phase = view.state.into();
                        entry.reason = view.reason;
                        executed.created.push((base, view.id));
                    }
                    if let Some(id) = entry.gateway_deployment_id {
                        self.drain(&mut entry, id, drain, None, &mut executed).await;
                    }
                    executed.deployments.push(entry);
                }
            }
        }
        Ok(executed)
    }

    /// Collects deployment `id`'s results from each gateway the device
    /// left, then has it forget the deployment there. `current` holds the
    /// results polled at the device's gateway now, if any: a result found
    /// at both (sent again after a lost acknowledgement) counts once. A
    /// gateway that cannot forget it yet (the device is back there, or a
    /// result arrived since) stays in `moved_from` for the next pass.
    async fn drain(
        &mut self,
        entry: &mut DeploymentStatus,
        id: u64,
        drain: Vec<Drain>,
        current: Option<&[ExecutionResult]>,
        executed: &mut Executed,
    ) {
        for Drain { gateway, base } in drain {
            let results = match self.client.results(&base, id, RESULTS_FETCHED).await {
                Ok(results) => results,
                Err(e) => {
                    self.note_failure(&gateway, &e);
                    continue;
                }
            };
            let held = u32::try_from(results.len()).unwrap_or(u32::MAX);
            let new = results
                .iter()
                .filter(|r| current.is_none_or(|c| c.iter().all(|k| k.invocation != r.invocation)))
                .count();
            let collected: Vec<ExecutionResult> = results
                .into_iter()
                .map(|r| execution_result(&entry.device, id, r))
                .collect();
            executed.fetch(&entry.device, id, collected);
            match self.client.forget(&base, id, held).await {
                Ok(()) => {
                    info!(device = %entry.device, %gateway, deployment = id, results = held, "collected and forgotten where the device was");
                    entry.results_moved = entry.results_moved.saturating_add(new as u64);
                    entry.moved_from.retain(|g| *g != gateway);
                }
                Err(e) if e.is_not_found() => entry.moved_from.retain(|g| *g != gateway),
                Err(e) => {
                    info!(device = %entry.device, %gateway, deployment = id, error = %e, "not forgotten yet where the device was");
                    self.note_failure(&gateway, &e);
                }
            }
        }
        entry.results = entry.results.max(entry.results_moved);
    }

    /// A gateway that could not be reached (not one that refused) backs off.
    fn note_failure(&mut self, gateway: &str, error: &CallError) {
        if error.backs_off() {
            self.backoffs.failed(gateway, Instant::now());
        }
    }

    /// Copies a gateway deployment's state and result count into `entry`;
    /// returns its latest results, newest first (`None` when they could
    /// not be fetched).
    async fn poll(
        &mut self,
        base: &str,
        id: u64,
        entry: &mut DeploymentStatus,
        gateway: &str,
    ) -> Option<Vec<ExecutionResult>> {
        match self.client.deployment(base, id).await {
            Ok(view) => apply_view(entry, view),
            Err(e) if e.is_not_found() => {
                // The gateway lost it (new database): placed again next pass.
                entry.gateway_deployment_id = None;
                entry.phase = Phase::Pending;
                entry.reason = Some("the gateway no longer knows the deployment".into());
                return None;
            }
            Err(e) => {
                self.note_failure(gateway, &e);
                entry.reason = Some(e.to_string());
                return None;
            }
        }
        let results = match self.client.results(base, id, RESULTS_FETCHED).await {
            Ok(results) => results,
            Err(e) => {
                warn!(deployment = id, error = %e, "results not fetched");
                return None;
            }
        };
        // Never fewer than counted before: a device that moved left its
        // results at a gateway that may not answer yet (they are kept).
        let here = u64::try_from(results.len()).unwrap_or(u64::MAX);
        entry.results = entry.results.max(here.saturating_add(entry.results_moved));
        // The gateway lists them newest first. A run that trapped (or was
        // cut by a device reset) is why a deployment stopped or failed:
        // say so where people look, unless the gateway gave a reason.
        if entry.reason.is_none()
            && let Some(trap) = results.first().and_then(|r| r.trap)
        {
            entry.reason = Some(format!(
                "the last run trapped: {}",
                wasmbed_gateway_api::trap_code::name(trap)
            ));
        }
        Some(
            results
                .into_iter()
                .take(RESULTS_PER_DEPLOYMENT)
                .map(|r| execution_result(&entry.device, id, r))
                .collect(),
        )
    }
}

fn apply_view(entry: &mut DeploymentStatus, view: DeploymentView) {
    entry.phase = view.state.into();
    entry.reason = view.reason;
}

fn execution_result(device: &str, id: u64, r: ResultView) -> ExecutionResult {
    ExecutionResult {
        device: device.to_owned(),
        gateway_deployment_id: id,
        invocation: r.invocation,
        returned: r
            .returned
            .map(|values| values.into_iter().map(wasm_value).collect()),
        trap: r.trap.map(wasmbed_gateway_api::trap_code::name),
        fuel_used: r.fuel_used,
        duration_us: r.duration_us,
        logs: r.logs,
        logs_truncated: r.logs_truncated,
        received_at: r.received_at_ms,
    }
}

fn wasm_value(value: ValueJson) -> WasmValue {
    match value {
        ValueJson::I32(x) => WasmValue::I32(x),
        ValueJson::I64(x) => WasmValue::I64(x),
        ValueJson::F32(x) => WasmValue::F32(x),
        ValueJson::F64(x) => WasmValue::F64(x),
    }
}

fn limits_json(limits: &Limits) -> LimitsJson {
    LimitsJson {
        fuel: limits.fuel,
        memory_pages: limits.memory_pages,
        entry: limits.entry.clone(),
        args: limits
            .args
            .iter()
            .map(|value| match *value {
                WasmValue::I32(x) => ValueJson::I32(x),
                WasmValue::I64(x) => ValueJson::I64(x),
                WasmValue::F32(x) => ValueJson::F32(x),
                WasmValue::F64(x) => ValueJson::F64(x),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wasmbed_protocol::TrapCode;

    use super::*;
    use crate::controller::fixtures::{FakeGateway, placed, view};

    const ID_1: &str = "00000000000000000000000000000001";
    const ID_2: &str = "00000000000000000000000000000002";
    const APP_ID: u64 = 7;
    const BASE: &str = "https://gw-a";

    fn limits() -> Limits {
        Limits {
            fuel: 1000,
            memory_pages: 1,
            entry: "run".to_owned(),
            args: vec![WasmValue::I32(21)],
        }
    }

    fn fleet_id(device_id: &str) -> u64 {
        crate::controller::fleet_deployment_id("uid-app", "rev", device_id)
    }

    fn place(device: &str, device_id: &str) -> Operation {
        Operation::Place {
            entry: DeploymentStatus {
                device: device.to_owned(),
                phase: Phase::Pending,
                reason: None,
                gateway_deployment_id: None,
                gateway: None,
                device_id: None,
                revision: None,
                results: 0,
                moved_from: Vec::new(),
                results_moved: 0,
            },
            gateway: "gw-a".to_owned(),
            base: BASE.to_owned(),
            device_id: device_id.to_owned(),
            drain: Vec::new(),
        }
    }

    /// Runs `operations` against `gateway`; also returns how often the
    /// module was loaded.
    async fn run(
        gateway: &FakeGateway,
        backoffs: &mut Backoffs,
        operations: Vec<Operation>,
    ) -> (Executed, usize) {
        let limits = limits();
        let placement = Placement {
            application: "app",
            revision: "rev",
            application_id: APP_ID,
            uid: "uid-app",
            limits: &limits,
        };
        let mut loads = 0;
        let mut executor = Executor {
            client: gateway,
            backoffs,
        };
        let executed = executor
            .execute(placement, operations, || {
                loads += 1;
                Box::pin(async { Ok(Some(b"\0asm\x01\0\0\0".to_vec())) })
            })
            .await
            .expect("no store error");
        (executed, loads)
    }

    fn backoffs() -> Backoffs {
        Backoffs::new(Duration::from_secs(60), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_deployment_made_before_a_crash_is_adopted_not_made_again() {
        let gateway = FakeGateway::with(vec![view(9, ID_1, APP_ID)]);
        let (executed, loads) = run(&gateway, &mut backoffs(), vec![place("d1", ID_1)]).await;
        assert_eq!(
            gateway.calls(),
            [format!("GET {BASE}/v1/deployments?device={ID_1}")]
        );
        assert_eq!(loads, 0, "nothing created, so the module was not read");
        let entry = &executed.deployments[0];
        assert_eq!(entry.gateway_deployment_id, Some(9));
        assert_eq!(entry.gateway.as_deref(), Some("gw-a"));
        assert_eq!(entry.device_id.as_deref(), Some(ID_1));
        assert_eq!(entry.revision.as_deref(), Some("rev"));
        assert_eq!(entry.phase, Phase::Running);
        assert_eq!(executed.created, [(BASE.to_owned(), 9)]);
    }

    #[tokio::test]
    async fn devices_without_a_deployment_get_one_and_the_module_is_read_once() {
        // A deployment of another revision is not adopted.
        let gateway = FakeGateway::with(vec![view(1, ID_1, APP_ID + 1)]);
        let (executed, loads) = run(
            &gateway,
            &mut backoffs(),
            vec![place("d1", ID_1), place("d2", ID_2)],
        )
        .await;
        assert_eq!(loads, 1);
        let ids: Vec<_> = executed
            .deployments
            .iter()
            .map(|e| (e.device.as_str(), e.gateway_deployment_id, e.phase))
            .collect();
        assert_eq!(
            ids,
            [
                ("d1", Some(fleet_id(ID_1)), Phase::Pending),
                ("d2", Some(fleet_id(ID_2)), Phase::Pending)
            ]
        );
        assert_eq!(
            executed.created,
            [
                (BASE.to_owned(), fleet_id(ID_1)),
                (BASE.to_owned(), fleet_id(ID_2))
            ]
        );
    }

    #[tokio::test]
    async fn a_moved_deployment_keeps_its_id_and_is_drained_where_the_device_was() {
        let id = fleet_id(ID_1);
        let gateway = FakeGateway::with(vec![view(id, ID_1, APP_ID)]);
        let result = |invocation, at| ResultView {
            deployment: id,
            device: ID_1.into(),
            invocation,
            returned: Some(vec![ValueJson::I32(42)]),
            trap: None,
            fuel_used: 1,
            duration_us: 1,
            logs: Vec::new(),
            logs_truncated: false,
            received_at_ms: at,
        };
        gateway
            .results
            .lock()
            .expect("not poisoned")
            .insert(id, vec![result(1, 10)]);
        let mut entry = placed("d1", "gw-a", ID_1, "rev", id);
        entry.results = 1;
        let moved = Operation::Place {
            entry,
            gateway: "gw-b".into(),
            base: "https://gw-b".into(),
            device_id: ID_1.into(),
            drain: Vec::new(),
        };
        let (executed, _) = run(&gateway, &mut backoffs(), vec![moved]).await;
        let entry = executed.deployments[0].clone();
        assert_eq!(entry.gateway.as_deref(), Some("gw-b"));
        assert_eq!(entry.gateway_deployment_id, Some(id));
        assert_eq!(entry.moved_from, ["gw-a"]);

        // Next pass: polled at gw-b; its results collected at gw-a, which
        // then forgets it.
        let drain = |base: &str| Drain {
            gateway: "gw-a".into(),
            base: base.into(),
        };
        let poll = Operation::Poll {
            entry: entry.clone(),
            gateway: "gw-b".into(),
            base: "https://gw-b".into(),
            id,
            drain: vec![drain("https://gw-a")],
        };
        let (executed, _) = run(&gateway, &mut backoffs(), vec![poll]).await;
        let after = &executed.deployments[0];
        assert!(after.moved_from.is_empty(), "{after:?}");
        assert!(
            gateway
                .calls()
                .contains(&format!("POST https://gw-a/v1/deployments/{id}/forget"))
        );
        // Found at both (one fake plays both gateways): counted once.
        assert_eq!(after.results, 1);
        assert_eq!(executed.fetched[&("d1".to_owned(), id)].len(), 2);
    }

    #[tokio::test]
    async fn a_deployment_the_gateway_lost_is_cleared_for_placing_again() {
        let gateway = FakeGateway::default();
        let entry = placed("d1", "gw-a", ID_1, "rev", 5);
        let poll = Operation::Poll {
            entry,
            gateway: "gw-a".into(),
            base: BASE.into(),
            id: 5,
            drain: Vec::new(),
        };
        let mut backoffs = backoffs();
        let (executed, _) = run(&gateway, &mut backoffs, vec![poll]).await;
        let entry = &executed.deployments[0];
        assert_eq!(entry.gateway_deployment_id, None);
        assert_eq!(entry.phase, Phase::Pending);
        assert!(
            backoffs.available("gw-a", Instant::now()),
            "a 404 is no failure"
        );
    }

    #[tokio::test]
    async fn a_poll_copies_the_state_results_and_last_trap() {
        let mut failed = view(5, ID_1, APP_ID);
        failed.state = wasmbed_gateway_api::DeploymentState::Failed;
        let gateway = FakeGateway::with(vec![failed]);
        let trapped = ResultView {
            deployment: 5,
            device: ID_1.to_owned(),
            invocation: 2,
            returned: None,
            trap: Some(TrapCode::OutOfFuel),
            fuel_used: 1000,
            duration_us: 3,
            logs: Vec::new(),
            logs_truncated: false,
            received_at_ms: 10,
        };
        let returned = ResultView {
            invocation: 1,
            returned: Some(vec![ValueJson::I32(42)]),
            trap: None,
            received_at_ms: 9,
            ..trapped.clone()
        };
        gateway
            .results
            .lock()
            .expect("not poisoned")
            .insert(5, vec![trapped, returned]);
        let poll = Operation::Poll {
            entry: placed("d1", "gw-a", ID_1, "rev", 5),
            gateway: "gw-a".into(),
            base: BASE.into(),
            id: 5,
            drain: Vec::new(),
        };
        let (executed, _) = run(&gateway, &mut backoffs(), vec![poll]).await;
        let entry = &executed.deployments[0];
        assert_eq!(entry.phase, Phase::Failed);
        assert_eq!(entry.results, 2);
        assert_eq!(
            entry.reason.as_deref(),
            Some("the last run trapped: OutOfFuel")
        );
        let results = &executed.fetched[&("d1".to_owned(), 5)];
        assert_eq!(results[0].trap.as_deref(), Some("OutOfFuel"));
        assert_eq!(results[1].returned, Some(vec![WasmValue::I32(42)]));
    }

    #[tokio::test]
    async fn an_unreachable_gateway_backs_off_and_a_failed_removal_is_kept() {
        let gateway = FakeGateway::with(vec![view(5, ID_1, APP_ID)]);
        *gateway.failure.lock().expect("not poisoned") =
            Some(CallError::Unreachable("timed out".into()));
        let stale = placed("d1", "gw-a", ID_1, "old", 5);
        let remove = Operation::Remove {
            entry: stale.clone(),
            gateway: "gw-a".into(),
            base: BASE.into(),
            id: 5,
        };
        let mut backoffs = backoffs();
        let (executed, loads) = run(&gateway, &mut backoffs, vec![remove, place("d2", ID_2)]).await;
        assert!(!backoffs.available("gw-a", Instant::now()));
        assert_eq!(loads, 0);
        let reason = Some("gateway unreachable: timed out".to_owned());
        assert_eq!(executed.deployments[0].gateway_deployment_id, Some(5));
        assert_eq!(executed.deployments[0].reason, reason);
        assert_eq!(executed.deployments[1].gateway_deployment_id, None);
        assert_eq!(executed.deployments[1].reason, reason);
        assert!(executed.created.is_empty());
    }

    #[tokio::test]
    async fn a_removal_drops_the_entry_also_when_the_gateway_already_forgot_it() {
        let gateway = FakeGateway::with(vec![view(5, ID_1, APP_ID)]);
        let remove = |id| Operation::Remove {
            entry: placed("d1", "gw-a", ID_1, "old", id),
            gateway: "gw-a".into(),
            base: BASE.into(),
            id,
        };
        let (executed, _) = run(&gateway, &mut backoffs(), vec![remove(5), remove(6)]).await;
        assert!(executed.deployments.is_empty());
        let removed = gateway.deployments.lock().expect("not poisoned")[0].desired;
        assert_eq!(removed, wasmbed_gateway_api::Desired::Removed);
    }
}
