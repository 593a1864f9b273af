//! A strict, allocation-free well-formedness check run before decoding.
//!
//! The protocol only ever produces definite lengths. Refusing everything
//! else up front means no decoder ever meets an indefinite-length item
//! (which minicbor's `skip` can only handle by allocating, and not at all
//! without `alloc`), so devices and gateways accept exactly the same
//! frames, and not-well-formed items hidden under unknown keys are refused.

use crate::codec::DecodeError;

/// Checks that `bytes` is exactly one well-formed CBOR item that uses only
/// definite lengths. Iterative: nesting depth costs nothing.
pub(crate) fn check(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut pos = 0usize;
    // Items still to read; each needs at least one byte, so this never
    // exceeds the input length.
    let mut pending: usize = 1;
    while pending > 0 {
        let at = pos;
        let initial = *bytes.get(pos).ok_or(DecodeError::Truncated)?;
        pos += 1;
        // Fast path: small unsigned integers (every map key, most values).
        if initial < 0x18 {
            pending -= 1;
            continue;
        }
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
        pending -= 1;
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
                let items = usize::try_from(argument)
                    .ok()
                    .and_then(|n| n.checked_mul(per_entry))
                    .filter(|n| {
                        pending
                            .checked_add(*n)
                            .is_some_and(|total| total <= remaining)
                    })
                    .ok_or(DecodeError::Truncated)?;
                pending += items;
            }
            6 => pending += 1,
            // Simple values below 32 must use the one-byte form.
            7 if info == 24 && argument < 32 => return Err(DecodeError::Malformed { at }),
            _ => {}
        }
    }
    if pos != bytes.len() {
        return Err(DecodeError::TrailingBytes { at: pos });
    }
    Ok(())
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
    fn deep_nesting_is_checked_without_recursion() {
        let mut item = vec![0x81; 1_000_000];
        item.push(0x00);
        assert_eq!(check(&item), Ok(()));
        item.pop();
        assert_eq!(check(&item), Err(DecodeError::Truncated));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert_eq!(
            check(&hex("0000")),
            Err(DecodeError::TrailingBytes { at: 1 })
        );
    }
}
