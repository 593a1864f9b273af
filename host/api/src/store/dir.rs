//! [`DirStore`]: module blobs, token hashes and execution results as files
//! in one directory, for API servers that share it (a ReadWriteMany volume
//! in a cluster, where every replica serves the REST API). Files, unlike a
//! SQLite database, need no lock that network filesystems keep badly: each
//! is written whole to a temporary file, synced, then renamed into place,
//! so a reader sees the old file or the new one, never half of one.
//!
//! ```text
//! DIR/blobs/<sha256>          a module, named by its SHA-256 (checked on read)
//! DIR/results/<uid>.json      an application's results, a JSON array
//! DIR/tokens/<id>.json        a token's record: its SHA-256, never the token
//! DIR/enrollments/<h>.json    an enrolled device key, its id and board
//! DIR/preauthorized/<h>.json  a key that may enroll while pairing is closed
//! DIR/pairing.json            the fleet's pairing window
//! DIR/tmp/                    files being written
//! ```
//!
//! `<h>` is the SHA-256 of the key's hex (a key's hex is longer than a
//! file name this store takes). An enrollment is created with a hard link,
//! which fails when the file exists: two replicas enrolling one key at
//! once agree on the first one's id.
//!
//! Directories are 0700 and files 0600: token hashes, results and
//! enrollments are nobody else's business.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    BlobStore, EnrollmentRecord, EnrollmentStore, PairingWindow, ResultStore, Role, StoreError,
    TokenRecord, TokenStore,
};

/// Blobs, tokens and results in a directory. See the module documentation.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

const BLOBS: &str = "blobs";
const RESULTS: &str = "results";
const TOKENS: &str = "tokens";
const ENROLLMENTS: &str = "enrollments";
const PREAUTHORIZED: &str = "preauthorized";
const PAIRING: &str = "pairing.json";
const TMP: &str = "tmp";

impl DirStore {
    /// Opens (creating what is missing) the store in `root`.
    pub fn open(root: &Path) -> Result<DirStore, StoreError> {
        for sub in ["", BLOBS, RESULTS, TOKENS, ENROLLMENTS, PREAUTHORIZED, TMP] {
            let dir = root.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| unavailable(&dir, &e))?;
            // Also when it was there (made by a volume's provisioner, or
            // with another mode): what is inside is nobody else's.
            if let Err(e) = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not make the directory 0700");
            }
        }
        Ok(DirStore {
            root: root.to_owned(),
        })
    }

    fn path(&self, sub: &str, name: &str) -> PathBuf {
        self.root.join(sub).join(name)
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || work(&root))
            .await
            .map_err(|e| StoreError::Unavailable(format!("file work failed: {e}")))?
    }
}

fn unavailable(path: &Path, error: &io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {error}", path.display()))
}

/// Writes `bytes` as `dest`, whole or not at all (0600).
fn write_atomically(root: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = temporary(root);
    let written = (|| {
        write_synced(&tmp, bytes)?;
        fs::rename(&tmp, dest)?;
        sync_parent(dest)
    })();
    written.map_err(|e: io::Error| {
        let _ = fs::remove_file(&tmp);
        unavailable(dest, &e)
    })
}

/// Writes `bytes` as `dest` whole, unless `dest` exists: `Ok(false)` then,
/// and `dest` is left as it was.
fn create_atomically(root: &Path, dest: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    let tmp = temporary(root);
    let created = (|| {
        write_synced(&tmp, bytes)?;
        // Unlike a rename, a link never replaces what is there.
        let linked = match fs::hard_link(&tmp, dest) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        fs::remove_file(&tmp)?;
        if linked {
            sync_parent(dest)?;
        }
        Ok(linked)
    })();
    created.map_err(|e: io::Error| {
        let _ = fs::remove_file(&tmp);
        unavailable(dest, &e)
    })
}

fn temporary(root: &Path) -> PathBuf {
    root.join(TMP)
        .join(format!("{}.tmp", hex::encode(rand::random::<[u8; 8]>())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// The file's bytes, `None` when there is none.
fn read_if_any(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unavailable(path, &e)),
    }
}

fn remove_if_any(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(unavailable(path, &e)),
    }
}

/// A name that is safe as a file name: ASCII letters, digits and `-`,
/// 1 to 128 of them (SHA-256s, uids and token ids all are).
fn file_name<'a>(what: &str, name: &'a str) -> Result<&'a str, StoreError> {
    let fine = (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if fine {
        Ok(name)
    } else {
        Err(StoreError::Invalid(format!(
            "{what} {name:?} is not a name this store keeps (letters, digits and '-', at most 128)"
        )))
    }
}

/// A token record as its file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct TokenFile {
    id: String,
    sha256: String,
    name: String,
    role: String,
    gateway: Option<String>,
    created_at: u64,
    expires_at: Option<u64>,
}

impl TokenFile {
    fn of(record: &TokenRecord) -> TokenFile {
        TokenFile {
            id: record.id.clone(),
            sha256: hex::encode(record.sha256),
            name: record.name.clone(),
            role: record.role.as_str().to_owned(),
            gateway: record.gateway.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
        }
    }

    fn record(self, path: &Path) -> Result<TokenRecord, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("{}: {why}", path.display()));
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut sha256)
            .map_err(|_| corrupt("its sha256 is not 64 hex digits"))?;
        let role = Role::parse(&self.role)
            .ok_or_else(|| corrupt(&format!("unknown role {:?}", self.role)))?;
        Ok(TokenRecord {
            id: self.id,
            sha256,
            name: self.name,
            role,
            gateway: self.gateway,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

#[async_trait]
impl BlobStore for DirStore {
    async fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let name = file_name("blob", sha256)?.to_ascii_lowercase();
        let bytes = bytes.to_vec();
        self.blocking(move |root| {
            let dest = root.join(BLOBS).join(&name);
            // Content-addressed: one that is there already is this one,
            // unless it was damaged, which this put repairs.
            let intact = read_if_any(&dest)?
                .is_some_and(|there| hex::encode(Sha256::digest(&there)) == name);
            if intact {
                return Ok(());
            }
            write_atomically(root, &dest, &bytes)
        })
        .await
    }

    async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = file_name("blob", sha256)?.to_ascii_lowercase();
        let path = self.path(BLOBS, &name);
        self.blocking(move |_| {
            let Some(bytes) = read_if_any(&path)? else {
                return Ok(None);
            };
            if hex::encode(Sha256::digest(&bytes)) != name {
                return Err(StoreError::Corrupt(format!(
                    "{}: its content does not have the SHA-256 it is named by",
                    path.display()
                )));
            }
            Ok(Some(bytes))
        })
        .await
    }
}

#[async_trait]
impl ResultStore for DirStore {
    async fn put_results(&self, application_uid: &str, json: &str) -> Result<(), StoreError> {
        let dest = self.path(
            RESULTS,
            &format!("{}.json", file_name("application uid", application_uid)?),
        );
        let json = json.as_bytes().to_vec();
        self.blocking(move |root| write_atomically(root, &dest, &json))
            .await
    }

    async fn results(&self, application_uid: &str) -> Result<Option<String>, StoreError> {
        let path = self.path(
            RESULTS,
            &format!("{}.json", file_name("application uid", application_uid)?),
        );
        self.blocking(move |_| {
            read_if_any(&path)?
                .map(|bytes| {
                    String::from_utf8(bytes)
                        .map_err(|_| StoreError::Corrupt(format!("{}: not UTF-8", path.display())))
                })
                .transpose()
        })
        .await
    }

    async fn delete_results(&self, application_uid: &str) -> Result<(), StoreError> {
        let path = self.path(
            RESULTS,
            &format!("{}.json", file_name("application uid", application_uid)?),
        );
        self.blocking(move |_| remove_if_any(&path)).await
    }
}

#[async_trait]
impl TokenStore for DirStore {
    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let dest = self.path(
            TOKENS,
            &format!("{}.json", file_name("token id", &token.id)?),
        );
        let json = serde_json::to_vec(&TokenFile::of(token))?;
        self.blocking(move |root| write_atomically(root, &dest, &json))
            .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.blocking(|root| {
            let dir = root.join(TOKENS);
            let entries = fs::read_dir(&dir).map_err(|e| unavailable(&dir, &e))?;
            let mut records = Vec::new();
            for entry in entries {
                let path = entry.map_err(|e| unavailable(&dir, &e))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                // Deleted by another replica since the listing: gone.
                let Some(bytes) = read_if_any(&path)? else {
                    continue;
                };
                // A file that does not decode is no token: skipped, so that
                // it cannot keep every replica on the tokens it read before
                // (revoked ones included).
                let record = serde_json::from_slice::<TokenFile>(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
                    .and_then(|file| file.record(&path));
                match record {
                    Ok(record) => records.push(record),
                    Err(e) => {
                        tracing::warn!(error = %e, "a token file that does not decode was skipped")
                    }
                }
            }
            records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            Ok(records)
        })
        .await
    }

    async fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        let path = self.path(TOKENS, &format!("{}.json", file_name("token id", id)?));
        self.blocking(move |_| remove_if_any(&path)).await
    }
}

/// The file name of a key's enrollment or pre-authorisation.
fn key_file(public_key: &str) -> String {
    format!(
        "{}.json",
        hex::encode(Sha256::digest(public_key.as_bytes()))
    )
}

/// An enrollment as its file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct EnrollmentFile {
    public_key: String,
    device_id: String,
    board: String,
    firmware_version: String,
    enrolled_at: u64,
}

impl EnrollmentFile {
    fn of(record: &EnrollmentRecord) -> EnrollmentFile {
        EnrollmentFile {
            public_key: record.public_key.clone(),
            device_id: record.device_id.clone(),
            board: record.board.clone(),
            firmware_version: record.firmware_version.clone(),
            enrolled_at: record.enrolled_at,
        }
    }

    fn record(self) -> EnrollmentRecord {
        EnrollmentRecord {
            public_key: self.public_key,
            device_id: self.device_id,
            board: self.board,
            firmware_version: self.firmware_version,
            enrolled_at: self.enrolled_at,
        }
    }
}

/// The enrollment in `path`, if any; one of another key (a SHA-256
/// collision, or a file put there by hand) is refused as corrupt.
fn read_enrollment(path: &Path, public_key: &str) -> Result<Option<EnrollmentRecord>, StoreError> {
    let Some(bytes) = read_if_any(path)? else {
        return Ok(None);
    };
    let file: EnrollmentFile = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
    if file.public_key != public_key {
        return Err(StoreError::Corrupt(format!(
            "{}: holds the enrollment of another key",
            path.display()
        )));
    }
    Ok(Some(file.record()))
}

/// The pairing window as its file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct PairingFile {
    open: bool,
    until: Option<u64>,
}

/// A pre-authorisation as its file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct PreauthorizedFile {
    public_key: String,
    added_at: u64,
}

#[async_trait]
impl EnrollmentStore for DirStore {
    async fn enrollment(&self, public_key: &str) -> Result<Option<EnrollmentRecord>, StoreError> {
        let path = self.path(ENROLLMENTS, &key_file(public_key));
        let key = public_key.to_owned();
        self.blocking(move |_| read_enrollment(&path, &key)).await
    }

    async fn enroll(&self, record: &EnrollmentRecord) -> Result<EnrollmentRecord, StoreError> {
        let dest = self.path(ENROLLMENTS, &key_file(&record.public_key));
        let preauthorized = self.path(PREAUTHORIZED, &key_file(&record.public_key));
        let json = serde_json::to_vec(&EnrollmentFile::of(record))?;
        let key = record.public_key.clone();
        self.blocking(move |root| {
            create_atomically(root, &dest, &json)?;
            remove_if_any(&preauthorized)?;
            read_enrollment(&dest, &key)?.ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "{}: gone just after it was written",
                    dest.display()
                ))
            })
        })
        .await
    }

    async fn preauthorize(&self, public_key: &str, at: u64) -> Result<(), StoreError> {
        let dest = self.path(PREAUTHORIZED, &key_file(public_key));
        let json = serde_json::to_vec(&PreauthorizedFile {
            public_key: public_key.to_owned(),
            added_at: at,
        })?;
        self.blocking(move |root| create_atomically(root, &dest, &json).map(|_| ()))
            .await
    }

    async fn is_preauthorized(&self, public_key: &str) -> Result<bool, StoreError> {
        let path = self.path(PREAUTHORIZED, &key_file(public_key));
        let key = public_key.to_owned();
        self.blocking(move |_| {
            let Some(bytes) = read_if_any(&path)? else {
                return Ok(false);
            };
            let file: PreauthorizedFile = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
            Ok(file.public_key == key)
        })
        .await
    }

    async fn pairing(&self) -> Result<PairingWindow, StoreError> {
        let path = self.root.join(PAIRING);
        self.blocking(move |_| {
            let Some(bytes) = read_if_any(&path)? else {
                return Ok(PairingWindow::default());
            };
            let file: PairingFile = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
            Ok(PairingWindow {
                open: file.open,
                until: file.until,
            })
        })
        .await
    }

    async fn set_pairing(&self, window: PairingWindow) -> Result<(), StoreError> {
        let dest = self.root.join(PAIRING);
        let json = serde_json::to_vec(&PairingFile {
            open: window.open,
            until: window.until,
        })?;
        self.blocking(move |root| write_atomically(root, &dest, &json))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, created_at: u64) -> TokenRecord {
        TokenRecord {
            id: id.to_owned(),
            sha256: [7; 32],
            name: format!("token {id}"),
            role: Role::Gateway,
            gateway: Some("wasmbed-gateway-*".to_owned()),
            created_at,
            expires_at: Some(created_at + 1000),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("there").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn blobs_are_kept_by_their_sha256_and_checked_when_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::open(dir.path()).expect("opens");
        let module = b"\0asm\x01\0\0\0".to_vec();
        let sha256 = hex::encode(Sha256::digest(&module));
        assert_eq!(store.blob(&sha256).await, Ok(None));
        store.put_blob(&sha256, &module).await.expect("put");
        store.put_blob(&sha256, &module).await.expect("put again");
        assert_eq!(store.blob(&sha256).await, Ok(Some(module.clone())));
        // Another store on the same directory (another replica) reads it.
        let other = DirStore::open(dir.path()).expect("opens");
        assert!(other.blob(&sha256).await.expect("read").is_some());
        // A file changed behind the store's back is not served.
        fs::write(dir.path().join(BLOBS).join(&sha256), b"tampered").expect("written");
        assert!(matches!(
            store.blob(&sha256).await,
            Err(StoreError::Corrupt(_))
        ));
        // Putting it again repairs it.
        store.put_blob(&sha256, &module).await.expect("put");
        assert_eq!(store.blob(&sha256).await, Ok(Some(module)));
    }

    #[tokio::test]
    async fn names_that_could_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::open(&dir.path().join("data")).expect("opens");
        for bad in ["../escape", "a/b", "", ".", "x.json", &"a".repeat(129)] {
            assert!(
                matches!(store.put_blob(bad, b"x").await, Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
            assert!(
                matches!(
                    store.put_results(bad, "[]").await,
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(store.delete_token(bad).await, Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(!dir.path().join("escape").exists());
    }

    #[tokio::test]
    async fn results_are_replaced_whole_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::open(dir.path()).expect("opens");
        assert_eq!(store.results("uid-1").await, Ok(None));
        store.put_results("uid-1", "[1]").await.expect("put");
        store.put_results("uid-1", "[1,2]").await.expect("put");
        assert_eq!(store.results("uid-1").await, Ok(Some("[1,2]".to_owned())));
        store.delete_results("uid-1").await.expect("deleted");
        store
            .delete_results("uid-1")
            .await
            .expect("deleting twice is fine");
        assert_eq!(store.results("uid-1").await, Ok(None));
        assert_eq!(
            fs::read_dir(dir.path().join(TMP)).expect("tmp").count(),
            0,
            "no temporary file is left behind"
        );
    }

    #[tokio::test]
    async fn tokens_round_trip_oldest_first_in_files_only_their_owner_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::open(dir.path()).expect("opens");
        store.put_token(&record("bbbb", 2)).await.expect("put");
        store.put_token(&record("aaaa", 1)).await.expect("put");
        store.put_token(&record("cccc", 2)).await.expect("put");
        let ids: Vec<String> = store
            .tokens()
            .await
            .expect("read")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["aaaa", "bbbb", "cccc"]);
        assert_eq!(store.tokens().await.expect("read")[0], record("aaaa", 1));
        let file = dir.path().join(TOKENS).join("aaaa.json");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join(TOKENS)), 0o700);
        // Made 0700 also when it was there with a wider mode.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        DirStore::open(dir.path()).expect("opens");
        assert_eq!(mode(dir.path()), 0o700);
        let text = fs::read_to_string(&file).expect("read");
        assert!(text.contains(&hex::encode([7u8; 32])), "{text}");
        store.delete_token("bbbb").await.expect("deleted");
        assert_eq!(store.tokens().await.expect("read").len(), 2);
        // A record that does not decode is no token, and hides none.
        fs::write(dir.path().join(TOKENS).join("bad.json"), br#"{"id":"bad"}"#).expect("written");
        assert_eq!(store.tokens().await.expect("read").len(), 2);
    }
}
