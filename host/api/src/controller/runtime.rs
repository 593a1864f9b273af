//! Per-object reconciliation with the semantics of
//! `kube::runtime::Controller`, over the store's watch (so the same
//! controllers run on SQLite and on Kubernetes):
//!
//! - each object of the controller's kind is reconciled on its own, at most
//!   once at a time, whenever it changes (someone else's write: the
//!   controller's own writes do not wake it) and again when its
//!   reconcile asks ([`Action::Requeue`]);
//! - a change to an object of a related kind is mapped to the objects it
//!   concerns ([`Reconciler::map`]), but only when the part of it that
//!   matters changed ([`Reconciler::fingerprint`]): a device's heartbeat
//!   does not wake the applications;
//! - the related kinds are kept in memory from their watches ([`Related`],
//!   a reflector's store in kube's words), so that a reconcile reads
//!   them without asking the store: only its own object is read fresh;
//! - a failed reconcile is retried after a backoff that doubles with each
//!   consecutive failure of that object ([`Reconciler::error_policy`]);
//! - when a watch breaks it is opened again and every object is
//!   reconciled once more, as after a relist: what happened meanwhile is
//!   unknown.
//!
//! Reconciles run one after another in one task, in the order they fall
//! due, each after the changes its watches have ready; each is bounded by
//! its own timeouts (gateway calls have one).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::model::{Kind, Object};
use crate::store::{OwnWrites, Store, StoreError, StoredObject, WatchEvent, from_stored};

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile this object again after the given time, also without a
    /// change (what it depends on outside the store is polled).
    Requeue(Duration),
    /// Reconcile it again only when it, or a related object, changes.
    AwaitChange,
}

/// The objects of the controller's kind as its watch last showed them, by
/// name: what [`Reconciler::map`] looks related objects up in (a
/// reflector's store, in kube's words).
pub type Cache<T> = BTreeMap<String, Arc<T>>;

/// The objects of a controller's related kinds as their watches last
/// showed them (or, for a one-off reconcile, as [`load`](Related::load)
/// read them).
#[derive(Debug, Default)]
pub struct Related {
    kinds: HashMap<Kind, BTreeMap<String, StoredObject>>,
}

impl Related {
    /// Reads every object of `kinds` from `store`.
    pub async fn load(store: &Store, kinds: &[Kind]) -> Result<Related, StoreError> {
        let mut related = Related::default();
        for &kind in kinds {
            related.replace(kind, store.list_kind(kind).await?);
        }
        Ok(related)
    }

    fn replace(&mut self, kind: Kind, objects: Vec<StoredObject>) {
        let by_name = objects
            .into_iter()
            .map(|o| (o.metadata.name.clone(), o))
            .collect();
        self.kinds.insert(kind, by_name);
    }

    fn apply(&mut self, kind: Kind, event: &WatchEvent<StoredObject>) {
        let objects = self.kinds.entry(kind).or_default();
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                objects.insert(o.metadata.name.clone(), o.clone());
            }
            WatchEvent::Deleted(o) => {
                objects.remove(&o.metadata.name);
            }
        }
    }

    /// Every object of kind `T` kept, by name.
    pub fn list<T: Object>(&self) -> Result<Vec<T>, StoreError> {
        self.kinds
            .get(&T::KIND)
            .into_iter()
            .flat_map(BTreeMap::values)
            .map(|o| from_stored(o.clone()))
            .collect()
    }
}

/// One controller's logic; [`run`] drives it.
pub trait Reconciler: Send {
    /// The kind this controller reconciles.
    type Object: Object;
    /// Why a reconcile failed.
    type Error: std::fmt::Display + Send;

    /// Other kinds whose changes may concern objects of this kind.
    fn related(&self) -> &'static [Kind] {
        &[]
    }

    /// The part of a related object that matters to this controller: a
    /// change is passed to [`map`](Self::map) only when it changes (and
    /// always when the object is deleted). Hash what matters into `hasher`.
    fn fingerprint(&self, _related: &StoredObject, _hasher: &mut DefaultHasher) {}

    /// The names of the objects of this kind that a change to `related`
    /// (of kind `kind`) concerns.
    fn map(
        &self,
        _kind: Kind,
        _related: &StoredObject,
        _cache: &Cache<Self::Object>,
    ) -> Vec<String> {
        Vec::new()
    }

    /// Brings the world in line with `object`, as the store has it now;
    /// `related` holds the objects of the [related](Self::related) kinds.
    fn reconcile(
        &mut self,
        object: Arc<Self::Object>,
        related: &Related,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// `name` is gone from the store (deleted, its finalizers all
    /// removed): release what was kept for it outside the store. Objects
    /// that must not go before their cleanup carry a finalizer instead.
    fn cleanup(&mut self, _name: &str, _related: &Related) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// What to do after reconciling `object` failed for the `failures`-th
    /// time in a row (1 at the first): by default, retry after
    /// [`backoff`]`(failures)`.
    fn error_policy(
        &mut self,
        _object: &Self::Object,
        _error: &Self::Error,
        failures: u32,
    ) -> Action {
        Action::Requeue(backoff(failures))
    }
}

/// The default retry delay after `failures` consecutive failures: 500 ms,
/// doubled at each, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(10);
    Duration::from_millis(500)
        .saturating_mul(1 << doublings)
        .min(Duration::from_secs(300))
}

/// Object names, each at most once, by the time they fall due.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    due: BTreeSet<(Instant, String)>,
    at: HashMap<String, Instant>,
}

impl Queue {
    /// Schedules `name` at `when`, unless it is due earlier already.
    pub(crate) fn schedule(&mut self, name: &str, when: Instant) {
        match self.at.get(name) {
            Some(&already) if already <= when => {}
            Some(&already) => {
                self.due.remove(&(already, name.to_owned()));
                self.due.insert((when, name.to_owned()));
                self.at.insert(name.to_owned(), when);
            }
            None => {
                self.due.insert((when, name.to_owned()));
                self.at.insert(name.to_owned(), when);
            }
        }
    }

    /// When the first name falls due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(when, _)| *when)
    }

    /// The first name due at `now`, taken off the queue.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<String> {
        let (when, _) = self.due.first()?;
        if *when > now {
            return None;
        }
        let (_, name) = self.due.pop_first()?;
        self.at.remove(&name);
        Some(name)
    }

    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }
}

enum Change<T> {
    Own(WatchEvent<T>),
    Related(Kind, Box<WatchEvent<StoredObject>>),
}

/// The watches of the controller's kind and its related kinds, merged.
type Changes<T> = SelectAll<BoxStream<'static, Result<Change<T>, StoreError>>>;

/// A controller's state between reconciles.
struct Runner<R: Reconciler> {
    store: Store,
    own: Arc<OwnWrites>,
    reconciler: R,
    cache: Cache<R::Object>,
    queue: Queue,
    failures: HashMap<String, u32>,
    fingerprints: HashMap<(Kind, String), u64>,
    related: Related,
}

/// Runs `reconciler` until `shutdown` completes. Its writes must go
/// through the store of [`Store::quiet`] whose [`OwnWrites`] is `own`,
/// so that they do not wake it.
pub async fn run<R: Reconciler>(
    store: Store,
    own: Arc<OwnWrites>,
    reconciler: R,
    shutdown: impl Future<Output = ()>,
) {
    let mut runner = Runner {
        store,
        own,
        reconciler,
        cache: Cache::new(),
        queue: Queue::default(),
        failures: HashMap::new(),
        fingerprints: HashMap::new(),
        related: Related::default(),
    };
    let kind = R::Object::KIND.as_str();
    tokio::pin!(shutdown);
    loop {
        let mut changes = tokio::select! {
            () = &mut shutdown => return,
            opened = runner.open() => opened,
        };
        info!(kind, objects = runner.cache.len(), "controller watching");
        // One reconcile at a time, and between two of them every change
        // the watches have ready and the shutdown are looked at first: a
        // round of reconciles longer than their requeue time never keeps
        // the controller from seeing changes or stopping.
        loop {
            if (&mut shutdown).now_or_never().is_some() {
                return;
            }
            match runner.take_ready_changes(&mut changes) {
                Ok(()) => {}
                Err(why) => {
                    info!(kind, %why, "a controller watch ended; watching again");
                    break;
                }
            }
            if let Some(name) = runner.queue.pop_due(Instant::now()) {
                runner.reconcile(&name).await;
                continue;
            }
            let next_due = runner.queue.next_due();
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                change = changes.next() => match change {
                    Some(Ok(change)) => runner.changed(change),
                    Some(Err(e)) => {
                        info!(kind, error = %e, "a controller watch ended; watching again");
                        break;
                    }
                    None => {
                        info!(kind, "a controller watch ended; watching again");
                        break;
                    }
                },
                () = sleep_until(next_due) => {}
            }
        }
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

impl<R: Reconciler> Runner<R> {
    /// Opens the watches, then lists the controller's kind and schedules
    /// every object now; retries every 5 s while the store is unavailable.
    async fn open(&mut self) -> Changes<R::Object> {
        loop {
            match self.try_open().await {
                Ok(changes) => return changes,
                Err(e) => {
                    warn!(kind = R::Object::KIND.as_str(), error = %e, "a controller cannot watch the store; trying again in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    async fn try_open(&mut self) -> Result<Changes<R::Object>, StoreError> {
        let mut changes = SelectAll::new();
        changes.push(
            self.store
                .watch::<R::Object>(None)
                .await?
                .map_ok(Change::Own)
                .boxed(),
        );
        for &kind in self.reconciler.related() {
            changes.push(
                self.store
                    .watch_kind(kind, None)
                    .await?
                    .map_ok(move |event| Change::Related(kind, Box::new(event)))
                    .boxed(),
            );
        }
        self.related = Related::load(&self.store, self.reconciler.related()).await?;
        let objects = self.store.list::<R::Object>().await?;
        let before = std::mem::take(&mut self.cache);
        self.cache = objects
            .into_iter()
            .map(|o| (o.metadata().name.clone(), Arc::new(o)))
            .collect();
        self.fingerprints.clear();
        let now = Instant::now();
        // Those that went while the watch was down are reconciled too:
        // found gone, they are cleaned up.
        for name in self.cache.keys().chain(before.keys()) {
            self.queue.schedule(name, now);
        }
        Ok(changes)
    }

    /// Applies every change the watches have ready now, without waiting;
    /// an error when a watch ended.
    fn take_ready_changes(&mut self, changes: &mut Changes<R::Object>) -> Result<(), String> {
        while let Some(ready) = changes.next().now_or_never() {
            match ready {
                Some(Ok(change)) => self.changed(change),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the stream ended".to_owned()),
            }
        }
        Ok(())
    }

    fn changed(&mut self, change: Change<R::Object>) {
        let now = Instant::now();
        match change {
            Change::Own(event) => {
                let name = event.object().metadata().name.clone();
                let mine = self.own.take(&event.object().metadata().resource_version);
                match event {
                    WatchEvent::Deleted(_) => {
                        self.cache.remove(&name);
                        self.queue.schedule(&name, now);
                    }
                    WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                        self.cache.insert(name.clone(), Arc::new(object));
                        if !mine {
                            self.queue.schedule(&name, now);
                        }
                    }
                }
            }
            Change::Related(kind, event) => {
                self.related.apply(kind, &event);
                let object = event.object();
                if self.own.take(&object.metadata.resource_version) {
                    return;
                }
                let key = (kind, object.metadata.name.clone());
                let relevant = match event.as_ref() {
                    WatchEvent::Deleted(_) => {
                        self.fingerprints.remove(&key);
                        true
                    }
                    WatchEvent::Added(_) | WatchEvent::Modified(_) => {
                        let mut hasher = DefaultHasher::new();
                        self.reconciler.fingerprint(object, &mut hasher);
                        let print = hasher.finish();
                        self.fingerprints.insert(key, print) != Some(print)
                    }
                };
                if relevant {
                    for name in self.reconciler.map(kind, object, &self.cache) {
                        self.queue.schedule(&name, now);
                    }
                }
            }
        }
    }

    /// Reconciles `name` as the store has it now, and schedules what its
    /// outcome asks for.
    async fn reconcile(&mut self, name: &str) {
        let kind = R::Object::KIND.as_str();
        let object = match self.store.get::<R::Object>(name).await {
            Ok(Some(object)) => Arc::new(object),
            Ok(None) => {
                self.cache.remove(name);
                self.failures.remove(name);
                self.reconciler.cleanup(name, &self.related).await;
                return;
            }
            Err(e) => {
                let failures = self.failed(name);
                warn!(kind, name, failures, error = %e, "reading the object to reconcile failed");
                self.queue
                    .schedule(name, Instant::now() + backoff(failures));
                return;
            }
        };
        self.cache.insert(name.to_owned(), Arc::clone(&object));
        let reconciled = self
            .reconciler
            .reconcile(Arc::clone(&object), &self.related)
            .await;
        let action = match reconciled {
            Ok(action) => {
                self.failures.remove(name);
                action
            }
            Err(e) => {
                let failures = self.failed(name);
                let action = self.reconciler.error_policy(&object, &e, failures);
                warn!(kind, name, failures, error = %e, retry = ?action, "reconcile failed");
                action
            }
        };
        debug!(kind, name, ?action, queued = self.queue.len(), "reconciled");
        if let Action::Requeue(after) = action {
            self.queue.schedule(name, Instant::now() + after);
        }
    }

    fn failed(&mut self, name: &str) -> u32 {
        let failures = self.failures.entry(name.to_owned()).or_insert(0);
        *failures = failures.saturating_add(1);
        *failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{device, gateway};
    use crate::model::{Device, Gateway};
    use std::hash::Hash as _;
    use tokio::sync::mpsc;

    /// What the test reconciler was asked to do.
    #[derive(Debug, PartialEq)]
    enum Call {
        Reconcile(String),
        Cleanup(String),
    }

    /// Reconciles gateways: writes `status.reason = "seen"` (its own
    /// write), fails while `failures_left`, and is woken by devices at it
    /// whose generation changes.
    struct Recording {
        store: Store,
        calls: mpsc::UnboundedSender<Call>,
        failures_left: u32,
    }

    impl Reconciler for Recording {
        type Object = Gateway;
        type Error = String;

        fn related(&self) -> &'static [Kind] {
            &[Kind::Device]
        }

        fn fingerprint(&self, device: &StoredObject, hasher: &mut DefaultHasher) {
            device.metadata.generation.hash(hasher);
        }

        fn map(&self, _kind: Kind, device: &StoredObject, _cache: &Cache<Gateway>) -> Vec<String> {
            vec![
                device.spec["gateway"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ]
        }

        async fn reconcile(
            &mut self,
            gateway: Arc<Gateway>,
            _related: &Related,
        ) -> Result<Action, String> {
            let name = gateway.metadata.name.clone();
            self.calls
                .send(Call::Reconcile(name.clone()))
                .expect("test alive");
            if self.failures_left > 0 {
                self.failures_left -= 1;
                return Err("failing on purpose".into());
            }
            self.store
                .modify_status::<Gateway>(&name, |g| {
                    let change = g.status.reason.as_deref() != Some("seen");
                    g.status.reason = Some("seen".into());
                    change
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(Action::AwaitChange)
        }

        async fn cleanup(&mut self, name: &str, _: &Related) {
            self.calls
                .send(Call::Cleanup(name.to_owned()))
                .expect("test alive");
        }
    }

    /// Starts the runtime on `store` with a reconciler failing
    /// `failures` times first; returns what it is asked.
    fn start(store: &Store, failures: u32) -> mpsc::UnboundedReceiver<Call> {
        let (calls, asked) = mpsc::unbounded_channel();
        let (quiet, own) = store.quiet();
        let reconciler = Recording {
            store: quiet.clone(),
            calls,
            failures_left: failures,
        };
        tokio::spawn(run(quiet, own, reconciler, std::future::pending()));
        asked
    }

    async fn next(asked: &mut mpsc::UnboundedReceiver<Call>) -> Call {
        tokio::time::timeout(Duration::from_secs(10), asked.recv())
            .await
            .expect("a call within 10 s")
            .expect("runtime alive")
    }

    /// Nothing more is asked within half a second.
    async fn quiet_for_a_while(asked: &mut mpsc::UnboundedReceiver<Call>) {
        let more = tokio::time::timeout(Duration::from_millis(500), asked.recv()).await;
        assert!(more.is_err(), "unexpected call: {more:?}");
    }

    #[tokio::test]
    async fn an_object_is_reconciled_on_others_changes_not_on_its_own_writes() {
        let store = Store::in_memory();
        store.create(&gateway("gw-a")).await.expect("created");
        let mut asked = start(&store, 0);
        assert_eq!(next(&mut asked).await, Call::Reconcile("gw-a".into()));
        // Its status write came back through the watch: not a change.
        quiet_for_a_while(&mut asked).await;
        store
            .modify::<Gateway>("gw-a", |g| {
                g.spec.device_endpoint = "gw-a:40030".into();
                true
            })
            .await
            .expect("modified");
        assert_eq!(next(&mut asked).await, Call::Reconcile("gw-a".into()));
        store.create(&gateway("gw-b")).await.expect("created");
        assert_eq!(next(&mut asked).await, Call::Reconcile("gw-b".into()));
        quiet_for_a_while(&mut asked).await;
    }

    #[tokio::test]
    async fn a_related_change_wakes_its_objects_only_when_what_matters_changed() {
        let store = Store::in_memory();
        store.create(&gateway("gw-a")).await.expect("created");
        store
            .create(&device("d1", "gw-a", None))
            .await
            .expect("created");
        let mut asked = start(&store, 0);
        assert_eq!(next(&mut asked).await, Call::Reconcile("gw-a".into()));
        quiet_for_a_while(&mut asked).await;
        // A heartbeat: status only, the same generation.
        store
            .modify_status::<Device>("d1", |d| {
                d.status.last_heartbeat = Some(1);
                true
            })
            .await
            .expect("modified");
        // The first sight of d1 counts as a change; the second does not.
        assert_eq!(next(&mut asked).await, Call::Reconcile("gw-a".into()));
        store
            .modify_status::<Device>("d1", |d| {
                d.status.last_heartbeat = Some(2);
                true
            })
            .await
            .expect("modified");
        quiet_for_a_while(&mut asked).await;
        store
            .modify::<Device>("d1", |d| {
                d.spec.revoked = true;
                true
            })
            .await
            .expect("modified");
        assert_eq!(next(&mut asked).await, Call::Reconcile("gw-a".into()));
    }

    #[tokio::test]
    async fn a_failed_reconcile_is_retried_later_and_a_deleted_object_cleaned_up() {
        let store = Store::in_memory();
        store.create(&gateway("gw-a")).await.expect("created");
        let mut asked = start(&store, 2);
        let first = Instant::now();
        for _ in 0..3 {
            assert_eq!(next(&mut asked).await, Call::Reconcile("gw-a".into()));
        }
        // Retried after 0.5 s, then after 1 s more.
        assert!(
            first.elapsed() >= backoff(1) + backoff(2),
            "{:?}",
            first.elapsed()
        );
        quiet_for_a_while(&mut asked).await;
        store
            .delete::<Gateway>("gw-a", None)
            .await
            .expect("deleted");
        assert_eq!(next(&mut asked).await, Call::Cleanup("gw-a".into()));
    }

    /// Reconciles gateways every 20 ms, noting how many devices its
    /// related objects hold each time.
    struct Counting {
        seen: mpsc::UnboundedSender<usize>,
    }

    impl Reconciler for Counting {
        type Object = Gateway;
        type Error = StoreError;

        fn related(&self) -> &'static [Kind] {
            &[Kind::Device]
        }

        async fn reconcile(
            &mut self,
            _: Arc<Gateway>,
            related: &Related,
        ) -> Result<Action, StoreError> {
            let devices = related.list::<Device>()?.len();
            self.seen.send(devices).expect("test alive");
            Ok(Action::Requeue(Duration::from_millis(20)))
        }
    }

    #[tokio::test]
    async fn related_objects_come_from_the_watch_not_from_a_read_per_reconcile() {
        let store = Store::in_memory();
        store.create(&gateway("gw-a")).await.expect("created");
        store
            .create(&device("d1", "gw-a", None))
            .await
            .expect("created");
        let (seen, mut saw) = mpsc::unbounded_channel();
        let (quiet, own) = store.quiet();
        tokio::spawn(run(quiet, own, Counting { seen }, std::future::pending()));
        let first = tokio::time::timeout(Duration::from_secs(10), saw.recv()).await;
        assert_eq!(first.expect("reconciled").expect("alive"), 1);
        store
            .create(&device("d2", "gw-a", None))
            .await
            .expect("created");
        let reads_before = store.reads();
        let mut reconciles = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let devices = tokio::time::timeout_at(deadline, saw.recv())
                .await
                .expect("reconciled")
                .expect("alive");
            reconciles += 1;
            if devices == 2 && reconciles >= 10 {
                break;
            }
        }
        let reads = store.reads() - reads_before;
        // One read per reconcile: the gateway itself; no device list.
        assert!(
            reads <= reconciles + 1,
            "{reads} reads for {reconciles} reconciles"
        );
    }

    /// Reconciles every gateway again at once, forever.
    struct Busy {
        seen: mpsc::UnboundedSender<String>,
    }

    impl Reconciler for Busy {
        type Object = Gateway;
        type Error = StoreError;

        async fn reconcile(
            &mut self,
            gateway: Arc<Gateway>,
            _: &Related,
        ) -> Result<Action, StoreError> {
            let _ = self.seen.send(gateway.metadata.name.clone());
            tokio::task::yield_now().await;
            Ok(Action::Requeue(Duration::ZERO))
        }
    }

    #[tokio::test]
    async fn a_controller_always_due_still_sees_changes_and_stops() {
        let store = Store::in_memory();
        store.create(&gateway("gw-a")).await.expect("created");
        let (seen, mut saw) = mpsc::unbounded_channel();
        let (quiet, own) = store.quiet();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(run(quiet, own, Busy { seen }, async {
            let _ = stopped.await;
        }));
        assert_eq!(saw.recv().await.as_deref(), Some("gw-a"));
        store.create(&gateway("gw-b")).await.expect("created");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let name = tokio::time::timeout_at(deadline, saw.recv())
                .await
                .expect("gw-b reconciled within 10 s")
                .expect("alive");
            if name == "gw-b" {
                break;
            }
        }
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("stopped within 10 s")
            .expect("no panic");
    }

    #[test]
    fn the_backoff_doubles_from_half_a_second_to_five_minutes() {
        let delays: Vec<Duration> = (1..=4).map(backoff).collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, [ms(500), ms(1000), ms(2000), ms(4000)]);
        assert_eq!(backoff(30), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_name_is_queued_once_at_its_earliest_time() {
        let mut queue = Queue::default();
        let now = Instant::now();
        queue.schedule("a", now + Duration::from_secs(10));
        queue.schedule("b", now + Duration::from_secs(5));
        queue.schedule("a", now + Duration::from_secs(1));
        queue.schedule("a", now + Duration::from_secs(20));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(queue.pop_due(now), None);
        let later = now + Duration::from_secs(6);
        assert_eq!(queue.pop_due(later).as_deref(), Some("a"));
        assert_eq!(queue.pop_due(later).as_deref(), Some("b"));
        assert_eq!(queue.pop_due(later), None);
        assert_eq!(queue.len(), 0);
    }
}
