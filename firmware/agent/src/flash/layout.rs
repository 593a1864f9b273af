//! Where a device's stores live on one flash: the layout both firmwares use.

use core::ops::Range;

/// The partitions of one flash, in bytes from its start:
///
/// ```text
/// keys     2 sectors             the identity (a record pair)
/// seed     1 sector              the CSPRNG seed saved for the next boot
/// modules  2 sectors + per slot  the slot table, then per slot a progress
///          (1 + D) sectors       log sector and D = ceil(max_module / sector)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashLayout {
    pub keys: Range<u32>,
    pub seed: Range<u32>,
    pub modules: Range<u32>,
}

impl FlashLayout {
    /// The layout for `slots` modules of at most `max_module` bytes on a
    /// flash with sectors of `sector` bytes; `None` if it exceeds 4 GiB.
    pub fn new(sector: u32, slots: u32, max_module: u32) -> Option<FlashLayout> {
        let data_sectors = max_module.div_ceil(sector);
        let keys = 0..sector.checked_mul(2)?;
        let seed = keys.end..keys.end.checked_add(sector)?;
        let per_slot = data_sectors.checked_add(1)?.checked_mul(sector)?;
        let modules_len = slots
            .checked_mul(per_slot)?
            .checked_add(sector.checked_mul(2)?)?;
        let modules = seed.end..seed.end.checked_add(modules_len)?;
        Some(FlashLayout {
            keys,
            seed,
            modules,
        })
    }

    /// Bytes the whole layout takes.
    pub fn size(&self) -> u32 {
        self.modules.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_each_other_without_overlap() {
        let layout = FlashLayout::new(4096, 2, 16 * 1024).expect("fits");
        assert_eq!(layout.keys, 0..8192);
        assert_eq!(layout.seed, 8192..12288);
        // Slot table (2 sectors) + 2 × (log + 4 data sectors).
        assert_eq!(layout.modules, 12288..12288 + 12 * 4096);
        assert_eq!(layout.size(), 15 * 4096);
    }

    #[test]
    fn a_module_size_between_sectors_rounds_up_and_huge_layouts_are_refused() {
        let layout = FlashLayout::new(4096, 1, 4097).expect("fits");
        assert_eq!(layout.modules.len(), (2 + 1 + 2) * 4096);
        assert_eq!(FlashLayout::new(4096, u32::MAX, 1 << 20), None);
    }
}
