//! `GET /v1/results`: execution results, and WebAssembly values in JSON.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmbed_protocol::{TrapCode, Value};

/// A WebAssembly value in JSON: `{"i32": 5}`, `{"f64": 1.5}`, ...
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueJson {
    /// A 32-bit integer.
    I32(i32),
    /// A 64-bit integer.
    I64(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
}

impl From<ValueJson> for Value {
    fn from(v: ValueJson) -> Value {
        match v {
            ValueJson::I32(x) => Value::I32(x),
            ValueJson::I64(x) => Value::I64(x),
            ValueJson::F32(x) => Value::F32(x),
            ValueJson::F64(x) => Value::F64(x),
        }
    }
}

impl From<Value> for ValueJson {
    fn from(v: Value) -> ValueJson {
        match v {
            Value::I32(x) => ValueJson::I32(x),
            Value::I64(x) => ValueJson::I64(x),
            Value::F32(x) => ValueJson::F32(x),
            Value::F64(x) => ValueJson::F64(x),
        }
    }
}

/// An execution result as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ResultView {
    /// The gateway's id of the deployment that ran.
    pub deployment: u64,
    /// The device's id.
    pub device: String,
    /// Which run of the deployment on the device.
    pub invocation: u32,
    /// Returned values, when the invocation returned.
    pub returned: Option<Vec<ValueJson>>,
    /// The trap, when it trapped (e.g. `OutOfFuel`; see [`crate::trap_code`]).
    #[serde(with = "crate::trap_code::optional")]
    #[schema(value_type = Option<String>)]
    pub trap: Option<TrapCode>,
    /// Fuel the run used.
    pub fuel_used: u64,
    /// How long it ran, in microseconds.
    pub duration_us: u64,
    /// Lines the module logged.
    pub logs: Vec<String>,
    /// Whether the device dropped lines.
    pub logs_truncated: bool,
    /// When the gateway received it (Unix milliseconds).
    pub received_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_json() {
        for json in [
            r#"{"deployment":3,"device":"d","invocation":1,"returned":[{"i32":42},{"f64":1.5}],"trap":null,"fuel_used":10,"duration_us":20,"logs":["hi"],"logs_truncated":false,"received_at_ms":5}"#,
            r#"{"deployment":3,"device":"d","invocation":2,"returned":null,"trap":"OutOfFuel","fuel_used":10,"duration_us":20,"logs":[],"logs_truncated":true,"received_at_ms":6}"#,
            r#"{"deployment":3,"device":"d","invocation":3,"returned":null,"trap":"Unknown(77)","fuel_used":0,"duration_us":0,"logs":[],"logs_truncated":false,"received_at_ms":7}"#,
        ] {
            let view: ResultView = serde_json::from_str(json).expect("decodes");
            assert_eq!(serde_json::to_string(&view).expect("encodes"), json);
        }
    }

    #[test]
    fn a_trap_is_decoded_to_its_code() {
        let json = r#"{"deployment":3,"device":"d","invocation":2,"returned":null,"trap":"DeviceReset","fuel_used":10,"duration_us":20,"logs":[],"logs_truncated":false,"received_at_ms":6}"#;
        let view: ResultView = serde_json::from_str(json).expect("decodes");
        assert_eq!(view.trap, Some(TrapCode::DeviceReset));
        let garbled = json.replace("DeviceReset", "Exploded");
        assert!(serde_json::from_str::<ResultView>(&garbled).is_err());
    }
}
