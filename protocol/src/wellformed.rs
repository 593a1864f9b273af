//! A strict, allocation-free well-formedness check run before decoding.
//!
//! The protocol only ever produces definite lengths. Refusing everything
//! else up front means no decoder ever meets an indefinite-length item
//! (which minicbor's `skip` can only handle by allocating, and not at all
//! without `alloc`), so devices and gateways accept exactly the same
//! frames, and not-well-formed items hidden under unknown keys are refused.
//!
//! # Duplicate map keys
//!
//! A map with the same key twice is refused too ([`DecodeError::DuplicateKey`]):
//! minicbor-derive keeps one of the values, another decoder may keep the
//! other, so two ends could read one frame differently. Every map at any
//! depth is checked, including maps under keys this build does not know.
//!
//! Two keys are the same when they are integers of the same major type and
//! value, or other items with byte-identical encodings (the equality of
//! CBOR's deterministic encoding). Integers are compared by value because
//! receivers accept longer forms than the shortest: `01` and `18 01` are
//! both key 1 to minicbor, so they are the same key here too.
//!
//! The check is a second pass, run only over well-formed input (so a frame
//! with both faults gets the well-formedness error, wherever they are), with
//! no recursion and a fixed amount of stack:
//!
//! - each map of two or more pairs is walked once, its keys found by
//!   skipping items with an iterative skipper; keys that are unsigned
//!   integers below 64 (every key the protocol defines) go into a 64-bit
//!   set, so a map of only such keys costs one walk;
//! - other keys are compared in blocks of [`BLOCK`] kept on the stack (about
//!   400 bytes): each later key of the map is compared with the block by
//!   major type and value (integers) or length and first 8 bytes (anything
//!   else), and only then, for a non-integer, by its bytes.
//!
//! Walking a map re-reads what is nested in it, so the cost is the input
//! length times the nesting depth of maps with two or more pairs, plus, for
//! `m` keys that are not small integers, `m / BLOCK` more walks and `m²`
//! cheap comparisons. Nesting is limited to [`MAX_DEPTH`] levels (deeper
//! input is refused with [`DecodeError::TooDeep`] by the first pass), which
//! bounds the first term. `cargo bench -p wasmbed-protocol --bench codec`
//! prints the cost of the worst frame against a 1 KiB chunk's decode.
//!
//! The error names the earliest key in the input that repeats an earlier key
//! of the same map.

use crate::codec::DecodeError;

/// How many keys that are not small integers are compared at once.
const BLOCK: usize = 16;

/// Checks that `bytes` is exactly one well-formed CBOR item that uses only
/// definite lengths and has no map with a repeated key. Iterative: nesting
/// depth costs no stack.
pub(crate) fn check(bytes: &[u8]) -> Result<(), DecodeError> {
    let first_map = structure(bytes)?;
    match first_map {
        Some(from) => duplicate_keys(bytes, from),
        None => Ok(()),
    }
}

/// Deepest nesting of arrays, maps and tags accepted. The protocol's own
/// messages nest at most 5 deep; the limit bounds the duplicate-key pass,
/// whose cost grows with the depth of nested maps.
pub const MAX_DEPTH: usize = 16;

/// The well-formedness check proper. Returns where the first map with two
/// or more pairs starts, if there is one.
fn structure(bytes: &[u8]) -> Result<Option<usize>, DecodeError> {
    let mut pos = 0usize;
    let mut first_map = None;
    // Items still to read in each open container, outermost first; the
    // root is a container of one item.
    let mut open = [0usize; MAX_DEPTH + 1];
    open[0] = 1;
    let mut depth = 0usize;
    // Items still to read in all: each needs at least one byte, so this
    // never exceeds the input length.
    let mut pending: usize = 1;
    while pending > 0 {
        let at = pos;
        let initial = *bytes.get(pos).ok_or(DecodeError::Truncated)?;
        pos += 1;
        pending -= 1;
        open[depth] -= 1;
        let mut children = 0usize;
        // Fast path: small unsigned integers (every map key, most values).
        if initial >= 0x18 {
            let major = initial >> 5;
            let info = initial & 0x1f;
            let argument = match info {
                0..=23 => u64::from(info),
                24..=27 => {
                    let width = 1usize << (info - 24);
                    let field = bytes.get(pos..pos + width).ok_or(DecodeError::Truncated)?;
                    pos += width;
                    field.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
                }
                // 28..=30 are reserved; 31 is an indefinite length or a break.
                _ => return Err(DecodeError::Malformed { at }),
            };
            let remaining = bytes.len() - pos;
            match major {
                2 | 3 => {
                    let len = usize::try_from(argument).map_err(|_| DecodeError::Truncated)?;
                    if len > remaining {
                        return Err(DecodeError::Truncated);
                    }
                    pos += len;
                }
                4 | 5 => {
                    let per_entry = if major == 5 { 2 } else { 1 };
                    children = usize::try_from(argument)
                        .ok()
                        .and_then(|n| n.checked_mul(per_entry))
                        .filter(|n| {
                            pending
                                .checked_add(*n)
                                .is_some_and(|total| total <= remaining)
                        })
                        .ok_or(DecodeError::Truncated)?;
                    if major == 5 && argument >= 2 && first_map.is_none() {
                        first_map = Some(at);
                    }
                }
                6 => children = 1,
                // Simple values below 32 must use the one-byte form.
                7 if info == 24 && argument < 32 => return Err(DecodeError::Malformed { at }),
                _ => {}
            }
        }
        if children > 0 {
            if depth == MAX_DEPTH {
                return Err(DecodeError::TooDeep { at });
            }
            depth += 1;
            open[depth] = children;
            pending += children;
        }
        while depth > 0 && open[depth] == 0 {
            depth -= 1;
        }
    }
    if pos != bytes.len() {
        return Err(DecodeError::TrailingBytes { at: pos });
    }
    Ok(first_map)
}

/// The head of a data item: its major type and argument, and where what
/// follows the head starts.
#[derive(Clone, Copy)]
struct Head {
    major: u8,
    argument: u64,
    end: usize,
}

impl Head {
    /// Reads the head at `pos` of input that passed [`structure`]. (Out of
    /// range reads give a zero head instead of panicking; they cannot happen
    /// on such input.)
    #[inline]
    fn at(bytes: &[u8], pos: usize) -> Head {
        let initial = bytes.get(pos).copied().unwrap_or(0);
        let major = initial >> 5;
        let info = initial & 0x1f;
        if info < 24 {
            return Head {
                major,
                argument: u64::from(info),
                end: pos + 1,
            };
        }
        let width = 1usize << (info.saturating_sub(24) & 3);
        let argument = bytes
            .get(pos + 1..pos + 1 + width)
            .unwrap_or(&[])
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        Head {
            major,
            argument,
            end: pos + 1 + width,
        }
    }

    /// The argument as a length or count (it fits: the input held it).
    #[inline]
    fn len(self) -> usize {
        usize::try_from(self.argument).unwrap_or(0)
    }

    /// How many items this head's item contains directly.
    #[inline]
    fn children(self) -> usize {
        match self.major {
            4 => self.len(),
            5 => self.len().saturating_mul(2),
            6 => 1,
            _ => 0,
        }
    }

    /// Where the item continues after the head: past a string's bytes.
    #[inline]
    fn body_end(self) -> usize {
        match self.major {
            2 | 3 => self.end + self.len(),
            _ => self.end,
        }
    }
}

/// Where the item starting at `pos` ends.
#[inline]
fn skip(bytes: &[u8], mut pos: usize) -> usize {
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        if bytes.get(pos).is_some_and(|b| *b < 0x18) {
            pos += 1;
            continue;
        }
        let head = Head::at(bytes, pos);
        pending += head.children();
        pos = head.body_end();
    }
    pos
}

/// Checks every map of two or more pairs, from the one starting at `from`
/// (no map before it has two pairs).
fn duplicate_keys(bytes: &[u8], from: usize) -> Result<(), DecodeError> {
    // Earliest repeated key found so far; nothing at or after it matters.
    let mut first = usize::MAX;
    // Every head, in order: items are laid out depth first.
    let mut pos = from;
    while pos < bytes.len() && pos < first {
        let head = Head::at(bytes, pos);
        if head.major == 5 && head.argument >= 2 {
            check_map(bytes, head.end, head.len(), &mut first);
        }
        pos = head.body_end();
    }
    if first == usize::MAX {
        Ok(())
    } else {
        Err(DecodeError::DuplicateKey { at: first })
    }
}

/// If the key at `pos` is an unsigned integer below 64, that integer.
#[inline]
fn small_key(bytes: &[u8], pos: usize) -> Option<u32> {
    let initial = *bytes.get(pos)?;
    if initial < 0x18 {
        return Some(u32::from(initial));
    }
    // A small integer in a longer form: `18 xx`, `19 00 xx`, ...
    let head = Head::at(bytes, pos);
    (head.major == 0 && head.argument < 64).then(|| u32::try_from(head.argument).unwrap_or(0))
}

/// Checks the `pairs` keys of the map whose first key starts at `pos`,
/// lowering `first` to the earliest repeated key.
fn check_map(bytes: &[u8], mut pos: usize, pairs: usize, first: &mut usize) {
    let mut seen = 0u64;
    // The first `BLOCK` other keys are compared during this walk.
    // Only set up when a map has such a key: most have none.
    let mut block: Option<[Key; BLOCK]> = None;
    let mut others = 0usize;
    let mut first_other = (0usize, 0usize);
    for pair in 0..pairs {
        if pos >= *first {
            return;
        }
        let key_end = match small_key(bytes, pos) {
            Some(key) => {
                let bit = 1u64 << key;
                if seen & bit != 0 {
                    // Other keys before this one may repeat too.
                    *first = pos;
                    break;
                }
                seen |= bit;
                skip(bytes, pos)
            }
            None => {
                let key = Key::at(bytes, pos);
                if others == 0 {
                    first_other = (pos, pairs - pair);
                }
                if others < BLOCK {
                    let block = block.get_or_insert([Key::default(); BLOCK]);
                    if key.repeats(bytes, &block[..others]) {
                        *first = pos;
                        return;
                    }
                    block[others] = key;
                }
                others += 1;
                key.end
            }
        };
        if pair + 1 < pairs {
            pos = skip(bytes, key_end);
        }
    }
    if others > BLOCK {
        let (pos, pairs) = first_other;
        check_other_keys(bytes, pos, pairs, first);
    }
}

/// Compares the keys that are not small integers among the `pairs` pairs
/// from `pos`, a block at a time.
fn check_other_keys(bytes: &[u8], mut pos: usize, mut pairs: usize, first: &mut usize) {
    while pairs > 0 {
        let mut block = [Key::default(); BLOCK];
        let mut held = 0;
        // Fill the block, comparing each key with those before it.
        while pairs > 0 && held < BLOCK {
            if pos >= *first {
                return;
            }
            let key = Key::at(bytes, pos);
            if small_key(bytes, pos).is_none() {
                if key.repeats(bytes, &block[..held]) {
                    *first = pos;
                    return;
                }
                block[held] = key;
                held += 1;
            }
            pos = skip(bytes, key.end);
            pairs -= 1;
        }
        // Compare every later key with the block.
        let (mut later, mut left) = (pos, pairs);
        while left > 0 && later < *first {
            let key = Key::at(bytes, later);
            if small_key(bytes, later).is_none() && key.repeats(bytes, &block[..held]) {
                *first = later;
                break;
            }
            later = skip(bytes, key.end);
            left -= 1;
        }
    }
}

/// A map key, with what two equal keys have in common and is cheap to
/// compare: an integer's major type and value (which is all there is to
/// it), or for any other item its encoded length (up to 127) and first 8
/// bytes.
#[derive(Clone, Copy, Default)]
struct Key {
    kind: u8,
    value: u64,
    start: usize,
    end: usize,
}

impl Key {
    /// The key at `pos`.
    #[inline]
    fn at(bytes: &[u8], pos: usize) -> Key {
        let head = Head::at(bytes, pos);
        if head.major <= 1 {
            return Key {
                kind: head.major,
                value: head.argument,
                start: pos,
                end: head.end,
            };
        }
        let end = skip(bytes, pos);
        let encoded = bytes.get(pos..end).unwrap_or(&[]);
        Key {
            kind: 0x80 | u8::try_from(encoded.len().min(0x7f)).unwrap_or(0x7f),
            value: encoded
                .iter()
                .take(8)
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
            start: pos,
            end,
        }
    }

    /// Whether this key equals one of `block`: integers by value, anything
    /// else by its encoded bytes.
    #[inline]
    fn repeats(&self, bytes: &[u8], block: &[Key]) -> bool {
        block.iter().any(|other| {
            other.kind == self.kind
                && other.value == self.value
                && (self.kind < 0x80
                    || bytes.get(other.start..other.end) == bytes.get(self.start..self.end))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    #[test]
    fn definite_items_pass() {
        for item in [
            "00",
            "1bffffffffffffffff",
            "3863",
            "4401020304",
            "6161",
            "83010203",
            "a201020304",
            "c11a514b67b0",
            "f93c00",
            "fb3ff8000000000000",
            "f820",
            "8182a1008000",
        ] {
            assert_eq!(check(&hex(item)), Ok(()), "{item}");
        }
    }

    #[test]
    fn indefinite_reserved_and_bad_simple_values_are_refused() {
        for item in [
            "5f4101ff", "9fff", "bfff", "ff", "1c", "f818", "81ff", "c0ff",
        ] {
            assert!(
                matches!(check(&hex(item)), Err(DecodeError::Malformed { .. })),
                "{item}"
            );
        }
    }

    #[test]
    fn lengths_beyond_the_input_are_truncation_not_allocation() {
        for item in [
            "5bffffffffffffffff",
            "9bffffffffffffffff",
            "bbffffffffffffffff",
            "8301",
            "62ff",
            "1a0000",
        ] {
            assert_eq!(check(&hex(item)), Err(DecodeError::Truncated), "{item}");
        }
    }

    #[test]
    fn nesting_is_limited_without_recursion() {
        let mut item = vec![0x81; MAX_DEPTH];
        item.push(0x00);
        assert_eq!(check(&item), Ok(()));
        item.pop();
        assert_eq!(check(&item), Err(DecodeError::Truncated));
        // One level more: refused at the head that opens it.
        let mut item = vec![0x81; MAX_DEPTH + 1];
        item.push(0x00);
        assert_eq!(check(&item), Err(DecodeError::TooDeep { at: MAX_DEPTH }));
        // Maps and tags count as levels too.
        let mut item = [0xa1, 0x00].repeat(MAX_DEPTH);
        item.push(0xc1);
        item.push(0x00);
        assert_eq!(
            check(&item),
            Err(DecodeError::TooDeep { at: 2 * MAX_DEPTH })
        );
        // Going back up frees the levels: siblings are not nested.
        let mut item = vec![0x82];
        item.extend(vec![0x81; MAX_DEPTH - 1]);
        item.push(0x00);
        item.extend(vec![0x81; MAX_DEPTH - 1]);
        item.push(0x00);
        assert_eq!(check(&item), Ok(()));
        let deep = vec![0x81; 1_000_000];
        assert_eq!(check(&deep), Err(DecodeError::TooDeep { at: MAX_DEPTH }));
    }

    /// `check` of the hex string, after removing whitespace.
    fn check_hex(s: &str) -> Result<(), DecodeError> {
        check(&hex(&s.replace(' ', "")))
    }

    fn duplicate_at(at: usize) -> Result<(), DecodeError> {
        Err(DecodeError::DuplicateKey { at })
    }

    #[test]
    fn distinct_keys_pass() {
        for item in [
            "a0",
            "a1 00 00",
            "a2 00 00 01 00",
            "a2 01 00 00 00",
            "a3 00 00 20 00 6130 00",
            "a2 1840 00 1841 00",
            "a2 6161 00 6162 00",
            "a2 6161 00 4161 00",
            "a2 8100 00 8101 00",
            "a2 8100 00 a10000 00",
            "a2 f93c00 00 fa3f800000 00",
            "82 a1 00 00 a1 00 00",
            "a2 00 a1 00 00 01 a1 00 00",
        ] {
            assert_eq!(check_hex(item), Ok(()), "{item}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_where_the_second_is() {
        for (item, at) in [
            ("a2 01 05 01 06", 3),
            ("a3 00 00 01 00 00 01", 5),
            // A small integer in a longer form is the same key.
            ("a2 01 00 1801 00", 3),
            ("a2 190001 00 01 00", 5),
            // Larger integers, negative integers.
            ("a2 1903e8 00 1903e8 00", 5),
            ("a2 1840 00 1a00000040 00", 4),
            ("a2 20 00 20 00", 3),
            ("a2 3903e7 00 3903e7 00", 5),
            // Text, bytes, arrays, tags and floats as keys: by their bytes.
            ("a2 6161 00 6161 00", 4),
            ("a2 4161 00 4161 00", 4),
            ("a2 820102 00 820102 00", 5),
            ("a2 c100 00 c100 00", 4),
            ("a2 f93c00 00 f93c00 00", 5),
            // In a map value, in an array, under an unknown key.
            ("a2 00 a2 07 00 07 01 01 00", 5),
            ("83 00 01 a2 6178 00 6178 00", 7),
            ("a2 00 01 1863 a1 00 82 a2 6161 00 6161 01 00", 12),
            // Deep inside nested arrays.
            ("81 81 81 81 a2 00 00 00 00", 7),
        ] {
            assert_eq!(check_hex(item), duplicate_at(at), "{item}");
        }
    }

    #[test]
    fn the_earliest_repeated_key_is_named() {
        // The inner map's repeat comes first in the input.
        assert_eq!(
            check_hex("a3 00 a2 05 00 05 00 01 00 00 00"),
            duplicate_at(5)
        );
        // The outer map's repeat comes first.
        assert_eq!(
            check_hex("a3 00 00 00 00 01 a2 05 00 05 00"),
            duplicate_at(3)
        );
        // A text key repeated before a small integer is.
        assert_eq!(check_hex("a4 6161 00 6161 00 01 00 01 00"), duplicate_at(4));
        assert_eq!(check_hex("a4 01 00 01 00 6161 00 6161 00"), duplicate_at(3));
    }

    #[test]
    fn well_formedness_errors_come_first() {
        assert_eq!(
            check_hex("a2 00 00 00 00 00"),
            Err(DecodeError::TrailingBytes { at: 5 })
        );
        assert_eq!(check_hex("a3 00 00 00 00 00"), Err(DecodeError::Truncated));
        assert_eq!(
            check_hex("82 a2 00 00 00 00 ff"),
            Err(DecodeError::Malformed { at: 6 })
        );
    }

    /// A map of `keys`, each with the value 0.
    fn map_of(keys: &[Vec<u8>]) -> Vec<u8> {
        let mut map = vec![0xb9];
        map.extend_from_slice(&u16::try_from(keys.len()).unwrap_or(0).to_be_bytes());
        for key in keys {
            map.extend_from_slice(key);
            map.push(0x00);
        }
        map
    }

    /// 1000 distinct keys made by `make`, for every kind of key a long map
    /// may have.
    fn key_sets() -> Vec<(&'static str, Vec<Vec<u8>>)> {
        let n = 0u16..1000;
        vec![
            (
                "uint",
                n.clone()
                    .map(|i| [&[0x19][..], &(i + 64).to_be_bytes()].concat())
                    .collect(),
            ),
            (
                "nint",
                n.clone()
                    .map(|i| [&[0x39][..], &i.to_be_bytes()].concat())
                    .collect(),
            ),
            (
                "text",
                n.clone()
                    .map(|i| [&[0x62][..], &i.to_be_bytes()].concat())
                    .collect(),
            ),
            (
                "long text",
                n.map(|i| [&[0x6a][..], b"prefix..", &i.to_be_bytes()].concat())
                    .collect(),
            ),
        ]
    }

    #[test]
    fn repeats_far_apart_are_found() {
        for (name, mut keys) in key_sets() {
            let map = map_of(&keys);
            assert_eq!(check(&map), Ok(()), "{name}");
            // The first key again as the last one.
            let last = keys.len() - 1;
            keys[last] = keys[0].clone();
            let map = map_of(&keys);
            let at = map.len() - 1 - keys[0].len();
            assert_eq!(check(&map), duplicate_at(at), "{name}");
            // With small integer keys around them.
            let mut mixed = keys.clone();
            mixed.insert(0, vec![0x00]);
            mixed.insert(500, vec![0x01]);
            let map = map_of(&mixed);
            let at = map.len() - 1 - keys[0].len();
            assert_eq!(check(&map), duplicate_at(at), "{name}");
        }
        // All 64 small integers, then the first again.
        let mut keys: Vec<Vec<u8>> = (0u8..64)
            .map(|i| if i < 24 { vec![i] } else { vec![0x18, i] })
            .collect();
        assert_eq!(check(&map_of(&keys)), Ok(()));
        keys.push(vec![0x00]);
        let map = map_of(&keys);
        assert_eq!(check(&map), duplicate_at(map.len() - 2));
    }

    /// Inputs of at most `MAX_FRAME_LEN` bytes that make the check work
    /// hardest: long maps of keys that are not small integers, and maps of
    /// two pairs nested as deep as the length allows.
    fn worst_cases() -> Vec<(&'static str, Vec<u8>)> {
        let max = crate::frame::MAX_FRAME_LEN;
        let mut cases = Vec::new();
        for (name, keys) in key_sets() {
            let per_pair = keys[0].len() + 1;
            let fit = (max - 3) / per_pair;
            let keys: Vec<Vec<u8>> = keys.into_iter().cycle().take(fit).collect();
            // Past 1000 the keys repeat: keep them distinct.
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .enumerate()
                .map(|(i, mut k)| {
                    if i >= 1000 {
                        let len = k.len();
                        k[len - 2] ^= 0x80;
                    }
                    k
                })
                .collect();
            cases.push((name, map_of(&keys)));
        }
        // {0: {0: ... {0: <a wide map>, 1: 0} ..., 1: 0}, 1: 0}: every
        // level walks the wide map at the bottom again.
        let levels = MAX_DEPTH - 1;
        let wide = (max - 4 * levels - 3) / 4;
        let mut chain = [0xa2, 0x00].repeat(levels);
        let wide = u16::try_from(wide).expect("a frame's worth of pairs");
        chain.push(0xb9);
        chain.extend(wide.to_be_bytes());
        for key in 0..wide {
            chain.push(0x19);
            chain.extend(key.to_be_bytes());
            chain.push(0x00);
        }
        chain.extend([0x01, 0x00].repeat(levels));
        cases.push(("nested maps over a wide one", chain));
        cases
    }

    /// The worst cases are accepted: they are valid, only costly. Their
    /// cost is measured by `cargo bench -p wasmbed-protocol --bench codec`
    /// (group `hostile`).
    #[test]
    fn worst_cases_pass() {
        for (name, input) in worst_cases() {
            assert!(input.len() <= crate::frame::MAX_FRAME_LEN, "{name}");
            assert_eq!(check(&input), Ok(()), "{name}");
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert_eq!(
            check(&hex("0000")),
            Err(DecodeError::TrailingBytes { at: 1 })
        );
    }
}
