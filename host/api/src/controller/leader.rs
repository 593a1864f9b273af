//! Leadership: with several API server replicas, only the one holding the
//! lease reconciles; all of them serve the REST API. With the SQLite store
//! there is one replica and no lease ([`AlwaysLeader`]); on Kubernetes the
//! lease is a `coordination.k8s.io` Lease (`wasmbed-k8s`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

/// A lease one replica holds at a time.
#[async_trait]
pub trait Leadership: Send + Sync + fmt::Debug {
    /// Returns once this replica holds the lease (waiting, retrying, as
    /// long as it takes).
    async fn acquire(&self);
    /// Extends the lease; `false` when it was lost (taken, or not renewed
    /// in time): the replica must stop reconciling at once.
    async fn renew(&self) -> bool;
    /// Lets the lease go (at shutdown), so that another replica takes over
    /// without waiting for it to expire.
    async fn release(&self);
    /// How often [`renew`](Leadership::renew) is called while leading.
    fn renew_every(&self) -> Duration;
}

/// The only replica: always the leader.
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysLeader;

#[async_trait]
impl Leadership for AlwaysLeader {
    async fn acquire(&self) {}

    async fn renew(&self) -> bool {
        true
    }

    async fn release(&self) {}

    fn renew_every(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// Runs a controller (made by `controller`) whenever this replica leads,
/// until `stop` turns true: acquires the lease, reconciles while renewing
/// it, and stops reconciling the moment it is lost, then waits to lead
/// again. At `stop`, the lease is released.
pub async fn reconcile_while_leading<F, Fut>(
    leadership: &dyn Leadership,
    mut controller: impl FnMut() -> F,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            () = leadership.acquire() => {}
            () = stopped(&mut stop) => return,
        }
        tracing::info!("leading: this replica reconciles");
        let (halt, halted) = tokio::sync::oneshot::channel();
        let run = controller()(halted);
        tokio::pin!(run);
        let lost = loop {
            tokio::select! {
                () = &mut run => break false,
                () = stopped(&mut stop) => break false,
                () = tokio::time::sleep(leadership.renew_every()) => {
                    if !leadership.renew().await {
                        break true;
                    }
                }
            }
        };
        let _ = halt.send(());
        run.await;
        if !lost {
            leadership.release().await;
            return;
        }
        tracing::warn!("lost the lease: this replica stopped reconciling and waits to lead again");
    }
}

/// Returns once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A lease scripted by the test: `renewals` answers, in order.
    #[derive(Debug, Default)]
    struct Scripted {
        acquired: AtomicUsize,
        renewals: Mutex<Vec<bool>>,
        released: AtomicUsize,
    }

    #[async_trait]
    impl Leadership for Scripted {
        async fn acquire(&self) {
            self.acquired.fetch_add(1, Ordering::SeqCst);
        }
        async fn renew(&self) -> bool {
            let mut renewals = self.renewals.lock().expect("not poisoned");
            if renewals.is_empty() {
                true
            } else {
                renewals.remove(0)
            }
        }
        async fn release(&self) {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
        fn renew_every(&self) -> Duration {
            Duration::from_millis(10)
        }
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_controller_which_runs_again_once_leading() {
        let lease = Scripted {
            renewals: Mutex::new(vec![true, false]),
            ..Scripted::default()
        };
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        let halts = std::sync::Arc::new(AtomicUsize::new(0));
        let (runs_in, halts_in) = (runs.clone(), halts.clone());
        let leading = reconcile_while_leading(
            &lease,
            move || {
                let (runs, halts) = (runs_in.clone(), halts_in.clone());
                move |halted: tokio::sync::oneshot::Receiver<()>| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let _ = halted.await;
                    halts.fetch_add(1, Ordering::SeqCst);
                }
            },
            stop,
        );
        let stopper = async {
            while runs.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = stop_tx.send(true);
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(leading, stopper)
        })
        .await
        .expect("ends once stopped");
        // Led, lost it at the second renewal (halted), led again, stopped.
        assert_eq!(lease.acquired.load(Ordering::SeqCst), 2);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(halts.load(Ordering::SeqCst), 2);
        assert_eq!(
            lease.released.load(Ordering::SeqCst),
            1,
            "released at stop only"
        );
    }
}
