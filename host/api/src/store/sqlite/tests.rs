use super::schema::MIGRATIONS;
use super::*;
use crate::model::{Application, Device};
use crate::store::conformance::{self, device};
use crate::store::{Deletion, Store};

fn fresh() -> Store {
    Store::sqlite(SqliteStore::in_memory().expect("opens"))
}

#[tokio::test]
async fn sqlite_store_passes_the_backend_tests() {
    conformance::all(|| async { fresh() }).await;
}

#[test]
fn pages_are_read_through_the_primary_key_index() -> Result<(), rusqlite::Error> {
    let store = SqliteStore::in_memory().expect("opens");
    let db = store.lock();
    for (query, args) in [
        (PAGE_AFTER, params!["Device", "d1", 10]),
        (PAGE_FIRST, params!["Device", 10]),
    ] {
        let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {query}"))?;
        let plan = statement
            .query_map(args, |row| row.get::<_, String>(3))?
            .collect::<Result<Vec<_>, _>>()?
            .join("; ");
        assert!(
            plan.contains("USING INDEX sqlite_autoindex_resources_1"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
    Ok(())
}

#[tokio::test]
async fn reopening_keeps_objects_versions_blobs_and_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api.db");
    let first;
    let before = {
        let store = Store::sqlite(SqliteStore::open(&path).expect("opens"));
        first = store.create(&device("a")).await.expect("created");
        store.put_blob("ab", b"\0asm").await.expect("stored");
        store.create(&device("c")).await.expect("created")
    };
    let store = Store::sqlite(SqliteStore::open(&path).expect("opens"));
    let after: Device = store.fetch("c").await.expect("there");
    assert_eq!(after, before);
    assert_eq!(store.list::<Device>().await.expect("listed").len(), 2);
    assert_eq!(
        store.blob("ab").await.expect("read").as_deref(),
        Some(&b"\0asm"[..])
    );
    // Versions keep growing across restarts: a stale version never matches.
    let next = store.create(&device("d")).await.expect("created");
    let version = |d: &Device| {
        d.metadata
            .resource_version
            .parse::<u64>()
            .expect("a number")
    };
    assert!(version(&next) > version(&before));
    // A watch cannot start before the last write of the previous run: what
    // happened then is not kept, so the watcher must list. From that last
    // write on, nothing is missed.
    assert!(matches!(
        store
            .watch::<Device>(Some(&first.metadata.resource_version))
            .await,
        Err(StoreError::Expired(_))
    ));
    let mut events = store
        .watch::<Device>(Some(&next.metadata.resource_version))
        .await
        .expect("watching from the last write");
    let added = store.create(&device("e")).await.expect("created");
    use futures_util::StreamExt as _;
    assert_eq!(
        events
            .next()
            .await
            .expect("an event")
            .expect("not an error"),
        crate::store::WatchEvent::Added(added)
    );
}

#[tokio::test]
async fn a_watch_from_a_version_older_than_the_history_must_list_again() {
    let store = fresh();
    let first = store.create(&device("first")).await.expect("created");
    // One write more than the history keeps: the first after `first` is
    // forgotten.
    for i in 0..=super::super::hub::HISTORY {
        store
            .modify::<Device>("first", |d| {
                d.spec.board = format!("b{i}");
                true
            })
            .await
            .expect("modified");
    }
    assert!(matches!(
        store
            .watch::<Device>(Some(&first.metadata.resource_version))
            .await,
        Err(StoreError::Expired(_))
    ));
    assert!(matches!(
        store.watch::<Device>(Some("seven")).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn blobs_tokens_and_results_are_kept_apart_from_resources() {
    let sqlite = SqliteStore::in_memory().expect("opens");
    let store = Store::sqlite(sqlite.clone());
    store.put_blob("ab", b"\0asm").await.expect("stored");
    store.put_blob("ab", b"\0asm").await.expect("stored twice");
    assert_eq!(store.blob("cd").await.expect("read"), None);

    let token = TokenRecord {
        id: "0123456789abcdef".into(),
        sha256: [7; 32],
        name: "ci".into(),
        role: Role::ReadOnly,
        gateway: None,
        created_at: 5,
        expires_at: None,
    };
    let gateway_token = TokenRecord {
        id: "fedcba9876543210".into(),
        sha256: [8; 32],
        name: "edge".into(),
        role: Role::Gateway,
        gateway: Some("edge-1".into()),
        created_at: 6,
        expires_at: Some(60_000),
    };
    let tokens = store.tokens();
    tokens.put_token(&token).await.expect("stored");
    tokens.put_token(&gateway_token).await.expect("stored");
    assert_eq!(
        tokens.tokens().await.expect("read"),
        vec![token.clone(), gateway_token.clone()]
    );
    tokens.delete_token(&token.id).await.expect("deleted");
    assert_eq!(tokens.tokens().await.expect("read"), vec![gateway_token]);
    assert!(matches!(
        tokens.delete_token(&token.id).await,
        Err(StoreError::NotFound { .. })
    ));

    assert!(store.results("u1").await.expect("read").is_empty());
    let result = crate::model::ExecutionResult {
        device: "a".into(),
        gateway_deployment_id: 3,
        invocation: 1,
        returned: Some(vec![crate::model::WasmValue::I32(42)]),
        trap: None,
        fuel_used: 10,
        duration_us: 20,
        logs: vec!["hi".into()],
        logs_truncated: false,
        received_at: 30,
    };
    store
        .put_results("u1", std::slice::from_ref(&result))
        .await
        .expect("stored");
    store
        .put_results("u1", &[result.clone(), result.clone()])
        .await
        .expect("replaced");
    assert_eq!(
        store.results("u1").await.expect("read"),
        vec![result.clone(), result]
    );
    assert!(store.results("u2").await.expect("read").is_empty());
    store.delete_results("u1").await.expect("deleted");
    assert!(store.results("u1").await.expect("read").is_empty());
    // None of it is a resource write: nothing to watch, no version used.
    assert_eq!(current_store_version(&sqlite.lock()).expect("read"), 0);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api.db");
    let files = [
        path.clone(),
        dir.path().join("api.db-wal"),
        dir.path().join("api.db-shm"),
    ];
    let first = Store::sqlite(SqliteStore::open(&path).expect("opens"));
    first.create(&device("a")).await.expect("created");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // Files made readable by others (an older version, a copy) are
    // tightened at the next open.
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let second = Store::sqlite(SqliteStore::open(&path).expect("opens"));
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert_eq!(second.list::<Device>().await.expect("listed").len(), 1);
    drop(first);
}

#[tokio::test]
async fn tokens_of_an_older_database_get_ids_and_keep_their_role() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api.db");
    {
        // The tokens table as it was before ids, gateways and expiry.
        let db = Connection::open(&path).expect("opens");
        db.execute_batch(
            "CREATE TABLE tokens (sha256 BLOB PRIMARY KEY, name TEXT NOT NULL,
                 role TEXT NOT NULL, created_at INTEGER NOT NULL);
             INSERT INTO tokens VALUES (x'0101010101010101010101010101010101010101010101010101010101010101', 'admin', 'admin', 1);
             INSERT INTO tokens VALUES (x'0202020202020202020202020202020202020202020202020202020202020202', 'ci', 'read_only', 2);",
        )
        .expect("old schema");
    }
    let tokens = SqliteStore::open(&path)
        .expect("opens")
        .tokens()
        .await
        .expect("read");
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        (tokens[0].role, tokens[1].role),
        (Role::Admin, Role::ReadOnly)
    );
    assert_eq!(tokens[0].sha256, [1; 32]);
    assert_eq!(tokens[1].name, "ci");
    for token in &tokens {
        assert_eq!(token.id.len(), 16, "{token:?}");
        assert!(token.id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!((token.gateway.as_deref(), token.expires_at), (None, None));
    }
    assert_ne!(tokens[0].id, tokens[1].id);
    // Ids are given once: the next open keeps them.
    let again = SqliteStore::open(&path)
        .expect("opens")
        .tokens()
        .await
        .expect("read");
    assert_eq!(again, tokens);
}

#[tokio::test]
async fn objects_of_an_older_database_keep_their_spec_status_and_pending_deletion() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api.db");
    {
        // As the store kept them before spec and status were apart.
        let db = Connection::open(&path).expect("opens");
        db.execute_batch(MIGRATIONS[0]).expect("old schema");
        db.execute_batch(MIGRATIONS[1]).expect("old schema");
        let device = serde_json::json!({
            "spec": {"board": "wasmbed-sim", "gateway": "gw", "emulated": true},
            "status": {"presence": "connected"}
        });
        let app = serde_json::json!({
            "spec": {
                "module": {"sha256": "ab", "size": 8},
                "limits": {"fuel": 1, "memory_pages": 1, "entry": "run"},
                "selector": {"names": ["d"]}
            },
            "status": {"results": 2}
        });
        db.execute(
            "INSERT INTO objects VALUES ('Device', 'd', 'u1', '{\"site\":\"lab\"}', 5, 7, 0, ?1),
                                        ('Application', 'app', 'u2', '{}', 6, 8, 1, ?2)",
            params![device.to_string(), app.to_string()],
        )
        .expect("old rows");
        db.execute(
            "UPDATE counters SET value = 8 WHERE name = 'resource_version'",
            [],
        )
        .expect("counter");
    }
    let store = Store::sqlite(SqliteStore::open(&path).expect("opens"));
    let device: Device = store.fetch("d").await.expect("kept");
    assert_eq!(device.metadata.uid, "u1");
    assert_eq!(device.metadata.resource_version, "7");
    assert_eq!(
        device.metadata.labels.get("site").map(String::as_str),
        Some("lab")
    );
    assert_eq!(device.status.presence, crate::model::Presence::Connected);
    assert!(!device.metadata.deleting());
    let app: Application = store.fetch("app").await.expect("kept");
    assert!(app.metadata.deleting(), "its deletion was under way");
    assert_eq!(app.metadata.finalizers, [crate::model::UNDEPLOY_FINALIZER]);
    assert_eq!(app.status.results, 2);
    // And it still goes once undeployed.
    let mut done = app.clone();
    done.metadata.finalizers.clear();
    store.replace(&done).await.expect("finalizer removed");
    assert!(
        store
            .get::<Application>("app")
            .await
            .expect("read")
            .is_none()
    );
    assert!(matches!(
        store.delete::<Device>("d", None).await,
        Ok(Deletion::Deleted)
    ));
}

#[tokio::test]
async fn a_token_with_an_unknown_role_is_an_error_not_a_reader() {
    let store = SqliteStore::in_memory().expect("opens");
    store
        .lock()
        .execute_batch(
            "INSERT INTO tokens (sha256, name, role, created_at, id) VALUES (x'03', 'x', 'root', 1, 'abc')",
        )
        .expect("inserted");
    assert!(matches!(store.tokens().await, Err(StoreError::Corrupt(_))));
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let db = Connection::open_in_memory().expect("opens");
    db.pragma_update(None, "user_version", 99).expect("set");
    let error = SqliteStore::setup(db).expect_err("refused");
    assert!(error.to_string().contains("newer"), "{error}");
}

#[tokio::test]
async fn a_write_that_changed_nothing_is_not_taken_for_the_writers_own() {
    let store = Store::in_memory();
    let (quiet, own) = store.quiet();
    // Someone else's write, whose event the quiet writer has not seen yet.
    let created = store.create(&device("d1")).await.expect("created");
    let unchanged = quiet.replace(&created).await.expect("replaced");
    assert_eq!(
        unchanged.metadata.resource_version,
        created.metadata.resource_version
    );
    assert!(
        !own.take(&created.metadata.resource_version),
        "someone else's version taken for the writer's own"
    );
    let mut changed = unchanged;
    changed.spec.board = "mps2-an385".into();
    let written = quiet.replace(&changed).await.expect("replaced");
    assert!(own.take(&written.metadata.resource_version));
}
