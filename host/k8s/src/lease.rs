//! Leadership among API server replicas through a `coordination.k8s.io/v1`
//! Lease: the holder reconciles, the others serve the REST API and wait.
//!
//! The holder renews the lease every [`RENEW_EVERY`]; a lease not renewed
//! for [`LEASE_DURATION`] may be taken by another replica. Every write
//! carries the resource version read, so two replicas cannot both take it.
//! A holder that cannot renew for a whole lease duration (the API server
//! unreachable) stops reconciling: by then another may have taken over.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, PostParams};
use kube::{Client, Error};
use wasmbed_api::controller::leader::Leadership;

/// The Lease's name in the namespace.
pub const LEASE_NAME: &str = "wasmbed-api-controller";

/// How long a lease lasts unless renewed.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

/// How often the holder renews, and others look whether it expired.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// This replica's claim on the Lease [`LEASE_NAME`].
#[derive(Debug)]
pub struct KubeLease {
    leases: Api<Lease>,
    /// This replica (its pod's name).
    identity: String,
    /// When the lease was last written by this replica.
    renewed: std::sync::Mutex<Option<Instant>>,
}

/// What one look at the lease found.
enum Attempt {
    Held,
    /// Another replica holds it, or the write lost a race.
    NotYet,
}

impl KubeLease {
    pub fn new(client: Client, namespace: &str, identity: &str) -> KubeLease {
        KubeLease {
            leases: Api::namespaced(client, namespace),
            identity: identity.to_owned(),
            renewed: std::sync::Mutex::new(None),
        }
    }

    fn now() -> MicroTime {
        MicroTime(Utc::now())
    }

    fn spec(&self, acquired: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: i32::try_from(LEASE_DURATION.as_secs()).ok(),
            acquire_time: Some(acquired),
            renew_time: Some(Self::now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn mark_renewed(&self) {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether `spec`'s holder let it lapse (or there is none).
    fn lapsed(spec: &LeaseSpec) -> bool {
        if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
            return true;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(LEASE_DURATION, Duration::from_secs);
        match &spec.renew_time {
            None => true,
            Some(MicroTime(at)) => {
                let age = Utc::now().signed_duration_since(*at);
                age.to_std().is_ok_and(|age| age > duration)
            }
        }
    }

    /// One try at taking (or keeping) the lease.
    async fn try_take(&self) -> Result<Attempt, Error> {
        let Some(current) = self.leases.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(Self::now(), 0)),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(Error::Api(e)) if e.code == 409 => Ok(Attempt::NotYet),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !ours && !Self::lapsed(&spec) {
            return Ok(Attempt::NotYet);
        }
        let (acquired, transitions) = if ours {
            (
                spec.acquire_time.clone().unwrap_or_else(Self::now),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (
                Self::now(),
                spec.lease_transitions.unwrap_or(0).saturating_add(1),
            )
        };
        let mut lease = current;
        lease.spec = Some(self.spec(acquired, transitions));
        match self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(Error::Api(e)) if e.code == 409 => Ok(Attempt::NotYet),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Leadership for KubeLease {
    async fn acquire(&self) {
        let mut waiting_said = false;
        loop {
            match self.try_take().await {
                Ok(Attempt::Held) => {
                    self.mark_renewed();
                    tracing::info!(lease = LEASE_NAME, identity = %self.identity, "lease acquired");
                    return;
                }
                Ok(Attempt::NotYet) if !waiting_said => {
                    tracing::info!(
                        lease = LEASE_NAME,
                        "another replica reconciles; waiting for the lease"
                    );
                    waiting_said = true;
                }
                Ok(Attempt::NotYet) => {}
                Err(e) => {
                    tracing::warn!(lease = LEASE_NAME, error = %e, "cannot read or take the lease; retrying");
                }
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }

    async fn renew(&self) -> bool {
        match self.try_take().await {
            Ok(Attempt::Held) => {
                self.mark_renewed();
                true
            }
            Ok(Attempt::NotYet) => {
                tracing::warn!(lease = LEASE_NAME, "the lease was taken by another replica");
                false
            }
            Err(e) => {
                let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
                let in_time = renewed.is_some_and(|at| at.elapsed() < LEASE_DURATION);
                tracing::warn!(lease = LEASE_NAME, error = %e, still_leading = in_time, "cannot renew the lease");
                in_time
            }
        }
    }

    async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(lease = LEASE_NAME, error = %e, "could not release the lease; it expires by itself");
        }
    }

    fn renew_every(&self) -> Duration {
        RENEW_EVERY
    }
}
