//! Running modules: the [`Runtime`] trait, what an invocation reports, and
//! the host API's name and signatures shared by every runtime.
//!
//! The host API (module `wasmbed`) is documented in `docs/host-api.md`.

#[cfg(feature = "wasmi")]
mod check;
#[cfg(feature = "wasmi")]
mod wasmi;

#[cfg(feature = "wasmi")]
pub use self::check::{EntryName, ExternKind, ModuleInfo, ModuleRejection, check_module};
#[cfg(feature = "wasmi")]
pub use self::wasmi::{WasmiConfig, WasmiRuntime};

use wasmbed_protocol::{
    DeployFailure, LOG_LINE_LEN, Limits, LogLine, MAX_LOG_LINES, Outcome, RuntimeKind, TrapCode,
    Value,
};

/// The import module of the host API.
pub const HOST_MODULE: &str = "wasmbed";

/// A monotonic clock, in microseconds since an arbitrary start (boot).
pub trait Clock {
    fn now_us(&self) -> u64;
}

impl<F: Fn() -> u64> Clock for F {
    fn now_us(&self) -> u64 {
        self()
    }
}

/// A WebAssembly runtime the agent installs and runs modules with.
pub trait Runtime {
    /// Reported to the gateway in the device's capabilities.
    fn kind(&self) -> RuntimeKind;
    /// Reported to the gateway in the device's capabilities.
    fn version(&self) -> &str;

    /// Checks, before a module is installed, that it can run under
    /// `limits`: valid WebAssembly, imports only from the host API, an
    /// entry point taking `limits.args` and returning at most
    /// [`MAX_RESULTS`](wasmbed_protocol::MAX_RESULTS) numbers, and memory within
    /// `limits.memory_pages`.
    fn validate(&mut self, module: &[u8], limits: &Limits) -> Result<(), DeployFailure>;

    /// Instantiates `module` and calls its entry point once with
    /// `limits.args`, within `limits.fuel` and `limits.memory_pages`.
    fn invoke(&mut self, module: alloc::vec::Vec<u8>, limits: &Limits) -> Invocation;
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Returned values followed by values reported through the host API,
    /// or the trap that ended the invocation.
    pub outcome: Outcome,
    pub fuel_used: u64,
    pub duration_us: u64,
    pub logs: LogBuffer,
}

impl Invocation {
    /// An invocation that trapped before the module ran.
    pub fn trapped(code: TrapCode) -> Invocation {
        Invocation {
            outcome: Outcome::Trapped(code),
            fuel_used: 0,
            duration_us: 0,
            logs: LogBuffer::default(),
        }
    }
}

/// Log lines of one invocation, bounded like the protocol's
/// `ExecutionResult`: at most [`MAX_LOG_LINES`] lines of at most
/// [`LOG_LINE_LEN`] bytes. Longer lines are cut; further lines are dropped
/// and counted in `truncated`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogBuffer {
    pub lines: heapless::Vec<heapless::String<LOG_LINE_LEN>, MAX_LOG_LINES>,
    /// Lines were dropped because there were more than fit.
    pub truncated: bool,
}

impl LogBuffer {
    /// Adds a line, cut to [`LOG_LINE_LEN`] bytes at a character boundary.
    pub fn push(&mut self, line: &str) {
        let mut owned = heapless::String::new();
        // Cannot fail: `truncated` cuts the line to LOG_LINE_LEN bytes.
        let _ = owned.push_str(LogLine::truncated(line).as_str());
        if self.lines.push(owned).is_err() {
            self.truncated = true;
        }
    }

    /// The lines as an `ExecutionResult` carries them.
    pub fn log_lines(&self) -> heapless::Vec<LogLine<'_>, MAX_LOG_LINES> {
        self.lines.iter().map(|l| LogLine::truncated(l)).collect()
    }

    pub fn is_full(&self) -> bool {
        self.lines.is_full()
    }
}

/// A host function of the API, for runtimes to link and validators to
/// check imports against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFunction {
    pub name: &'static str,
    pub params: &'static [ValueKind],
    pub results: &'static [ValueKind],
}

/// The four WebAssembly number types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    I32,
    I64,
    F32,
    F64,
}

impl ValueKind {
    pub const fn of(value: &Value) -> ValueKind {
        match value {
            Value::I32(_) => ValueKind::I32,
            Value::I64(_) => ValueKind::I64,
            Value::F32(_) => ValueKind::F32,
            Value::F64(_) => ValueKind::F64,
        }
    }
}

/// Every function of the host API (see `docs/host-api.md`).
pub const HOST_FUNCTIONS: &[HostFunction] = &[
    HostFunction {
        name: "log",
        params: &[ValueKind::I32, ValueKind::I32],
        results: &[],
    },
    HostFunction {
        name: "clock_ms",
        params: &[],
        results: &[ValueKind::I64],
    },
    HostFunction {
        name: "report_i32",
        params: &[ValueKind::I32],
        results: &[],
    },
    HostFunction {
        name: "report_i64",
        params: &[ValueKind::I64],
        results: &[],
    },
    HostFunction {
        name: "report_f32",
        params: &[ValueKind::F32],
        results: &[],
    },
    HostFunction {
        name: "report_f64",
        params: &[ValueKind::F64],
        results: &[],
    },
];

/// The host function `module.name`, if the API has it.
pub fn host_function(module: &str, name: &str) -> Option<&'static HostFunction> {
    if module != HOST_MODULE {
        return None;
    }
    HOST_FUNCTIONS.iter().find(|f| f.name == name)
}

/// Longest log line read from a module's memory: longer lines are cut to
/// [`LOG_LINE_LEN`] anyway, so only this much is ever looked at.
pub const LOG_READ_LEN: usize = LOG_LINE_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buffer_cuts_long_lines_and_counts_dropped_ones() {
        let mut logs = LogBuffer::default();
        logs.push(&"é".repeat(LOG_LINE_LEN));
        assert_eq!(logs.lines[0].as_str().len(), LOG_LINE_LEN);
        for _ in 1..MAX_LOG_LINES {
            logs.push("x");
        }
        assert!(!logs.truncated && logs.is_full());
        logs.push("dropped");
        assert!(logs.truncated);
        assert_eq!(logs.lines.len(), MAX_LOG_LINES);
    }

    #[test]
    fn only_the_wasmbed_module_is_host_api() {
        assert!(host_function("wasmbed", "log").is_some());
        assert!(host_function("env", "log").is_none());
        assert!(host_function("wasmbed", "fd_write").is_none());
    }
}
