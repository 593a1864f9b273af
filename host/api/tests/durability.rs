//! An acknowledged write survives `kill -9` of the process that made it.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmbed_api::model::{Device, DeviceSpec, DeviceStatus, ObjectMeta};
use wasmbed_api::store::{SqliteStore, Store};

const DB_VAR: &str = "WASMBED_API_TEST_WRITER_DB";
const TEST: &str = "acknowledged_writes_survive_kill_9";

fn device(i: u32) -> Device {
    Device {
        metadata: ObjectMeta {
            name: format!("d{i}"),
            ..ObjectMeta::default()
        },
        spec: DeviceSpec {
            board: "b".into(),
            gateway: "gw".into(),
            device_id: None,
            emulated: false,
            revoked: false,
        },
        status: DeviceStatus::default(),
    }
}

/// In the child: writes devices, saying `acked N` after each returned.
async fn writer(path: &str) {
    let store = Store::sqlite(SqliteStore::open(path.as_ref()).unwrap());
    let started = Instant::now();
    let mut out = std::io::stdout();
    for i in 0..100_000 {
        store.create(&device(i)).await.unwrap();
        writeln!(out, "acked {i}").unwrap();
        out.flush().unwrap();
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    if let Ok(path) = std::env::var(DB_VAR) {
        writer(&path).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(DB_VAR, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            let n: u32 = n.parse().unwrap();
            acked = Some(n);
            if n >= 50 {
                break;
            }
        }
    }
    // SIGKILL, mid-write: the child is still writing.
    child.kill().unwrap();
    child.wait().unwrap();
    let acked = acked.expect("the writer acknowledged nothing");
    assert!(acked >= 50);

    let store = Store::sqlite(SqliteStore::open(&path).unwrap());
    for i in 0..=acked {
        assert!(
            store
                .get::<Device>(&format!("d{i}"))
                .await
                .unwrap()
                .is_some(),
            "acknowledged write d{i} lost"
        );
    }
    // Still writable after the crash.
    store.create(&device(1_000_000)).await.unwrap();
}
