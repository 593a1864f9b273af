//! The fake server's objects and what each call does to them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine as _;
use futures_util::StreamExt as _;
use http::StatusCode;
use k8s_openapi::chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::FakeBody;
use super::request::{Call, Collection, Preconditions, Refusal, Selector, json, lines};

type Response = http::Response<FakeBody>;
type Object = Map<String, Value>;

/// A change, as watches see it.
#[derive(Debug)]
struct Event {
    version: u64,
    collection: Collection,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    kind: &'static str,
    object: Object,
}

impl Event {
    fn line(&self) -> Value {
        json!({"type": self.kind, "object": self.object})
    }
}

/// Everything the server holds.
#[derive(Debug)]
pub(super) struct State {
    /// The version of the last write.
    version: u64,
    uids: u64,
    objects: BTreeMap<Collection, BTreeMap<String, Object>>,
    /// The kind of each collection's objects, as they were created, for
    /// the kind of its lists.
    kinds: HashMap<Collection, String>,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Every event up to this version has left the history.
    forgotten_through: u64,
    live: broadcast::Sender<Arc<Event>>,
}

/// What a `continue` token holds (base64url of it as JSON).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    /// The version the list began at: the token expires with it.
    rv: u64,
    /// The name of the previous page's last object.
    start: String,
}

impl State {
    pub(super) fn new(history_limit: usize) -> State {
        State {
            // As if one write came before (in a cluster, the namespace's):
            // a version of 0 means "any" to a watch, and no list gives it.
            version: 1,
            uids: 0,
            objects: BTreeMap::new(),
            kinds: HashMap::new(),
            history: VecDeque::with_capacity(history_limit),
            history_limit,
            forgotten_through: 1,
            live: broadcast::channel(history_limit).0,
        }
    }

    pub(super) fn version(&self) -> u64 {
        self.version
    }

    pub(super) fn compact(&mut self) {
        self.history.clear();
        self.forgotten_through = self.version;
    }

    pub(super) fn serve(&mut self, call: Call) -> Response {
        let answer = match call {
            Call::Get { collection, name } => self.get(&collection, &name),
            Call::List {
                collection,
                selector,
                limit,
                continue_token,
            } => self.list(&collection, &selector, limit, continue_token.as_deref()),
            Call::Watch {
                collection,
                selector,
                from,
            } => Ok(self.watch(collection, selector, from)),
            Call::Create { collection, object } => self.create(collection, object),
            Call::Replace {
                collection,
                name,
                object,
            } => self.replace(&collection, &name, object, false),
            Call::ReplaceStatus {
                collection,
                name,
                object,
            } => self.replace(&collection, &name, object, true),
            Call::Delete {
                collection,
                name,
                preconditions,
            } => self.delete(&collection, &name, &preconditions),
        };
        answer.unwrap_or_else(Refusal::into_response)
    }

    fn get(&self, collection: &Collection, name: &str) -> Result<Response, Refusal> {
        let object = self.stored(collection, name)?;
        Ok(json(StatusCode::OK, &Value::Object(object.clone())))
    }

    fn stored(&self, collection: &Collection, name: &str) -> Result<&Object, Refusal> {
        self.objects
            .get(collection)
            .and_then(|objects| objects.get(name))
            .ok_or_else(|| not_found(collection, name))
    }

    fn list(
        &self,
        collection: &Collection,
        selector: &Selector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Response, Refusal> {
        let start = continue_token
            .map(|token| self.continue_from(token))
            .transpose()?;
        let first_version = start.as_ref().map_or(self.version, |(rv, _)| *rv);
        let after = start.map(|(_, name)| name);
        let mut matching = self
            .objects
            .get(collection)
            .into_iter()
            .flat_map(BTreeMap::iter)
            .filter(|(name, _)| after.as_ref().is_none_or(|after| *name > after))
            .filter(|(_, object)| selector.matches(object))
            .map(|(_, object)| object);
        let items: Vec<Value> = matching
            .by_ref()
            .take(limit.unwrap_or(usize::MAX))
            .map(|object| Value::Object(object.clone()))
            .collect();
        let more = matching.next().is_some();
        let mut metadata = json!({"resourceVersion": self.version.to_string()});
        if let (true, Some(last)) = (more, items.last()) {
            let token = ContinueToken {
                rv: first_version,
                start: name_of(last).to_owned(),
            };
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&token).unwrap_or_default());
            metadata["continue"] = Value::String(token);
        }
        let kind = self
            .kinds
            .get(collection)
            .map_or_else(|| "List".to_owned(), |kind| format!("{kind}List"));
        Ok(json(
            StatusCode::OK,
            &json!({
                "apiVersion": collection.api_version(),
                "kind": kind,
                "metadata": metadata,
                "items": items,
            }),
        ))
    }

    /// Where a `continue` token resumes: the version its list began at and
    /// the name after which it goes on.
    fn continue_from(&self, token: &str) -> Result<(u64, String), Refusal> {
        let invalid = || {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("continue key is not valid: {token:?}"),
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if token.rv < self.forgotten_through {
            return Err(Refusal::new(
                StatusCode::GONE,
                "Expired",
                "The provided continue parameter is too old to display a consistent list \
                 result. You can start a new list without the continue parameter.",
            ));
        }
        Ok((token.rv, token.start))
    }

    fn watch(&self, collection: Collection, selector: Selector, from: Option<u64>) -> Response {
        if let Some(from) = from {
            if from < self.forgotten_through {
                let gone = json!({
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": format!(
                            "too old resource version: {from} ({})",
                            self.forgotten_through
                        ),
                        "reason": "Expired",
                        "code": 410,
                    },
                });
                return lines(futures_util::stream::iter([gone]));
            }
        }
        let wanted = {
            let (collection, selector) = (collection.clone(), selector.clone());
            move |event: &Event| {
                event.collection == collection
                    && from.is_none_or(|from| event.version > from)
                    && selector.matches(&event.object)
            }
        };
        let backlog: Vec<Value> = match from {
            // From now: what is there, as added.
            None => self
                .objects
                .get(&collection)
                .into_iter()
                .flat_map(BTreeMap::values)
                .filter(|object| selector.matches(object))
                .map(|object| json!({"type": "ADDED", "object": object}))
                .collect(),
            Some(_) => self
                .history
                .iter()
                .filter(|event| wanted(event))
                .map(|event| event.line())
                .collect(),
        };
        // Subscribed while the state is locked, as writes publish: nothing
        // falls between the backlog and the live events.
        let receiver = self.live.subscribe();
        let live = futures_util::stream::unfold(Some(receiver), move |receiver| {
            let wanted = wanted.clone();
            async move {
                let mut receiver = receiver?;
                loop {
                    match receiver.recv().await {
                        Ok(event) if wanted(&event) => {
                            return Some((event.line(), Some(receiver)));
                        }
                        Ok(_) => continue,
                        // Too slow a reader: told to start again, as the
                        // real server does when its watch cache moves on.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let gone = json!({"type": "ERROR", "object": {
                                "kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "reason": "Expired", "code": 410,
                                "message": "the watch fell behind",
                            }});
                            return Some((gone, None));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        lines(futures_util::stream::iter(backlog).chain(live))
    }

    fn create(&mut self, collection: Collection, mut object: Object) -> Result<Response, Refusal> {
        let name = name_of_object(&object).to_owned();
        check_types(&collection, &object)?;
        check_name(&collection, &name)?;
        check_namespace(&collection, &object)?;
        if meta_str(&object, "resourceVersion").is_some_and(|v| !v.is_empty()) {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if self.stored(&collection, &name).is_ok() {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} {name:?} already exists", collection.resource()),
            ));
        }
        // The status subresource: a create sets no status.
        object.remove("status");
        self.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.uids);
        let metadata = metadata_mut(&mut object);
        for server_set in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            metadata.remove(server_set);
        }
        metadata.insert("namespace".into(), collection.namespace.clone().into());
        metadata.insert("uid".into(), uid.into());
        metadata.insert("creationTimestamp".into(), now().into());
        metadata.insert("generation".into(), 1.into());
        if let Some(kind) = object.get("kind").and_then(Value::as_str) {
            self.kinds.insert(collection.clone(), kind.to_owned());
        }
        let stored = self.write(collection, name, object, "ADDED");
        Ok(json(StatusCode::CREATED, &Value::Object(stored)))
    }

    /// A `PUT` of the object (`status`: of its status subresource).
    fn replace(
        &mut self,
        collection: &Collection,
        name: &str,
        new: Object,
        status: bool,
    ) -> Result<Response, Refusal> {
        if name_of_object(&new) != name {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    name_of_object(&new)
                ),
            ));
        }
        check_namespace(collection, &new)?;
        let old = self.stored(collection, name)?;
        let Some(version) = meta_str(&new, "resourceVersion").filter(|v| !v.is_empty()) else {
            return Err(invalid(
                collection,
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        };
        if Some(version) != meta_str(old, "resourceVersion") {
            return Err(modified(collection, name));
        }
        if let Some(uid) = meta_str(&new, "uid").filter(|u| !u.is_empty()) {
            if Some(uid) != meta_str(old, "uid") {
                return Err(conflict(
                    collection,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(old, "uid").unwrap_or_default()
                    ),
                ));
            }
        }
        let mut updated = old.clone();
        if status {
            match new.get("status") {
                Some(status) => updated.insert("status".into(), status.clone()),
                None => updated.remove("status"),
            };
        } else {
            check_types(collection, &new)?;
            update_spec_and_metadata(collection, name, &mut updated, new)?;
        }
        if &updated == old {
            // Nothing changed: no new version, no event.
            return Ok(json(StatusCode::OK, &Value::Object(updated)));
        }
        let deleting = metadata(&updated).contains_key("deletionTimestamp");
        let finalized = finalizers(&updated).is_empty();
        let stored = if deleting && finalized {
            self.remove(collection, name, updated)
        } else {
            self.write(collection.clone(), name.to_owned(), updated, "MODIFIED")
        };
        Ok(json(StatusCode::OK, &Value::Object(stored)))
    }

    fn delete(
        &mut self,
        collection: &Collection,
        name: &str,
        preconditions: &Preconditions,
    ) -> Result<Response, Refusal> {
        let stored = self.stored(collection, name)?;
        for (field, key, wanted) in [
            (
                "ResourceVersion",
                "resourceVersion",
                &preconditions.resource_version,
            ),
            ("UID", "uid", &preconditions.uid),
        ] {
            let actual = meta_str(stored, key).unwrap_or_default();
            if let Some(wanted) = wanted {
                if wanted != actual {
                    return Err(conflict(
                        collection,
                        name,
                        &format!(
                            "Precondition failed: {field} in precondition: {wanted}, \
                             {field} in object meta: {actual}"
                        ),
                    ));
                }
            }
        }
        if finalizers(stored).is_empty() {
            let uid = meta_str(stored, "uid").unwrap_or_default().to_owned();
            let object = stored.clone();
            self.remove(collection, name, object);
            return Ok(json(
                StatusCode::OK,
                &json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": collection.group,
                        "kind": collection.plural,
                        "uid": uid,
                    },
                }),
            ));
        }
        if metadata(stored).contains_key("deletionTimestamp") {
            return Ok(json(StatusCode::OK, &Value::Object(stored.clone())));
        }
        let mut marked = stored.clone();
        let meta = metadata_mut(&mut marked);
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta.insert("generation".into(), (generation + 1).into());
        meta.insert("deletionTimestamp".into(), now().into());
        meta.insert("deletionGracePeriodSeconds".into(), 0.into());
        let marked = self.write(collection.clone(), name.to_owned(), marked, "MODIFIED");
        Ok(json(StatusCode::OK, &Value::Object(marked)))
    }

    /// Stores `object` at a new version and tells the watches.
    fn write(
        &mut self,
        collection: Collection,
        name: String,
        mut object: Object,
        kind: &'static str,
    ) -> Object {
        self.version += 1;
        metadata_mut(&mut object).insert("resourceVersion".into(), self.version.to_string().into());
        self.objects
            .entry(collection.clone())
            .or_default()
            .insert(name, object.clone());
        self.publish(collection, kind, object.clone());
        object
    }

    /// Removes an object at a new version and tells the watches; gives it
    /// as it was last.
    fn remove(&mut self, collection: &Collection, name: &str, mut object: Object) -> Object {
        self.version += 1;
        metadata_mut(&mut object).insert("resourceVersion".into(), self.version.to_string().into());
        if let Some(objects) = self.objects.get_mut(collection) {
            objects.remove(name);
        }
        self.publish(collection.clone(), "DELETED", object.clone());
        object
    }

    fn publish(&mut self, collection: Collection, kind: &'static str, object: Object) {
        let event = Arc::new(Event {
            version: self.version,
            collection,
            kind,
            object,
        });
        if self.history.len() == self.history_limit {
            if let Some(oldest) = self.history.pop_front() {
                self.forgotten_through = oldest.version;
            }
        }
        self.history.push_back(event.clone());
        // No watch open is no error.
        let _ = self.live.send(event);
    }
}

/// A main `PUT`: labels, annotations, finalizers and everything outside
/// `metadata` and `status` from `new`; `generation` bumped when the latter
/// changed.
fn update_spec_and_metadata(
    collection: &Collection,
    name: &str,
    updated: &mut Object,
    new: Object,
) -> Result<(), Refusal> {
    let deleting = metadata(updated).contains_key("deletionTimestamp");
    if deleting {
        let old = finalizers(updated);
        if let Some(added) = finalizers(&new).into_iter().find(|f| !old.contains(f)) {
            return Err(invalid(
                collection,
                name,
                &format!(
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the \
                     object is being deleted, found new finalizers [\"{added}\"]"
                ),
            ));
        }
    }
    let body = |object: &Object| -> Object {
        object
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "metadata" | "status"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    };
    let spec_changed = body(updated) != body(&new);
    let new_meta = new
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut kept: Object = updated
        .iter()
        .filter(|(key, _)| matches!(key.as_str(), "metadata" | "status"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    kept.extend(body(&new));
    *updated = kept;
    let meta = metadata_mut(updated);
    for field in ["labels", "annotations", "finalizers"] {
        match new_meta.get(field) {
            Some(value) if !value.is_null() => meta.insert(field.into(), value.clone()),
            _ => meta.remove(field),
        };
    }
    if spec_changed {
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta.insert("generation".into(), (generation + 1).into());
    }
    Ok(())
}

fn metadata(object: &Object) -> &Object {
    static EMPTY: std::sync::OnceLock<Object> = std::sync::OnceLock::new();
    object
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Object::new))
}

fn metadata_mut(object: &mut Object) -> &mut Object {
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Object::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Object::new());
    }
    match metadata {
        Value::Object(metadata) => metadata,
        _ => unreachable!("made an object above"),
    }
}

fn meta_str<'a>(object: &'a Object, field: &str) -> Option<&'a str> {
    metadata(object).get(field).and_then(Value::as_str)
}

fn name_of_object(object: &Object) -> &str {
    meta_str(object, "name").unwrap_or_default()
}

fn name_of(object: &Value) -> &str {
    object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn finalizers(object: &Object) -> Vec<String> {
    metadata(object)
        .get("finalizers")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default()
}

/// Now as Kubernetes writes times: RFC 3339, to the second.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `apiVersion` and `kind` are there, and the former is the collection's.
fn check_types(collection: &Collection, object: &Object) -> Result<(), Refusal> {
    let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or_default();
    if field("kind").is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Object 'Kind' is missing",
        ));
    }
    if field("apiVersion") != collection.api_version() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                field("apiVersion"),
                collection.api_version()
            ),
        ));
    }
    Ok(())
}

/// A name is a lowercase RFC 1123 subdomain.
fn check_name(collection: &Collection, name: &str) -> Result<(), Refusal> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(invalid(
            collection,
            name,
            &format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must \
                 consist of lower case alphanumeric characters, '-' or '.'"
            ),
        ));
    }
    Ok(())
}

fn check_namespace(collection: &Collection, object: &Object) -> Result<(), Refusal> {
    match meta_str(object, "namespace") {
        Some(namespace) if !namespace.is_empty() && namespace != collection.namespace => {
            Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the \
                 request",
            ))
        }
        _ => Ok(()),
    }
}

fn not_found(collection: &Collection, name: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} {name:?} not found", collection.resource()),
    )
}

fn conflict(collection: &Collection, name: &str, why: &str) -> Refusal {
    Refusal::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} {name:?}: {why}",
            collection.resource()
        ),
    )
}

fn modified(collection: &Collection, name: &str) -> Refusal {
    conflict(
        collection,
        name,
        "the object has been modified; please apply your changes to the latest version and \
         try again",
    )
}

fn invalid(collection: &Collection, name: &str, why: &str) -> Refusal {
    Refusal::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{} {name:?} is invalid: {why}", collection.resource()),
    )
}
