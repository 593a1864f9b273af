//! A device's state directory: its factory record and its flash.
//!
//! Each emulated device has a directory of its own, QEMU's working
//! directory while it runs. The firmware reads [`PROVISION_FILE`] (the CBOR
//! [`Provisioning`] record: the gateway CA, the claim certificate and key,
//! an entropy seed and the device's name) and keeps its emulated NOR flash
//! in [`FLASH_FILE`]: its enrolled identity and its modules. Provisioning
//! never touches the flash; [`reset_storage`] deletes it (a factory reset).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use wasmbed_agent::provisioning::{Provisioning, SEED_LEN};
use wasmbed_pki::{Installation, InstallationError, KeyError, pkcs8_to_p256_scalar};

/// The factory record the firmware reads, in the state directory.
pub const PROVISION_FILE: &str = "provision.bin";
/// The firmware's emulated flash, in the state directory.
pub const FLASH_FILE: &str = "flash.bin";
/// The device's console, one line per line it printed, in the state
/// directory.
pub const CONSOLE_LOG: &str = "console.log";

/// Why a device could not be provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The installation directory could not be loaded.
    #[error("loading the installation in {}", dir.display())]
    Installation {
        /// The installation directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: InstallationError,
    },
    /// The claim key is not a P-256 PKCS#8 key.
    #[error("the installation's claim key is unusable")]
    ClaimKey(#[from] KeyError),
    /// The operating system's random number generator failed.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    /// `provision.bin` is not a provisioning record.
    #[error("{} is not a valid provisioning record: delete it to provision the device anew", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("accessing {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What every device of an installation is given: whom to trust and how to
/// enroll.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimMaterial {
    /// The gateway CA certificate, DER.
    pub gateway_ca: Vec<u8>,
    /// The claim certificate, DER.
    pub claim_certificate: Vec<u8>,
    /// The claim certificate's private key, raw big-endian P-256 scalar.
    pub claim_private_key: [u8; 32],
}

impl std::fmt::Debug for ClaimMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimMaterial")
            .field("gateway_ca_len", &self.gateway_ca.len())
            .field("claim_certificate_len", &self.claim_certificate.len())
            .finish_non_exhaustive()
    }
}

impl ClaimMaterial {
    /// The pieces of a loaded installation.
    pub fn from_installation(installation: &Installation) -> Result<ClaimMaterial, ProvisionError> {
        Ok(ClaimMaterial {
            gateway_ca: installation.gateway_ca().to_vec(),
            claim_certificate: installation.claim_cert().to_vec(),
            claim_private_key: pkcs8_to_p256_scalar(installation.claim_key().secret_pkcs8_der())?,
        })
    }

    /// Loads the installation directory made by `wasmbed certs init`.
    pub fn load(dir: &Path) -> Result<ClaimMaterial, ProvisionError> {
        let installation =
            Installation::load(dir).map_err(|source| ProvisionError::Installation {
                dir: dir.to_owned(),
                source,
            })?;
        ClaimMaterial::from_installation(&installation)
    }
}

/// What [`provision`] writes.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// The installation's CA and claim credentials.
    pub claim: ClaimMaterial,
    /// The DNS name the gateway's certificate must carry.
    pub server_name: String,
    /// The device's name, for its console.
    pub device_name: String,
    /// Replace an existing `provision.bin` (with a new entropy seed).
    pub overwrite: bool,
}

/// What [`provision`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// `provision.bin` was written.
    Written,
    /// `provision.bin` existed and was left alone.
    Kept,
}

/// Creates `state_dir` if needed and writes its `provision.bin` unless one
/// exists (or `overwrite` is set). `flash.bin` is never touched.
///
/// The record holds the claim key, so it is written with mode 0600, to a
/// temporary file renamed into place: a crash never leaves half a record.
pub fn provision(
    state_dir: &Path,
    options: &ProvisionOptions,
) -> Result<Provisioned, ProvisionError> {
    fs::create_dir_all(state_dir).map_err(io_error(state_dir))?;
    // The directory will hold the device's flash, private key included,
    // which QEMU creates with the default mode: keep others out of it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error(state_dir))?;
    }
    let path = state_dir.join(PROVISION_FILE);
    if !options.overwrite && path.exists() {
        return Ok(Provisioned::Kept);
    }
    let mut entropy_seed = [0u8; SEED_LEN];
    getrandom::fill(&mut entropy_seed).map_err(|e| ProvisionError::Random(e.to_string()))?;
    let record = Provisioning {
        gateway_ca: &options.claim.gateway_ca,
        server_name: &options.server_name,
        claim_certificate: &options.claim.claim_certificate,
        claim_private_key: options.claim.claim_private_key,
        entropy_seed,
        device_name: &options.device_name,
        gateway_address: None,
    };
    let bytes = record.to_vec();
    let temporary = state_dir.join(format!(".{PROVISION_FILE}.tmp"));
    write_private(&temporary, &bytes).map_err(io_error(&temporary))?;
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    Ok(Provisioned::Written)
}

/// Points a networked device at the gateway: sets the `gateway_address`
/// of its `provision.bin` (`host:port` as the device reaches it), keeping
/// everything else (the entropy seed included). Rewrites the record only
/// when the address changed, atomically and 0600 like [`provision`].
/// Returns whether it was rewritten.
pub fn set_gateway_address(state_dir: &Path, address: &str) -> Result<bool, ProvisionError> {
    let path = state_dir.join(PROVISION_FILE);
    let bytes = fs::read(&path).map_err(io_error(&path))?;
    let record =
        Provisioning::decode(&bytes).map_err(|_| ProvisionError::Invalid { path: path.clone() })?;
    if record.gateway_address == Some(address) {
        return Ok(false);
    }
    let updated = Provisioning {
        gateway_address: Some(address),
        ..record
    }
    .to_vec();
    let temporary = state_dir.join(format!(".{PROVISION_FILE}.tmp"));
    write_private(&temporary, &updated).map_err(io_error(&temporary))?;
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    Ok(true)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Factory reset: deletes the device's `flash.bin` (its enrolled identity
/// and modules); `provision.bin` stays. Returns whether there was one.
/// The device must not be running.
pub fn reset_storage(state_dir: &Path) -> Result<bool, ProvisionError> {
    let path = state_dir.join(FLASH_FILE);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_address_is_set_keeping_the_rest_of_the_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        provision(dir.path(), &options(false)).expect("provisions");
        let path = dir.path().join(PROVISION_FILE);
        let before = fs::read(&path).expect("written");
        assert!(set_gateway_address(dir.path(), "10.0.2.2:4423").expect("sets"));
        assert!(
            !set_gateway_address(dir.path(), "10.0.2.2:4423").expect("same"),
            "unchanged: not rewritten"
        );
        let after = fs::read(&path).expect("rewritten");
        let (old, new) = (
            Provisioning::decode(&before).expect("valid"),
            Provisioning::decode(&after).expect("valid"),
        );
        assert_eq!(new.gateway_address, Some("10.0.2.2:4423"));
        assert_eq!(new.entropy_seed, old.entropy_seed);
        assert_eq!(
            Provisioning {
                gateway_address: None,
                ..new
            },
            old
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(&path, b"junk").expect("overwrite");
        assert!(matches!(
            set_gateway_address(dir.path(), "10.0.2.2:1"),
            Err(ProvisionError::Invalid { .. })
        ));
    }
    use wasmbed_pki::{p256_public_key, test_fixtures};

    fn options(overwrite: bool) -> ProvisionOptions {
        let installation = &test_fixtures().installation;
        ProvisionOptions {
            claim: ClaimMaterial::from_installation(installation).expect("fixture claim key"),
            server_name: "localhost".to_owned(),
            device_name: "qemu-7".to_owned(),
            overwrite,
        }
    }

    #[test]
    fn the_record_decodes_to_the_installation_s_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("qemu-7");
        assert_eq!(
            provision(&state, &options(false)).expect("provision"),
            Provisioned::Written
        );
        let bytes = fs::read(state.join(PROVISION_FILE)).expect("written");
        let record = Provisioning::decode(&bytes).expect("decodes");
        let installation = &test_fixtures().installation;
        assert_eq!(record.gateway_ca, installation.gateway_ca().as_ref());
        assert_eq!(record.claim_certificate, installation.claim_cert().as_ref());
        assert_eq!(record.server_name, "localhost");
        assert_eq!(record.device_name, "qemu-7");
        assert_ne!(record.entropy_seed, [0; SEED_LEN]);
        // The scalar is the claim key: its public key is the one in the
        // claim certificate.
        let public = p256_public_key(&record.claim_private_key).expect("valid scalar");
        let cert = installation.claim_cert().as_ref();
        assert!(
            cert.windows(public.len()).any(|w| w == public),
            "the claim certificate does not carry the scalar's public key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(state.join(PROVISION_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = fs::metadata(&state).expect("metadata").permissions().mode();
            assert_eq!(dir_mode & 0o777, 0o700, "the state directory is private");
        }
    }

    #[test]
    fn an_existing_record_is_kept_unless_overwriting_and_flash_is_never_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        provision(dir.path(), &options(false)).expect("provision");
        let first = fs::read(dir.path().join(PROVISION_FILE)).expect("read");
        fs::write(dir.path().join(FLASH_FILE), b"enrolled identity").expect("flash");

        assert_eq!(
            provision(dir.path(), &options(false)).expect("again"),
            Provisioned::Kept
        );
        assert_eq!(
            fs::read(dir.path().join(PROVISION_FILE)).expect("read"),
            first
        );

        assert_eq!(
            provision(dir.path(), &options(true)).expect("overwrite"),
            Provisioned::Written
        );
        let second = fs::read(dir.path().join(PROVISION_FILE)).expect("read");
        assert_ne!(second, first, "a new record has a new entropy seed");
        assert_eq!(
            fs::read(dir.path().join(FLASH_FILE)).expect("flash kept"),
            b"enrolled identity"
        );
        assert!(!dir.path().join(format!(".{PROVISION_FILE}.tmp")).exists());
    }

    #[test]
    fn reset_storage_deletes_only_the_flash() {
        let dir = tempfile::tempdir().expect("tempdir");
        provision(dir.path(), &options(false)).expect("provision");
        fs::write(dir.path().join(FLASH_FILE), b"x").expect("flash");
        assert!(reset_storage(dir.path()).expect("reset"));
        assert!(!dir.path().join(FLASH_FILE).exists());
        assert!(dir.path().join(PROVISION_FILE).exists());
        assert!(!reset_storage(dir.path()).expect("second reset"));
    }

    #[test]
    fn a_missing_installation_names_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ClaimMaterial::load(&dir.path().join("nope")).expect_err("must fail");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
