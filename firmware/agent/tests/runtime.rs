//! The wasmi runtime against small WAT modules.

// Test sizes and offsets are small; truncating casts cannot happen.
#![allow(clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmbed_agent::runtime::{Runtime, WasmiConfig, WasmiRuntime};
use wasmbed_protocol::{
    DeployFailure, LOG_LINE_LEN, Limits, MAX_LOG_LINES, Outcome, TrapCode, Value,
};

/// A clock the test moves by hand; the runtime gets a clone.
#[derive(Clone, Default)]
struct TestClock(Arc<AtomicU64>);

impl wasmbed_agent::runtime::Clock for TestClock {
    fn now_us(&self) -> u64 {
        // Every reading advances time a little, so durations are non-zero.
        self.0.fetch_add(250, Ordering::Relaxed)
    }
}

fn runtime() -> WasmiRuntime<TestClock> {
    WasmiRuntime::new(WasmiConfig::default(), TestClock::default())
}

fn limits(entry: &str, args: &[Value]) -> Limits {
    Limits {
        fuel: 100_000,
        memory_pages: 1,
        entry: entry.try_into().expect("short name"),
        args: heapless::Vec::from_slice(args).expect("few args"),
    }
}

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("valid WAT")
}

fn run(wat: &str, limits: &Limits) -> wasmbed_agent::runtime::Invocation {
    let module = wasm(wat);
    let mut rt = runtime();
    rt.validate(&module, limits).expect("valid module");
    rt.invoke(module.to_vec(), limits)
}

fn returned(values: &[Value]) -> Outcome {
    Outcome::Returned(heapless::Vec::from_slice(values).expect("few values"))
}

#[test]
fn returns_values_computed_from_arguments() {
    let limits = limits("main", &[Value::I32(20), Value::I64(22)]);
    let result = run(
        r#"(module (func (export "main") (param i32 i64) (result i64 f64)
              local.get 0 i64.extend_i32_s local.get 1 i64.add
              f64.const 1.5))"#,
        &limits,
    );
    assert_eq!(result.outcome, returned(&[Value::I64(42), Value::F64(1.5)]));
    assert!(result.fuel_used > 0 && result.fuel_used < limits.fuel);
    assert!(result.duration_us > 0);
}

#[test]
fn traps_map_to_protocol_codes() {
    let cases = [
        ("unreachable", TrapCode::Unreachable),
        (
            "i32.const 1 i32.const 0 i32.div_s drop",
            TrapCode::IntegerDivisionByZero,
        ),
        ("i32.const -1 i32.load drop", TrapCode::MemoryOutOfBounds),
        ("call $self", TrapCode::StackOverflow),
    ];
    for (body, code) in cases {
        let wat = format!(r#"(module (memory 1) (func $self (export "main") {body}))"#);
        let result = run(&wat, &limits("main", &[]));
        assert_eq!(result.outcome, Outcome::Trapped(code), "{body}");
    }
}

#[test]
fn a_runaway_loop_is_stopped_by_its_fuel() {
    let limits = limits("main", &[]);
    let result = run(
        r#"(module (func (export "main") (loop $forever br $forever)))"#,
        &limits,
    );
    assert_eq!(result.outcome, Outcome::Trapped(TrapCode::OutOfFuel));
    assert_eq!(result.fuel_used, limits.fuel);
}

#[test]
fn memory_cannot_grow_beyond_the_limit() {
    let wat = r#"(module (memory (export "memory") 1)
        (func (export "main") (param i32) (result i32) local.get 0 memory.grow))"#;
    // One more page than the limit allows: memory.grow returns -1.
    let result = run(
        wat,
        &Limits {
            memory_pages: 2,
            ..limits("main", &[Value::I32(2)])
        },
    );
    assert_eq!(result.outcome, returned(&[Value::I32(-1)]));
    // Within the limit it succeeds and returns the old size.
    let result = run(
        wat,
        &Limits {
            memory_pages: 2,
            ..limits("main", &[Value::I32(1)])
        },
    );
    assert_eq!(result.outcome, returned(&[Value::I32(1)]));
}

#[test]
fn a_module_needing_more_memory_than_allowed_is_refused() {
    let module = wasm(r#"(module (memory (export "memory") 3) (func (export "main")))"#);
    assert_eq!(
        runtime().validate(&module, &limits("main", &[])),
        Err(DeployFailure::OutOfMemory)
    );
    // A memory that is not exported is caught when the module is instantiated.
    let module = wasm(r#"(module (memory 3) (func (export "main")))"#);
    let limits = limits("main", &[]);
    assert_eq!(runtime().validate(&module, &limits), Ok(()));
    assert_eq!(
        runtime().invoke(module.to_vec(), &limits).outcome,
        Outcome::Trapped(TrapCode::MemoryLimit)
    );
}

#[test]
fn log_lines_are_captured_cut_and_counted() {
    let long = "x".repeat(LOG_LINE_LEN + 50);
    let wat = format!(
        r#"(module
          (import "wasmbed" "log" (func $log (param i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "hello")
          (data (i32.const 16) "{long}")
          (func (export "main") (param $n i32)
            (call $log (i32.const 0) (i32.const 5))
            (call $log (i32.const 16) (i32.const {len}))
            (loop $more
              (call $log (i32.const 0) (i32.const 5))
              (local.set $n (i32.sub (local.get $n) (i32.const 1)))
              (br_if $more (local.get $n)))))"#,
        len = long.len()
    );
    // Two lines and then MAX_LOG_LINES more: some are dropped.
    let result = run(&wat, &limits("main", &[Value::I32(MAX_LOG_LINES as i32)]));
    assert_eq!(result.outcome, returned(&[]));
    assert_eq!(result.logs.lines.len(), MAX_LOG_LINES);
    assert_eq!(result.logs.lines[0].as_str(), "hello");
    assert_eq!(result.logs.lines[1].as_str(), &long[..LOG_LINE_LEN]);
    assert!(result.logs.truncated);

    // Exactly as many as fit: nothing is dropped.
    let result = run(
        &wat,
        &limits("main", &[Value::I32(MAX_LOG_LINES as i32 - 2)]),
    );
    assert_eq!(result.logs.lines.len(), MAX_LOG_LINES);
    assert!(!result.logs.truncated);
}

#[test]
fn a_log_outside_memory_traps() {
    let result = run(
        r#"(module
          (import "wasmbed" "log" (func $log (param i32 i32)))
          (memory (export "memory") 1)
          (func (export "main") (call $log (i32.const 65530) (i32.const 10))))"#,
        &limits("main", &[]),
    );
    assert_eq!(
        result.outcome,
        Outcome::Trapped(TrapCode::MemoryOutOfBounds)
    );
}

#[test]
fn reported_values_follow_returned_ones_and_the_clock_advances() {
    let result = run(
        r#"(module
          (import "wasmbed" "report_i32" (func $ri32 (param i32)))
          (import "wasmbed" "report_f32" (func $rf32 (param f32)))
          (import "wasmbed" "clock_ms" (func $clock (result i64)))
          (func (export "main") (result i64)
            (call $ri32 (i32.const 7))
            (call $rf32 (f32.const 0.5))
            (call $clock)))"#,
        &limits("main", &[]),
    );
    let Outcome::Returned(values) = result.outcome else {
        panic!("trapped: {:?}", result.outcome)
    };
    assert!(matches!(values[0], Value::I64(ms) if ms >= 0));
    assert_eq!(&values[1..], &[Value::I32(7), Value::F32(0.5)]);
}

#[test]
fn reporting_more_values_than_fit_traps() {
    let result = run(
        r#"(module
          (import "wasmbed" "report_i64" (func $r (param i64)))
          (func (export "main") (result i32)
            (call $r (i64.const 1)) (call $r (i64.const 2)) (call $r (i64.const 3))
            (call $r (i64.const 4))
            i32.const 0))"#,
        &limits("main", &[]),
    );
    assert_eq!(result.outcome, Outcome::Trapped(TrapCode::HostError));
}

#[test]
fn imports_outside_the_host_api_are_refused() {
    let cases = [
        r#"(module (import "env" "foo" (func)) (func (export "main")))"#,
        r#"(module (import "wasmbed" "exit" (func)) (func (export "main")))"#,
        // The right name with the wrong signature.
        r#"(module (import "wasmbed" "clock_ms" (func (result i32))) (func (export "main")))"#,
        r#"(module (import "wasmbed" "memory" (memory 1)) (func (export "main")))"#,
        // `log` reads from an exported memory; without one it cannot work.
        r#"(module (import "wasmbed" "log" (func (param i32 i32))) (func (export "main")))"#,
    ];
    for wat in cases {
        assert_eq!(
            runtime().validate(&wasm(wat), &limits("main", &[])),
            Err(DeployFailure::ImportNotAllowed),
            "{wat}"
        );
    }
}

#[test]
fn bad_bytes_and_bad_entry_points_are_refused() {
    let mut rt = runtime();
    let none = limits("main", &[]);
    assert_eq!(
        rt.validate(b"\0asm\x01\0\0\0garbage", &none),
        Err(DeployFailure::InvalidModule)
    );
    assert_eq!(
        rt.validate(b"not wasm", &none),
        Err(DeployFailure::InvalidModule)
    );
    let module = wasm(
        r#"(module (func (export "main") (param i32)) (global (export "g") i32 (i32.const 0)))"#,
    );
    assert_eq!(
        rt.validate(&module, &limits("start", &[])),
        Err(DeployFailure::BadEntryPoint)
    );
    assert_eq!(
        rt.validate(&module, &none),
        Err(DeployFailure::BadEntryPoint)
    );
    assert_eq!(
        rt.validate(&module, &limits("main", &[Value::I64(1)])),
        Err(DeployFailure::BadEntryPoint)
    );
    assert_eq!(
        rt.validate(&module, &limits("g", &[])),
        Err(DeployFailure::BadEntryPoint)
    );
    assert_eq!(
        rt.validate(&module, &limits("main", &[Value::I32(1)])),
        Ok(())
    );
    let five = wasm(
        r#"(module (func (export "main") (result i32 i32 i32 i32 i32)
        i32.const 0 i32.const 0 i32.const 0 i32.const 0 i32.const 0))"#,
    );
    assert_eq!(rt.validate(&five, &none), Err(DeployFailure::BadEntryPoint));
}

#[test]
fn a_start_function_runs_within_the_same_fuel() {
    let limits = limits("main", &[]);
    let result = run(
        r#"(module (func $spin (loop $l br $l)) (start $spin) (func (export "main")))"#,
        &limits,
    );
    assert_eq!(result.outcome, Outcome::Trapped(TrapCode::OutOfFuel));
    assert_eq!(result.fuel_used, limits.fuel);
}

/// The examples of `docs/host-api.md` do what the document says.
#[test]
fn the_documented_examples_run() {
    let doc = include_str!("../../../docs/host-api.md");
    let start = doc.find("```wat\n").expect("a WAT example") + "```wat\n".len();
    let wat = &doc[start..start + doc[start..].find("```").expect("closed")];
    // Built from the document's Rust example with its `.cargo/config.toml`.
    let rust = include_bytes!("fixtures/rust_example.wasm");
    for (module, entry) in [(wasm(wat), "main"), (rust.to_vec(), "run")] {
        let limits = limits(entry, &[Value::I32(21)]);
        let mut rt = runtime();
        rt.validate(&module, &limits).expect("valid");
        let result = rt.invoke(module.to_vec(), &limits);
        let Outcome::Returned(values) = &result.outcome else {
            panic!("{entry}: {:?}", result.outcome)
        };
        assert_eq!(values[0], Value::I32(42), "{entry}");
        assert!(matches!(values[1], Value::I64(ms) if ms >= 0), "{entry}");
        assert_eq!(result.logs.lines[0].as_str(), "hello from wasm", "{entry}");
    }
}

#[test]
fn one_memory_and_one_table_at_most() {
    let two_memories = wasm(r#"(module (memory 1) (memory 1) (func (export "main")))"#);
    assert_eq!(
        runtime().validate(&two_memories, &limits("main", &[])),
        Err(DeployFailure::InvalidModule)
    );
    let two_tables = wasm(r#"(module (table 1 funcref) (table 1 funcref) (func (export "main")))"#);
    let limits = limits("main", &[]);
    let mut rt = runtime();
    assert_eq!(rt.validate(&two_tables, &limits), Ok(()));
    assert_eq!(
        rt.invoke(two_tables.to_vec(), &limits).outcome,
        Outcome::Trapped(TrapCode::HostError)
    );
    let big_table = wasm(r#"(module (table 2000 funcref) (func (export "main")))"#);
    assert_eq!(
        rt.invoke(big_table.to_vec(), &limits).outcome,
        Outcome::Trapped(TrapCode::HostError)
    );
}
