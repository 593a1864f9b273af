//! What every [`EnrollmentStore`] must do, run on [`SqliteStore`] and
//! [`DirStore`].

use super::{DirStore, EnrollmentRecord, EnrollmentStore, PairingWindow, SqliteStore};

fn record(key: &str, id: &str) -> EnrollmentRecord {
    EnrollmentRecord {
        public_key: key.to_owned(),
        device_id: id.to_owned(),
        board: "mps2-an385".to_owned(),
        firmware_version: "1.2.3".to_owned(),
        enrolled_at: 1_700_000_000_000,
    }
}

/// A key's hex, as long as a real one (130 digits).
fn key(n: u8) -> String {
    format!("04{}", hex::encode([n; 64]))
}

async fn behaves(store: &dyn EnrollmentStore) {
    // One id per key: the first enrollment stays.
    assert_eq!(store.enrollment(&key(1)).await, Ok(None));
    let first = record(&key(1), &"a".repeat(32));
    assert_eq!(store.enroll(&first).await, Ok(first.clone()));
    assert_eq!(
        store.enroll(&record(&key(1), &"b".repeat(32))).await,
        Ok(first.clone()),
        "a second enrollment of the key keeps the first id"
    );
    assert_eq!(store.enrollment(&key(1)).await, Ok(Some(first)));
    assert_eq!(store.enrollment(&key(2)).await, Ok(None));

    // A pre-authorisation is used up by the enrollment.
    assert_eq!(store.is_preauthorized(&key(3)).await, Ok(false));
    store.preauthorize(&key(3), 5).await.expect("preauthorized");
    store.preauthorize(&key(3), 6).await.expect("twice is fine");
    assert_eq!(store.is_preauthorized(&key(3)).await, Ok(true));
    assert_eq!(store.is_preauthorized(&key(4)).await, Ok(false));
    store
        .enroll(&record(&key(3), &"c".repeat(32)))
        .await
        .expect("enrolled");
    assert_eq!(store.is_preauthorized(&key(3)).await, Ok(false));

    // Pairing: closed until opened; kept as set.
    assert_eq!(store.pairing().await, Ok(PairingWindow::default()));
    let open = PairingWindow {
        open: true,
        until: Some(1_000),
    };
    store.set_pairing(open).await.expect("set");
    assert_eq!(store.pairing().await, Ok(open));
    assert!(open.is_open_at(999) && !open.is_open_at(1_000));
    let always = PairingWindow {
        open: true,
        until: None,
    };
    store.set_pairing(always).await.expect("set");
    assert_eq!(store.pairing().await, Ok(always));
    store
        .set_pairing(PairingWindow::default())
        .await
        .expect("set");
    assert!(!store.pairing().await.expect("read").is_open_at(0));
}

#[tokio::test]
async fn sqlite_keeps_enrollments() {
    behaves(&SqliteStore::in_memory().expect("opens")).await;
}

#[tokio::test]
async fn sqlite_enrollments_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.db");
    let enrolled = record(&key(9), &"d".repeat(32));
    {
        let store = SqliteStore::open(&path).expect("opens");
        store.enroll(&enrolled).await.expect("enrolled");
        store
            .set_pairing(PairingWindow {
                open: true,
                until: None,
            })
            .await
            .expect("set");
    }
    let store = SqliteStore::open(&path).expect("opens again");
    assert_eq!(store.enrollment(&key(9)).await, Ok(Some(enrolled)));
    assert!(store.pairing().await.expect("read").open);
}

#[tokio::test]
async fn files_keep_enrollments() {
    let dir = tempfile::tempdir().expect("tempdir");
    behaves(&DirStore::open(dir.path()).expect("opens")).await;
}

#[tokio::test]
async fn replicas_sharing_files_agree_on_one_id_per_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let one = DirStore::open(dir.path()).expect("opens");
    let other = DirStore::open(dir.path()).expect("opens");
    // Both enroll the same key at once, each with an id of its own.
    let (mine, theirs) = (
        record(&key(7), &"1".repeat(32)),
        record(&key(7), &"2".repeat(32)),
    );
    let (a, b) = tokio::join!(one.enroll(&mine), other.enroll(&theirs));
    let (a, b) = (a.expect("enrolled"), b.expect("enrolled"));
    assert_eq!(a.device_id, b.device_id);
    assert_eq!(other.enrollment(&key(7)).await, Ok(Some(a)));
    // What the other replica set, this one reads.
    let window = PairingWindow {
        open: true,
        until: Some(42),
    };
    one.set_pairing(window).await.expect("set");
    assert_eq!(other.pairing().await, Ok(window));
    // Nobody else reads them.
    for sub in ["enrollments", "preauthorized"] {
        let sub = dir.path().join(sub);
        let mode = std::fs::metadata(&sub).expect("there").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", sub.display());
        for entry in std::fs::read_dir(&sub).expect("listed") {
            let path = entry.expect("entry").path();
            let mode = std::fs::metadata(&path)
                .expect("there")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
    let pairing = dir.path().join("pairing.json");
    let mode = std::fs::metadata(&pairing)
        .expect("there")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0,
        "no temporary file is left behind"
    );
}
