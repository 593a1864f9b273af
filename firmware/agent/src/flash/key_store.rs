//! The device identity on NOR flash.

use alloc::vec::Vec;

use embedded_storage::nor_flash::NorFlash;

use super::check_geometry;
use super::record::RecordPair;
use crate::identity::{KeyStore, StoredKey};
use crate::storage::StoreError;

/// A [`KeyStore`] in the first two sectors of a flash (see
/// [`record`](super::record) for why a power cut never corrupts it).
///
/// Clearing writes an empty record, so it is as atomic as saving. A
/// certificate of up to a sector less about 150 bytes fits.
#[derive(Debug)]
pub struct FlashKeyStore<F> {
    flash: F,
    records: RecordPair,
    /// The current record's body; empty when cleared.
    current: Option<Vec<u8>>,
}

impl<F: NorFlash> FlashKeyStore<F> {
    /// Opens the store, finding the newest intact record.
    pub fn new(mut flash: F) -> Result<Self, StoreError> {
        check_geometry::<F>()?;
        if flash.capacity() < RecordPair::size::<F>() {
            return Err(StoreError::Layout);
        }
        let (records, current) = RecordPair::open(&mut flash, 0)?;
        Ok(FlashKeyStore {
            flash,
            records,
            current,
        })
    }

    /// Gives the flash back, e.g. to reopen it after a simulated reboot.
    pub fn into_flash(self) -> F {
        self.flash
    }

    fn write(&mut self, body: Vec<u8>) -> Result<(), StoreError> {
        self.records.write(&mut self.flash, &body)?;
        self.current = Some(body);
        Ok(())
    }
}

impl<F: NorFlash> KeyStore for FlashKeyStore<F> {
    fn load(&mut self) -> Result<Option<StoredKey>, StoreError> {
        match &self.current {
            Some(body) if !body.is_empty() => StoredKey::from_bytes(body).map(Some),
            _ => Ok(None),
        }
    }

    fn save(&mut self, key: &StoredKey) -> Result<(), StoreError> {
        self.write(key.to_bytes())
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        if self.current.as_ref().is_none_or(|body| body.is_empty()) {
            return Ok(());
        }
        self.write(Vec::new())
    }
}
