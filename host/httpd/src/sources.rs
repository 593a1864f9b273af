//! Connections open per source address, so that one host cannot take every
//! slot. IPv6 addresses count by their /64, which one host usually has
//! whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open connections of each source.
#[derive(Debug)]
pub(crate) struct Sources {
    max_per_source: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection of a source; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    source: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The address a source is counted by: an IPv4 address (also one mapped
/// into IPv6) as it is, an IPv6 address by its /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
    }
}

impl Sources {
    pub(crate) fn new(max_per_source: usize) -> Sources {
        Sources {
            max_per_source,
            open: Arc::default(),
        }
    }

    /// A place for one more connection from `ip`, unless its source has
    /// `max_per_source` open.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<SourceSlot> {
        let source = source_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(source).or_insert(0);
        if *count >= self.max_per_source {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            source,
            open: self.open.clone(),
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_share_and_a_freed_place_back() {
        let sources = Sources::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = sources.admit(a).expect("room");
        let _second = sources.admit(a).expect("room");
        assert!(sources.admit(a).is_none());
        assert!(sources.admit(b).is_some());
        drop(first);
        assert!(sources.admit(a).is_some());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("address");
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        assert_eq!(source_of(one), source_of(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("address");
        assert_eq!(source_of(mapped), IpAddr::from([10, 0, 0, 1]));
        let sources = Sources::new(1);
        let _held = sources.admit(one).expect("room");
        assert!(sources.admit(other).is_none(), "the same /64");
    }
}
