//! [`Runtime`] on the `wasmi` interpreter, with fuel metering and a memory
//! limit.

use alloc::string::String;
use alloc::vec::Vec;

use wasmbed_protocol::{DeployFailure, Limits, MAX_RESULTS, Outcome, RuntimeKind, TrapCode, Value};
use wasmi::{Caller, Config, Engine, Error, Linker, Module, ResourceLimiter, Store, Val};
use wasmi_core::LimiterError;

use super::check::{check_compiled, entry_type, validation_config};
use super::{Clock, HOST_MODULE, Invocation, LOG_READ_LEN, LogBuffer, Runtime};

/// Bytes in a WebAssembly page.
const PAGE: usize = 65_536;

/// Interpreter settings that bound what a module costs the device besides
/// its fuel and linear memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WasmiConfig {
    /// Deepest call nesting before the module traps with a stack overflow.
    pub max_recursion_depth: usize,
    /// Largest value stack, in 8-byte cells; each invocation needs at
    /// least `min_stack_height` of them.
    pub max_stack_height: usize,
    pub min_stack_height: usize,
    /// Most table elements (function references) a module may hold.
    pub max_table_elements: usize,
}

impl Default for WasmiConfig {
    /// Sized for a microcontroller: at most 16 KiB of value stack.
    fn default() -> Self {
        WasmiConfig {
            max_recursion_depth: 128,
            max_stack_height: 2048,
            min_stack_height: 256,
            max_table_elements: 1024,
        }
    }
}

/// The `wasmi` interpreter. `C` is the clock behind `wasmbed.clock_ms` and
/// the measured durations.
///
/// Every validation and invocation gets an engine of its own, dropped when
/// it ends: a wasmi `Engine` keeps the code of every module it ever
/// compiled, which on a device that runs deployment after deployment would
/// leak the heap away.
pub struct WasmiRuntime<C: Clock + Clone + 'static> {
    engine_config: Config,
    config: WasmiConfig,
    clock: C,
}

impl<C: Clock + Clone + 'static> core::fmt::Debug for WasmiRuntime<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WasmiRuntime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What host functions see of one invocation.
struct HostState<C> {
    clock: C,
    logs: LogBuffer,
    reports: heapless::Vec<Value, MAX_RESULTS>,
    /// How many values `report_*` may still add.
    report_room: usize,
    limiter: Limiter,
}

struct Limiter {
    max_memory: usize,
    max_table_elements: usize,
    /// A memory growth was refused.
    refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let allowed = desired <= self.max_memory;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

impl<C: Clock + Clone + 'static> WasmiRuntime<C> {
    pub fn new(config: WasmiConfig, clock: C) -> Self {
        // What a module may be is `check_module`'s; what it may cost, ours.
        let mut engine_config = validation_config();
        engine_config
            .consume_fuel(true)
            .set_max_recursion_depth(config.max_recursion_depth)
            .set_min_stack_height(config.min_stack_height)
            .set_max_stack_height(config.max_stack_height)
            .set_max_cached_stacks(1);
        WasmiRuntime {
            engine_config,
            config,
            clock,
        }
    }

    fn compile(&self, module: &[u8]) -> Result<(Engine, Module), Error> {
        let engine = Engine::new(&self.engine_config);
        let module = Module::new(&engine, module)?;
        Ok((engine, module))
    }
}

/// The `wasmbed` host functions (see `docs/host-api.md`).
fn host_api<C: Clock + Clone + 'static>(engine: &Engine) -> Linker<HostState<C>> {
    let mut linker = Linker::new(engine);
    // `func_wrap` only fails for a duplicate name, and the names differ.
    let _ = linker.func_wrap(HOST_MODULE, "log", host_log::<C>);
    let _ = linker.func_wrap(
        HOST_MODULE,
        "clock_ms",
        |caller: Caller<'_, HostState<C>>| {
            let us = caller.data().clock.now_us();
            i64::try_from(us / 1000).unwrap_or(i64::MAX)
        },
    );
    let _ = linker.func_wrap(
        HOST_MODULE,
        "report_i32",
        |caller: Caller<'_, HostState<C>>, v: i32| report(caller, Value::I32(v)),
    );
    let _ = linker.func_wrap(
        HOST_MODULE,
        "report_i64",
        |caller: Caller<'_, HostState<C>>, v: i64| report(caller, Value::I64(v)),
    );
    let _ = linker.func_wrap(
        HOST_MODULE,
        "report_f32",
        |caller: Caller<'_, HostState<C>>, v: f32| report(caller, Value::F32(v)),
    );
    let _ = linker.func_wrap(
        HOST_MODULE,
        "report_f64",
        |caller: Caller<'_, HostState<C>>, v: f64| report(caller, Value::F64(v)),
    );
    linker
}

fn host_log<C>(mut caller: Caller<'_, HostState<C>>, ptr: i32, len: i32) -> Result<(), Error> {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Err(Error::new("wasmbed.log: the module exports no memory"));
    };
    // Pointers are unsigned in WebAssembly.
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    let bytes = memory.data(&caller);
    let Some(line) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
        return Err(Error::from(wasmi::TrapCode::MemoryOutOfBounds));
    };
    let line = &line[..len.min(LOG_READ_LEN)];
    let line = String::from_utf8_lossy(line).into_owned();
    caller.data_mut().logs.push(&line);
    Ok(())
}

fn report<C>(mut caller: Caller<'_, HostState<C>>, value: Value) -> Result<(), Error> {
    let state = caller.data_mut();
    if state.report_room == 0 || state.reports.push(value).is_err() {
        return Err(Error::new("wasmbed.report: too many values"));
    }
    state.report_room -= 1;
    Ok(())
}

fn to_val(value: &Value) -> Val {
    match *value {
        Value::I32(v) => Val::I32(v),
        Value::I64(v) => Val::I64(v),
        Value::F32(v) => Val::F32(v.into()),
        Value::F64(v) => Val::F64(v.into()),
    }
}

fn to_value(val: &Val) -> Option<Value> {
    match val {
        Val::I32(v) => Some(Value::I32(*v)),
        Val::I64(v) => Some(Value::I64(*v)),
        Val::F32(v) => Some(Value::F32((*v).into())),
        Val::F64(v) => Some(Value::F64((*v).into())),
        _ => None,
    }
}

/// The protocol's code for a trap (or another error) that ended a call.
fn trap_code(error: &Error, limiter_refused: bool) -> TrapCode {
    use wasmi::TrapCode as W;
    match error.as_trap_code() {
        Some(W::UnreachableCodeReached) => TrapCode::Unreachable,
        Some(W::MemoryOutOfBounds) => TrapCode::MemoryOutOfBounds,
        Some(W::TableOutOfBounds) => TrapCode::TableOutOfBounds,
        Some(W::IndirectCallToNull) => TrapCode::IndirectCallToNull,
        Some(W::IntegerDivisionByZero) => TrapCode::IntegerDivisionByZero,
        Some(W::IntegerOverflow) => TrapCode::IntegerOverflow,
        Some(W::BadConversionToInteger) => TrapCode::BadConversionToInteger,
        Some(W::StackOverflow) => TrapCode::StackOverflow,
        Some(W::BadSignature) => TrapCode::BadSignature,
        Some(W::OutOfFuel) => TrapCode::OutOfFuel,
        Some(W::GrowthOperationLimited | W::OutOfSystemMemory) => TrapCode::MemoryLimit,
        _ if limiter_refused => TrapCode::MemoryLimit,
        _ => TrapCode::HostError,
    }
}

impl<C: Clock + Clone + 'static> Runtime for WasmiRuntime<C> {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Wasmi
    }

    fn version(&self) -> &str {
        "2.0.0"
    }

    fn validate(&mut self, bytes: &[u8], limits: &Limits) -> Result<(), DeployFailure> {
        // Compiled by the engine that runs it: made from the same
        // `validation_config` as `check_module`'s.
        let (_engine, module) = self
            .compile(bytes)
            .map_err(|_| DeployFailure::InvalidModule)?;
        check_compiled::<DeployFailure>(&module, limits).map(|_| ())
    }

    fn invoke(&mut self, bytes: Vec<u8>, limits: &Limits) -> Invocation {
        let Ok((engine, module)) = self.compile(&bytes) else {
            return Invocation::trapped(TrapCode::HostError);
        };
        // The module keeps what it needs: free the bytes before the linear
        // memory is allocated.
        drop(bytes);
        let Ok(ty) = entry_type::<DeployFailure>(&module, limits) else {
            return Invocation::trapped(TrapCode::BadSignature);
        };
        let state = HostState {
            clock: self.clock.clone(),
            logs: LogBuffer::default(),
            reports: heapless::Vec::new(),
            report_room: MAX_RESULTS - ty.results().len(),
            limiter: Limiter {
                max_memory: usize::from(limits.memory_pages) * PAGE,
                max_table_elements: self.config.max_table_elements,
                refused: false,
            },
        };
        let mut store = Store::new(&engine, state);
        store.limiter(|state| &mut state.limiter);
        // Cannot fail: fuel metering is enabled in `new`.
        let _ = store.set_fuel(limits.fuel);
        let started = self.clock.now_us();

        let args: Vec<Val> = limits.args.iter().map(to_val).collect();
        let mut results: Vec<Val> = ty
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        let call = host_api(&engine)
            .instantiate_and_start(&mut store, &module)
            .and_then(|instance| {
                let func = instance
                    .get_func(&store, &limits.entry)
                    .ok_or_else(|| Error::new("entry point vanished"))?;
                func.call(&mut store, &args, &mut results)
            });

        let duration_us = self.clock.now_us().saturating_sub(started);
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let refused = store.data().limiter.refused;
        let state = store.into_data();
        let outcome = match call {
            Ok(()) => {
                let mut values = heapless::Vec::new();
                for value in results.iter().filter_map(to_value).chain(state.reports) {
                    // Cannot overflow: entry results plus reports stay
                    // within MAX_RESULTS (see `report_room`).
                    let _ = values.push(value);
                }
                Outcome::Returned(values)
            }
            Err(error) => Outcome::Trapped(trap_code(&error, refused)),
        };
        Invocation {
            outcome,
            fuel_used,
            duration_us,
            logs: state.logs,
        }
    }
}
