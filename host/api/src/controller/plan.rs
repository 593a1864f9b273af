//! What one reconcile must do for one application, decided without doing it:
//! [`plan`] compares what the application wants (its selector, revision
//! and deletion) with what was observed (its recorded deployments, the
//! devices, the gateways that answered) and lists [`Operation`]s, which
//! the [executor](super::executor) performs.

use std::collections::{BTreeSet, HashMap};

use tracing::warn;
use wasmbed_gateway_api::{DeploymentView, Desired as DesiredState, FLEET_DEPLOYMENT_IDS};

use crate::http::devices::normalize_device_id;
use crate::model::{Application, DeploymentStatus, Device, Phase};

/// What the application wants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Desired<'a> {
    pub(crate) application: &'a Application,
    /// Its current revision ([`crate::model::ApplicationSpec::revision`]).
    pub(crate) revision: &'a str,
}

/// What the reconcile observed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed<'a> {
    /// Every device, by resource name.
    pub(crate) devices: &'a HashMap<&'a str, &'a Device>,
    /// The gateways usable now (reachable as their controller last saw, and
    /// not backing off here),
    /// by name, with the base URL of their HTTP interface.
    pub(crate) usable: &'a HashMap<String, String>,
    /// The name of every gateway resource.
    pub(crate) gateways: &'a BTreeSet<String>,
}

/// One thing to do for one device. Each carries the device's status entry
/// as it stands, which the executor updates and records.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operation {
    /// Nothing to call: record the entry (its `reason` says what it waits
    /// for).
    Record(DeploymentStatus),
    /// Take deployment `id` off its device at `gateway`: the device no
    /// longer matches, was deleted, moved, enrolled again, or runs an older
    /// revision, or the application is being deleted. The entry is kept
    /// only when the removal fails.
    Remove {
        entry: DeploymentStatus,
        gateway: String,
        base: String,
        id: u64,
    },
    /// Copy deployment `id`'s state and results into the entry, then
    /// collect its results from the gateways the device left (`drain`)
    /// and have them forget it.
    Poll {
        entry: DeploymentStatus,
        gateway: String,
        base: String,
        id: u64,
        drain: Vec<Drain>,
    },
    /// Adopt the device's deployment of this revision at `gateway` (made
    /// before a crash, its id never recorded) or, if it has none, create it
    /// with its fleet-wide id. An entry placed at another gateway before
    /// (the device moved there) keeps its id, and that gateway joins its
    /// `moved_from`. Then the gateways the device left are drained.
    Place {
        entry: DeploymentStatus,
        gateway: String,
        base: String,
        device_id: String,
        drain: Vec<Drain>,
    },
}

/// A gateway the device left that still holds its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drain {
    pub(crate) gateway: String,
    pub(crate) base: String,
}

/// The operations of one reconcile for `desired`'s application: first the
/// removals of stale deployments, then, unless it is being deleted, one
/// operation per matching device, by device name.
pub(crate) fn plan(desired: Desired<'_>, observed: Observed<'_>) -> Vec<Operation> {
    let application = desired.application;
    let selector = &application.spec.selector;
    let wanted = |device: &Device| !device.spec.revoked && selector.matches(&device.metadata);
    let mut operations = Vec::new();

    for entry in &application.status.deployments {
        let device = observed.devices.get(entry.device.as_str()).copied();
        let keep = !application.metadata.deleting()
            && device.is_some_and(|d| wanted(d) && placed_as_now(entry, d, desired.revision));
        if keep {
            continue;
        }
        let Some(id) = entry.gateway_deployment_id else {
            continue; // nothing placed
        };
        // Entries written before the gateway was recorded were placed at
        // the device's gateway.
        let Some(gateway) = entry
            .gateway
            .clone()
            .or_else(|| device.map(|d| d.spec.gateway.clone()))
        else {
            warn!(application = %application.metadata.name, device = %entry.device, deployment = id, "deployment of a deleted device left at an unrecorded gateway");
            continue;
        };
        match observed.usable.get(&gateway) {
            Some(base) => operations.push(Operation::Remove {
                entry: entry.clone(),
                gateway,
                base: base.clone(),
                id,
            }),
            // The gateway is gone with its deployments.
            None if !observed.gateways.contains(&gateway) => {}
            None => {
                let mut entry = entry.clone();
                entry.reason = Some(format!("removal waits for gateway {gateway}"));
                operations.push(Operation::Record(entry));
            }
        }
    }
    if application.metadata.deleting() {
        return operations;
    }

    let mut matching: Vec<&Device> = observed
        .devices
        .values()
        .copied()
        .filter(|d| wanted(d))
        .collect();
    matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for device in matching {
        let gateway = device.current_gateway();
        let existing = application.status.deployments.iter().find(|e| {
            e.device == device.metadata.name && placed_as_now(e, device, desired.revision)
        });
        let mut entry = existing
            .cloned()
            .unwrap_or_else(|| new_entry(&device.metadata.name));
        // A gateway that was deleted is gone with its deployments.
        entry.moved_from.retain(|g| observed.gateways.contains(g));
        let drain: Vec<Drain> = entry
            .moved_from
            .iter()
            .filter(|g| g.as_str() != gateway)
            .filter_map(|g| {
                observed.usable.get(g).map(|base| Drain {
                    gateway: g.clone(),
                    base: base.clone(),
                })
            })
            .collect();
        let moved = entry.gateway.as_deref().is_some_and(|g| g != gateway);
        let device_id = device
            .spec
            .device_id
            .as_deref()
            .and_then(normalize_device_id);
        let base = observed.usable.get(gateway);
        let operation = match (device_id, base, entry.gateway_deployment_id) {
            (None, _, None) => {
                entry.reason = Some("the device has no device_id yet".into());
                Operation::Record(entry)
            }
            (_, None, _) => {
                entry.reason = Some(format!("gateway {gateway} is unknown or unreachable"));
                Operation::Record(entry)
            }
            (Some(device_id), Some(base), Some(_)) if moved => Operation::Place {
                entry,
                gateway: gateway.to_owned(),
                base: base.clone(),
                device_id,
                drain,
            },
            (_, Some(base), Some(id)) => {
                entry.gateway = Some(gateway.to_owned());
                Operation::Poll {
                    entry,
                    gateway: gateway.to_owned(),
                    base: base.clone(),
                    id,
                    drain,
                }
            }
            (Some(device_id), Some(base), None) => Operation::Place {
                entry,
                gateway: gateway.to_owned(),
                base: base.clone(),
                device_id,
                drain,
            },
        };
        operations.push(operation);
    }
    operations
}

/// The status entry of a device the application has not been placed on.
fn new_entry(device: &str) -> DeploymentStatus {
    DeploymentStatus {
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
    }
}

/// The deployment at a gateway that a [`Operation::Place`] adopts instead
/// of creating one: one of this application revision (`application_id`)
/// that is not being removed.
pub(crate) fn adoptable(views: &[DeploymentView], application_id: u64) -> Option<&DeploymentView> {
    views
        .iter()
        .find(|v| v.application_id == application_id && v.desired != DesiredState::Removed)
}

/// Whether `entry` is the device's placement as the device and the
/// application are now: not placed yet, or placed at the device's current
/// gateway under its current device id, with the current revision. One
/// placed before the device moved or enrolled again, or before the module
/// or limits changed, is stale.
pub(crate) fn placed_as_now(entry: &DeploymentStatus, device: &Device, revision: &str) -> bool {
    if entry.gateway_deployment_id.is_none() {
        return true;
    }
    let same_revision = entry.revision.as_deref().is_none_or(|r| r == revision);
    // A fleet-wide id moves with the device; a gateway's own id does not.
    let moves = entry
        .gateway_deployment_id
        .is_some_and(|id| FLEET_DEPLOYMENT_IDS.contains(&id));
    let same_gateway = moves
        || entry
            .gateway
            .as_deref()
            .is_none_or(|gateway| gateway == device.current_gateway());
    let current_id = device
        .spec
        .device_id
        .as_deref()
        .and_then(normalize_device_id);
    let same_id = entry
        .device_id
        .as_deref()
        .is_none_or(|id| current_id.as_deref() == Some(id));
    same_revision && same_gateway && same_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{application, device, placed, view};

    const ID_1: &str = "00000000000000000000000000000001";
    const ID_2: &str = "00000000000000000000000000000002";

    /// The plan for `application` over `devices`, with gateways `gw-a` and
    /// `gw-b` known and those in `usable` answering.
    fn plan_for(application: &Application, devices: &[Device], usable: &[&str]) -> Vec<Operation> {
        let devices: HashMap<&str, &Device> = devices
            .iter()
            .map(|d| (d.metadata.name.as_str(), d))
            .collect();
        let usable: HashMap<String, String> = usable
            .iter()
            .map(|g| ((*g).to_owned(), format!("https://{g}")))
            .collect();
        let gateways: BTreeSet<String> = ["gw-a".to_owned(), "gw-b".to_owned()].into();
        let revision = application.spec.revision();
        plan(
            Desired {
                application,
                revision: &revision,
            },
            Observed {
                devices: &devices,
                usable: &usable,
                gateways: &gateways,
            },
        )
    }

    fn place(device: &str, gateway: &str, device_id: &str, entry: DeploymentStatus) -> Operation {
        Operation::Place {
            entry: DeploymentStatus {
                device: device.to_owned(),
                ..entry
            },
            gateway: gateway.to_owned(),
            base: format!("https://{gateway}"),
            device_id: device_id.to_owned(),
            drain: Vec::new(),
        }
    }

    #[test]
    fn a_matching_device_without_a_deployment_is_placed_and_others_are_not() {
        let mut elsewhere = device("d2", "gw-a", Some(ID_2));
        elsewhere.metadata.labels.clear();
        let app = application("aa", Vec::new());
        let operations = plan_for(
            &app,
            &[device("d1", "gw-a", Some(ID_1)), elsewhere],
            &["gw-a"],
        );
        assert_eq!(operations, vec![place("d1", "gw-a", ID_1, new_entry("d1"))]);
    }

    #[test]
    fn a_device_whose_deployment_the_store_lost_is_placed_once_for_adoption() {
        // After a crash between the gateway's answer and the status write,
        // the entry has no deployment id: the plan asks for a placement,
        // which looks for the deployment at the gateway first (`adoptable`).
        let mut lost = new_entry("d1");
        lost.reason = Some("gateway unreachable: timed out".into());
        let app = application("aa", vec![lost.clone()]);
        let operations = plan_for(&app, &[device("d1", "gw-a", Some(ID_1))], &["gw-a"]);
        assert_eq!(operations, vec![place("d1", "gw-a", ID_1, lost)]);
    }

    #[test]
    fn only_a_live_deployment_of_the_same_revision_is_adopted() {
        let mut removed = view(1, ID_1, 7);
        removed.desired = DesiredState::Removed;
        let other_revision = view(2, ID_1, 8);
        let live = view(3, ID_1, 7);
        let views = [removed, other_revision, live];
        assert_eq!(adoptable(&views, 7).map(|v| v.id), Some(3));
        assert_eq!(adoptable(&views[..2], 7), None);
    }

    #[test]
    fn a_placed_deployment_of_the_current_revision_is_polled() {
        let app = application("aa", Vec::new());
        let revision = app.spec.revision();
        let entry = placed("d1", "gw-a", ID_1, &revision, 5);
        let app = application("aa", vec![entry.clone()]);
        let operations = plan_for(&app, &[device("d1", "gw-a", Some(ID_1))], &["gw-a"]);
        assert_eq!(
            operations,
            vec![Operation::Poll {
                entry,
                gateway: "gw-a".into(),
                base: "https://gw-a".into(),
                id: 5,
                drain: Vec::new(),
            }]
        );
    }

    #[test]
    fn a_new_revision_removes_the_old_deployment_and_places_the_new_one() {
        let old = placed("d1", "gw-a", ID_1, "old-revision", 5);
        let app = application("bb", vec![old.clone()]);
        let operations = plan_for(&app, &[device("d1", "gw-a", Some(ID_1))], &["gw-a"]);
        assert_eq!(
            operations,
            vec![
                Operation::Remove {
                    entry: old,
                    gateway: "gw-a".into(),
                    base: "https://gw-a".into(),
                    id: 5
                },
                place("d1", "gw-a", ID_1, new_entry("d1")),
            ]
        );
    }

    #[test]
    fn a_device_that_moved_loses_its_deployment_at_the_old_gateway_and_gets_one_at_the_new() {
        let app = application("aa", Vec::new());
        let entry = placed("d1", "gw-a", ID_1, &app.spec.revision(), 5);
        let app = application("aa", vec![entry.clone()]);
        let moved = device("d1", "gw-b", Some(ID_1));
        let operations = plan_for(&app, std::slice::from_ref(&moved), &["gw-a", "gw-b"]);
        assert_eq!(
            operations,
            vec![
                Operation::Remove {
                    entry: entry.clone(),
                    gateway: "gw-a".into(),
                    base: "https://gw-a".into(),
                    id: 5
                },
                place("d1", "gw-b", ID_1, new_entry("d1")),
            ]
        );
        // While the old gateway does not answer, the removal waits there.
        let operations = plan_for(&app, std::slice::from_ref(&moved), &["gw-b"]);
        let mut waiting = entry;
        waiting.reason = Some("removal waits for gateway gw-a".into());
        assert_eq!(operations[0], Operation::Record(waiting));
    }

    #[test]
    fn a_fleet_deployment_follows_its_device_and_the_gateway_it_left_is_drained() {
        let app = application("aa", Vec::new());
        let fleet_id = *FLEET_DEPLOYMENT_IDS.start() + 5;
        let entry = placed("d1", "gw-a", ID_1, &app.spec.revision(), fleet_id);
        let app = application("aa", vec![entry.clone()]);
        // Its spec still names gw-a; gw-b reports it connected.
        let mut moved = device("d1", "gw-a", Some(ID_1));
        moved.status.gateway = Some("gw-b".into());
        let operations = plan_for(&app, std::slice::from_ref(&moved), &["gw-a", "gw-b"]);
        // Not removed at gw-a (the device would be told to remove it there),
        // but placed at gw-b under the same id.
        assert_eq!(operations, vec![place("d1", "gw-b", ID_1, entry.clone())]);

        // Once there, gw-a is drained while gw-b is polled; not while gw-a
        // does not answer.
        let mut there = entry;
        there.gateway = Some("gw-b".into());
        there.moved_from = vec!["gw-a".into()];
        let app = application("aa", vec![there.clone()]);
        let poll = |drain: Vec<Drain>| Operation::Poll {
            entry: there.clone(),
            gateway: "gw-b".into(),
            base: "https://gw-b".into(),
            id: fleet_id,
            drain,
        };
        let drain_a = Drain {
            gateway: "gw-a".into(),
            base: "https://gw-a".into(),
        };
        let operations = plan_for(&app, std::slice::from_ref(&moved), &["gw-a", "gw-b"]);
        assert_eq!(operations, vec![poll(vec![drain_a])]);
        let operations = plan_for(&app, std::slice::from_ref(&moved), &["gw-b"]);
        assert_eq!(operations, vec![poll(Vec::new())]);
    }

    #[test]
    fn a_deployment_the_gateway_no_longer_knows_is_placed_again() {
        // The poll that got a 404 cleared the id (see the executor's tests):
        // the next pass places it again, at the same gateway.
        let app = application("aa", Vec::new());
        let mut forgotten = placed("d1", "gw-a", ID_1, &app.spec.revision(), 5);
        forgotten.gateway_deployment_id = None;
        forgotten.phase = Phase::Pending;
        let app = application("aa", vec![forgotten.clone()]);
        let operations = plan_for(&app, &[device("d1", "gw-a", Some(ID_1))], &["gw-a"]);
        assert_eq!(operations, vec![place("d1", "gw-a", ID_1, forgotten)]);
    }

    #[test]
    fn a_gateway_that_did_not_answer_in_this_pass_is_neither_placed_on_nor_polled() {
        // A gateway backing off is not asked for its devices, so it is not
        // usable in the pass: its devices are neither placed nor polled.
        let app = application("aa", Vec::new());
        let entry = placed("d2", "gw-a", ID_2, &app.spec.revision(), 5);
        let app = application("aa", vec![entry.clone()]);
        let devices = [
            device("d1", "gw-a", Some(ID_1)),
            device("d2", "gw-a", Some(ID_2)),
        ];
        let operations = plan_for(&app, &devices, &[]);
        let reason = Some("gateway gw-a is unknown or unreachable".to_owned());
        let mut d1 = new_entry("d1");
        d1.reason = reason.clone();
        let mut d2 = entry;
        d2.reason = reason;
        assert_eq!(
            operations,
            vec![Operation::Record(d1), Operation::Record(d2)]
        );
    }

    #[test]
    fn a_deleting_application_is_removed_everywhere_and_placed_nowhere() {
        let app = application("aa", Vec::new());
        let revision = app.spec.revision();
        let at_a = placed("d1", "gw-a", ID_1, &revision, 5);
        let at_gone_gateway = placed("d2", "gw-gone", ID_2, &revision, 6);
        let mut app = application("aa", vec![at_a.clone(), at_gone_gateway]);
        app.metadata.deletion_timestamp = Some(1);
        let devices = [
            device("d1", "gw-a", Some(ID_1)),
            device("d2", "gw-gone", Some(ID_2)),
        ];
        let operations = plan_for(&app, &devices, &["gw-a"]);
        assert_eq!(
            operations,
            vec![Operation::Remove {
                entry: at_a,
                gateway: "gw-a".into(),
                base: "https://gw-a".into(),
                id: 5
            }]
        );
    }

    #[test]
    fn a_revoked_or_unenrolled_device_gets_nothing() {
        let app = application("aa", Vec::new());
        let entry = placed("d1", "gw-a", ID_1, &app.spec.revision(), 5);
        let app = application("aa", vec![entry.clone()]);
        let mut revoked = device("d1", "gw-a", Some(ID_1));
        revoked.spec.revoked = true;
        let unenrolled = device("d2", "gw-a", None);
        let operations = plan_for(&app, &[revoked, unenrolled], &["gw-a"]);
        let mut waiting = new_entry("d2");
        waiting.reason = Some("the device has no device_id yet".into());
        assert_eq!(
            operations,
            vec![
                Operation::Remove {
                    entry,
                    gateway: "gw-a".into(),
                    base: "https://gw-a".into(),
                    id: 5
                },
                Operation::Record(waiting),
            ]
        );
    }
}
