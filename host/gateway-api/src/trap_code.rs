//! Trap codes in JSON: the variant's name (`OutOfFuel`), or `Unknown(N)`
//! for a code this build does not know, as the gateway has always
//! written them.

use std::fmt;

use wasmbed_protocol::TrapCode;

/// The JSON name of a trap code.
pub fn name(code: TrapCode) -> String {
    let known = match code {
        TrapCode::Unreachable => "Unreachable",
        TrapCode::MemoryOutOfBounds => "MemoryOutOfBounds",
        TrapCode::TableOutOfBounds => "TableOutOfBounds",
        TrapCode::IndirectCallToNull => "IndirectCallToNull",
        TrapCode::BadSignature => "BadSignature",
        TrapCode::IntegerOverflow => "IntegerOverflow",
        TrapCode::IntegerDivisionByZero => "IntegerDivisionByZero",
        TrapCode::BadConversionToInteger => "BadConversionToInteger",
        TrapCode::StackOverflow => "StackOverflow",
        TrapCode::OutOfFuel => "OutOfFuel",
        TrapCode::HostError => "HostError",
        TrapCode::MemoryLimit => "MemoryLimit",
        TrapCode::DeviceReset => "DeviceReset",
        TrapCode::Unknown(code) => return format!("Unknown({code})"),
    };
    known.to_owned()
}

/// A text that names no trap code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTrapName(pub String);

impl fmt::Display for UnknownTrapName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a trap code: {:?}", self.0)
    }
}

impl std::error::Error for UnknownTrapName {}

/// The trap code named `text` ([`name`]).
pub fn parse(text: &str) -> Result<TrapCode, UnknownTrapName> {
    if let Some(known) = TrapCode::ALL.iter().find(|c| name(**c) == text) {
        return Ok(*known);
    }
    text.strip_prefix("Unknown(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|digits| digits.parse::<u16>().ok())
        .map(TrapCode::from_code)
        .ok_or_else(|| UnknownTrapName(text.to_owned()))
}

/// `#[serde(with = "trap_code::optional")]` for an `Option<TrapCode>`.
pub mod optional {
    use serde::{Deserialize, Deserializer, Serializer};
    use wasmbed_protocol::TrapCode;

    /// Writes the code's [`name`](super::name), or `null`.
    pub fn serialize<S: Serializer>(
        code: &Option<TrapCode>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match code {
            Some(code) => serializer.serialize_str(&super::name(*code)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a code's name, or `null`; any other text is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<TrapCode>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| super::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_the_gateway_always_wrote() {
        // The gateway used to write `format!("{code:?}")`.
        let mut codes = TrapCode::ALL.to_vec();
        codes.push(TrapCode::from_code(77));
        for code in codes {
            assert_eq!(name(code), format!("{code:?}"));
            assert_eq!(parse(&name(code)), Ok(code));
        }
    }

    #[test]
    fn other_texts_are_refused() {
        for text in ["", "outoffuel", "Unknown(x)", "Unknown(70000)", "Unknown(9"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
