//! An application's state on its device as its heartbeat reported it, in
//! JSON: `installed`, `running`, `stopped`, `failed`, or `unknown(N)` for
//! a code this build does not know, as the gateway has always written it.

use serde::{Deserialize, Deserializer, Serializer};
use wasmbed_protocol::AppState;

/// The JSON name of an application state.
pub fn name(state: AppState) -> String {
    let known = match state {
        AppState::Installed => "installed",
        AppState::Running => "running",
        AppState::Stopped => "stopped",
        AppState::Failed => "failed",
        AppState::Unknown(code) => return format!("unknown({code})"),
    };
    known.to_owned()
}

/// The state named `text` ([`name`]); `None` for any other text.
pub fn parse(text: &str) -> Option<AppState> {
    if let Some(known) = AppState::ALL.iter().find(|s| name(**s) == text) {
        return Some(*known);
    }
    text.strip_prefix("unknown(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|digits| digits.parse::<u16>().ok())
        .map(AppState::from_code)
}

/// `#[serde(with = "app_state")]`: writes the state's [`name`].
pub fn serialize<S: Serializer>(state: &AppState, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&name(*state))
}

/// `#[serde(with = "app_state")]`: reads a state's name; any other text is
/// an error.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AppState, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("not an application state: {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_the_gateway_always_wrote() {
        // The gateway used to write `format!("{:?}", state).to_lowercase()`.
        let mut states = AppState::ALL.to_vec();
        states.push(AppState::from_code(9));
        for state in states {
            assert_eq!(name(state), format!("{state:?}").to_lowercase());
            assert_eq!(parse(&name(state)), Some(state));
        }
        for text in ["", "Running", "unknown(x)", "asleep"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
