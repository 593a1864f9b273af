//! The on-flash format of a value that survives power cuts: two sectors,
//! written alternately.
//!
//! Sector layout of one record:
//!
//! ```text
//! 0   magic "WBR1"
//! 4   sequence number, u32 LE
//! 8   body length, u32 LE
//! 12  CRC-32 of sequence number, length and body
//! 16  body, padded with 0xFF to the write size
//! ..  (erased)
//! end-M  commit marker, M = max(8, WRITE_SIZE) bytes, written last
//! ```
//!
//! A record counts only with its magic, marker and CRC all intact; of two
//! valid records the higher sequence number wins. A write erases the
//! sector *not* holding the current record, writes header and body, and
//! writes the marker last, so a power cut at any point leaves the current
//! record in place and the new one unmarked.

use alloc::vec;
use alloc::vec::Vec;

use embedded_storage::nor_flash::NorFlash;

use super::{MAX_WORD, crc32, offset};
use crate::storage::StoreError;

const MAGIC: [u8; 4] = *b"WBR1";
const HEADER_LEN: usize = 16;
const MARKER: [u8; MAX_WORD] = [
    0xA5, 0x5A, 0xC3, 0x3C, 0xA5, 0x5A, 0xC3, 0x3C, 0xA5, 0x5A, 0xC3, 0x3C, 0xA5, 0x5A, 0xC3, 0x3C,
];

/// Where the current record of a two-sector pair is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordPair {
    base: u32,
    sector_size: u32,
    seq: u32,
    /// Index (0 or 1) of the sector holding the newest valid record.
    current: Option<u32>,
}

fn marker_len<F: NorFlash>() -> usize {
    F::WRITE_SIZE.max(8)
}

impl RecordPair {
    /// Flash a pair needs: two sectors.
    pub(crate) fn size<F: NorFlash>() -> usize {
        2 * F::ERASE_SIZE
    }

    /// Largest body a record holds.
    pub(crate) fn max_body<F: NorFlash>() -> usize {
        F::ERASE_SIZE - HEADER_LEN - marker_len::<F>()
    }

    /// The pair at `base`, before [`Self::open`] looked for its record.
    pub(crate) fn at<F: NorFlash>(base: u32) -> RecordPair {
        RecordPair {
            base,
            sector_size: offset(F::ERASE_SIZE),
            seq: 0,
            current: None,
        }
    }

    /// Finds the newest valid record of the pair at `base`.
    pub(crate) fn open<F: NorFlash>(
        flash: &mut F,
        base: u32,
    ) -> Result<(RecordPair, Option<Vec<u8>>), StoreError> {
        let mut pair = RecordPair::at::<F>(base);
        let mut newest = None;
        for index in 0..2 {
            if let Some((seq, body)) = read_record(flash, pair.sector(index))? {
                if pair.current.is_none() || seq > pair.seq {
                    pair.seq = seq;
                    pair.current = Some(index);
                    newest = Some(body);
                }
            }
        }
        Ok((pair, newest))
    }

    /// Replaces the current record with `body`.
    pub(crate) fn write<F: NorFlash>(
        &mut self,
        flash: &mut F,
        body: &[u8],
    ) -> Result<(), StoreError> {
        if body.len() > Self::max_body::<F>() {
            return Err(StoreError::TooLarge);
        }
        let target = match self.current {
            Some(0) => 1,
            _ => 0,
        };
        let start = self.sector(target);
        let sector = self.sector_size;
        let seq = self.seq.wrapping_add(1);
        let len = offset(body.len());
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&seq.to_le_bytes());
        header[8..12].copy_from_slice(&len.to_le_bytes());
        let crc = crc32(&[&seq.to_le_bytes(), &len.to_le_bytes(), body]);
        header[12..].copy_from_slice(&crc.to_le_bytes());

        let flash_err = |_| StoreError::Flash;
        flash.erase(start, start + sector).map_err(flash_err)?;
        flash.write(start, &header).map_err(flash_err)?;
        let aligned = body.len() / F::WRITE_SIZE * F::WRITE_SIZE;
        let body_start = start + offset(HEADER_LEN);
        if aligned > 0 {
            flash
                .write(body_start, &body[..aligned])
                .map_err(flash_err)?;
        }
        if aligned < body.len() {
            let mut word = [0xFF; MAX_WORD];
            let rest = &body[aligned..];
            word[..rest.len()].copy_from_slice(rest);
            flash
                .write(body_start + offset(aligned), &word[..F::WRITE_SIZE])
                .map_err(flash_err)?;
        }
        let marker = marker_len::<F>();
        flash
            .write(start + sector - offset(marker), &MARKER[..marker])
            .map_err(flash_err)?;
        self.seq = seq;
        self.current = Some(target);
        Ok(())
    }

    fn sector(&self, index: u32) -> u32 {
        self.base + index * self.sector_size
    }
}

/// Reads the record in the sector at `start`, if it is valid.
fn read_record<F: NorFlash>(
    flash: &mut F,
    start: u32,
) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
    let flash_err = |_| StoreError::Flash;
    let mut header = [0u8; HEADER_LEN];
    flash.read(start, &mut header).map_err(flash_err)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (seq, len, crc) = (word(4), word(8), word(12));
    if header[..4] != MAGIC || len as usize > RecordPair::max_body::<F>() {
        return Ok(None);
    }
    let marker = marker_len::<F>();
    let mut found = [0u8; MAX_WORD];
    flash
        .read(start + offset(F::ERASE_SIZE - marker), &mut found[..marker])
        .map_err(flash_err)?;
    if found[..marker] != MARKER[..marker] {
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    flash
        .read(start + offset(HEADER_LEN), &mut body)
        .map_err(flash_err)?;
    if crc32(&[&seq.to_le_bytes(), &len.to_le_bytes(), &body]) != crc {
        return Ok(None);
    }
    Ok(Some((seq, body)))
}
