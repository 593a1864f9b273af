//! The WebAssembly runtime C supplies, behind the agent's `Runtime` trait.

use alloc::vec::Vec;
use core::ffi::{CStr, c_char, c_void};

use wasmbed_agent::runtime::{Invocation, LogBuffer, Runtime, ValueKind, host_function};
use wasmbed_protocol::{DeployFailure, Limits, MAX_RESULTS, Outcome, RuntimeKind, TrapCode, Value};
use wasmbed_protocol_ffi::{WbLimits, WbValue};

use crate::agent::Clock;

/// A WebAssembly runtime (WAMR on Zephyr), as a table of functions.
///
/// `validate` answers whether a module can run under `limits` before it is
/// installed: valid WebAssembly; imports only functions of the host API
/// (ask `wb_host_import_allowed`); the entry `limits->entry` exported with
/// parameters of `limits->args`' types and at most `WB_MAX_RESULTS`
/// results; memory within `limits->memory_pages`. On refusal it returns
/// false and sets `*failure` to a `wb_deploy_failure`.
///
/// `invoke` instantiates the module and calls its entry once with
/// `limits->args`, within `limits->fuel` (instructions) and
/// `limits->memory_pages`, and reports what happened through the
/// `wb_invocation_*` functions on `invocation`, valid during the call. The
/// module buffer is writable and lives until `invoke` returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbRuntime {
    pub ctx: *mut c_void,
    /// A `wb_runtime_kind`.
    pub kind: u8,
    /// The runtime's version, NUL-terminated, living as long as the agent.
    pub version: *const c_char,
    pub validate: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            module: *const u8,
            len: usize,
            limits: *const WbLimits,
            failure: *mut u16,
        ) -> bool,
    >,
    pub invoke: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            module: *mut u8,
            len: usize,
            limits: *const WbLimits,
            invocation: *mut WbInvocation,
        ),
    >,
}

/// What one call of `invoke` reports. Opaque to C.
#[derive(Debug, Default)]
pub struct WbInvocation {
    returned: heapless::Vec<Value, MAX_RESULTS>,
    reported: heapless::Vec<Value, MAX_RESULTS>,
    /// A value arrived that did not fit: the invocation traps `HostError`.
    overflowed: bool,
    logs: LogBuffer,
    trap: Option<TrapCode>,
    fuel_used: u64,
}

impl WbInvocation {
    fn outcome(&self) -> Outcome {
        if let Some(trap) = self.trap {
            return Outcome::Trapped(trap);
        }
        let mut values = self.returned.clone();
        let all_fit = !self.overflowed && values.extend_from_slice(&self.reported).is_ok();
        if all_fit {
            Outcome::Returned(values)
        } else {
            Outcome::Trapped(TrapCode::HostError)
        }
    }
}

/// Adds a value the entry point returned, in order.
///
/// # Safety
/// `invocation` is the pointer `invoke` received, during that call, and
/// `value` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_invocation_return(
    invocation: *mut WbInvocation,
    value: *const WbValue,
) {
    // SAFETY: the caller passes pointers valid for this call.
    let (Some(invocation), Some(value)) =
        (unsafe { invocation.as_mut() }, unsafe { value.as_ref() })
    else {
        return;
    };
    match value.message() {
        Ok(value) if invocation.returned.push(value).is_ok() => {}
        _ => invocation.overflowed = true,
    }
}

/// Adds a value the module reported with `wasmbed.report_*`. Returns false
/// when no more fit (entry results and reports share `WB_MAX_RESULTS`
/// places): the runtime should then trap the call as `HOST_ERROR`, as the
/// bare-metal runtime does.
///
/// # Safety
/// As `wb_invocation_return`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_invocation_report(
    invocation: *mut WbInvocation,
    value: *const WbValue,
) -> bool {
    // SAFETY: the caller passes pointers valid for this call.
    let (Some(invocation), Some(value)) =
        (unsafe { invocation.as_mut() }, unsafe { value.as_ref() })
    else {
        return false;
    };
    match value.message() {
        Ok(value) if invocation.reported.push(value).is_ok() => true,
        _ => {
            invocation.overflowed = true;
            false
        }
    }
}

/// Adds a line the module logged with `wasmbed.log`: at most
/// `WB_LOG_LINE_LEN` bytes are kept (cut at a character boundary, invalid
/// UTF-8 replaced), at most `WB_MAX_LOG_LINES` lines.
///
/// # Safety
/// `invocation` as above; `text` is valid for `len` bytes (or `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_invocation_log(
    invocation: *mut WbInvocation,
    text: *const c_char,
    len: usize,
) {
    // SAFETY: the caller passes a valid invocation.
    let Some(invocation) = (unsafe { invocation.as_mut() }) else {
        return;
    };
    let bytes = if len == 0 || text.is_null() {
        &[][..]
    } else {
        // SAFETY: the caller guarantees `len` readable bytes at `text`.
        unsafe { core::slice::from_raw_parts(text.cast::<u8>(), len) }
    };
    let bytes = &bytes[..bytes.len().min(wasmbed_agent::runtime::LOG_READ_LEN)];
    match core::str::from_utf8(bytes) {
        Ok(line) => invocation.logs.push(line),
        Err(e) => {
            // Keep the valid prefix and mark the cut, as a lossy decode would.
            let valid = core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let mut line: heapless::String<{ wasmbed_agent::runtime::LOG_READ_LEN + 3 }> =
                heapless::String::new();
            let _ = line.push_str(valid);
            let _ = line.push('\u{FFFD}');
            invocation.logs.push(&line);
        }
    }
}

/// Ends the invocation with a trap (a `wb_trap_code`); values reported so
/// far are dropped, as the bare-metal runtime drops them.
///
/// # Safety
/// As `wb_invocation_return`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_invocation_trap(invocation: *mut WbInvocation, trap_code: u16) {
    // SAFETY: the caller passes a valid invocation.
    if let Some(invocation) = unsafe { invocation.as_mut() } {
        invocation
            .trap
            .get_or_insert(TrapCode::from_code(trap_code));
    }
}

/// Sets the fuel (instructions) the invocation used.
///
/// # Safety
/// As `wb_invocation_return`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_invocation_fuel_used(invocation: *mut WbInvocation, fuel: u64) {
    // SAFETY: the caller passes a valid invocation.
    if let Some(invocation) = unsafe { invocation.as_mut() } {
        invocation.fuel_used = fuel;
    }
}

/// Whether `module`.`name` with these parameter and result types (each a
/// `wb_value_kind`) is a function of the host API (`docs/host-api.md`):
/// the one list every runtime checks imports against.
///
/// # Safety
/// `module` and `name` are NUL-terminated strings; `params` and `results`
/// are valid for their counts (or the count is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_host_import_allowed(
    module: *const c_char,
    name: *const c_char,
    params: *const u8,
    param_count: usize,
    results: *const u8,
    result_count: usize,
) -> bool {
    if module.is_null() || name.is_null() {
        return false;
    }
    // SAFETY: the caller passes NUL-terminated strings.
    let (module, name) = unsafe { (CStr::from_ptr(module), CStr::from_ptr(name)) };
    let (Ok(module), Ok(name)) = (module.to_str(), name.to_str()) else {
        return false;
    };
    let Some(function) = host_function(module, name) else {
        return false;
    };
    // SAFETY: the caller guarantees the counts.
    let (params, results) = unsafe { (kinds(params, param_count), kinds(results, result_count)) };
    params.is_some_and(|p| p.eq(function.params.iter().copied()))
        && results.is_some_and(|r| r.eq(function.results.iter().copied()))
}

/// `count` `wb_value_kind` codes as kinds; `None` if one is unknown.
///
/// # Safety
/// `codes` is valid for `count` bytes, or `count` is 0.
unsafe fn kinds(codes: *const u8, count: usize) -> Option<impl Iterator<Item = ValueKind> + Clone> {
    let codes: &[u8] = if count == 0 {
        &[]
    } else if codes.is_null() {
        return None;
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { core::slice::from_raw_parts(codes, count) }
    };
    let kind = |code: u8| match code {
        0 => Some(ValueKind::I32),
        1 => Some(ValueKind::I64),
        2 => Some(ValueKind::F32),
        3 => Some(ValueKind::F64),
        _ => None,
    };
    codes
        .iter()
        .all(|c| kind(*c).is_some())
        .then(|| codes.iter().filter_map(move |c| kind(*c)))
}

/// [`WbRuntime`], checked, as the agent's runtime.
#[derive(Debug)]
pub(crate) struct CRuntime {
    ctx: *mut c_void,
    kind: RuntimeKind,
    version: &'static str,
    validate:
        unsafe extern "C" fn(*mut c_void, *const u8, usize, *const WbLimits, *mut u16) -> bool,
    invoke: unsafe extern "C" fn(*mut c_void, *mut u8, usize, *const WbLimits, *mut WbInvocation),
    clock: Clock,
}

impl CRuntime {
    /// # Safety
    /// `runtime.version` is NULL or a NUL-terminated string that lives as
    /// long as the agent.
    pub(crate) unsafe fn new(runtime: &WbRuntime, clock: Clock) -> Option<CRuntime> {
        let version = if runtime.version.is_null() {
            ""
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { CStr::from_ptr(runtime.version) }.to_str().ok()?
        };
        Some(CRuntime {
            ctx: runtime.ctx,
            kind: RuntimeKind::from_code(u16::from(runtime.kind)),
            version,
            validate: runtime.validate?,
            invoke: runtime.invoke?,
            clock,
        })
    }
}

impl Runtime for CRuntime {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn version(&self) -> &str {
        self.version
    }

    fn validate(&mut self, module: &[u8], limits: &Limits) -> Result<(), DeployFailure> {
        let limits = WbLimits::from_limits(limits);
        let mut failure = DeployFailure::InvalidModule.code();
        // SAFETY: the pointers are valid for the call; the callback writes
        // one u16 to `failure`.
        let ok = unsafe {
            (self.validate)(
                self.ctx,
                module.as_ptr(),
                module.len(),
                &limits,
                &mut failure,
            )
        };
        if ok {
            Ok(())
        } else {
            Err(DeployFailure::from_code(failure))
        }
    }

    fn invoke(&mut self, mut module: Vec<u8>, limits: &Limits) -> Invocation {
        let c_limits = WbLimits::from_limits(limits);
        let mut invocation = WbInvocation::default();
        let started = self.clock.now_us();
        // SAFETY: the module buffer, the limits and the invocation are valid
        // and exclusively the callee's for the duration of the call.
        unsafe {
            (self.invoke)(
                self.ctx,
                module.as_mut_ptr(),
                module.len(),
                &c_limits,
                &mut invocation,
            )
        };
        let duration_us = self.clock.now_us().saturating_sub(started);
        Invocation {
            outcome: invocation.outcome(),
            fuel_used: invocation.fuel_used.min(limits.fuel),
            duration_us,
            logs: invocation.logs,
        }
    }
}
