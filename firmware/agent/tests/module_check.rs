//! `check_module`, the install-time checks the host makes before it accepts
//! a module: what it refuses, the reason it gives, and that a device's
//! runtime refuses exactly the same modules with the matching
//! `DeployFailure`.

use wasmbed_agent::runtime::{
    ExternKind, ModuleInfo, ModuleRejection, Runtime, WasmiConfig, WasmiRuntime, check_module,
};
use wasmbed_protocol::{DeployFailure, Limits, Value};

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

/// The module of `docs/host-api.md`'s example.
fn documented_example() -> Vec<u8> {
    let doc = include_str!("../../../docs/host-api.md");
    let start = doc.find("```wat\n").expect("a WAT example") + "```wat\n".len();
    wasm(&doc[start..start + doc[start..].find("```").expect("closed")])
}

/// The reason `check_module` gives for refusing `module`.
fn reason(module: &[u8], limits: &Limits) -> String {
    match check_module(module, limits) {
        Ok(info) => panic!("accepted: {info:?}"),
        Err(rejection) => rejection.to_string(),
    }
}

/// Refused modules with their limits, the `DeployFailure` a device answers
/// and the reason the host gives.
fn refused() -> Vec<(Vec<u8>, Limits, DeployFailure, &'static str)> {
    let none = limits("main", &[]);
    vec![
        (
            b"not wasm".to_vec(),
            none.clone(),
            DeployFailure::InvalidModule,
            "not valid WebAssembly: it does not start with \\0asm, WebAssembly's magic number",
        ),
        (
            b"\0asm\x01\0\0\0garbage".to_vec(),
            none.clone(),
            DeployFailure::InvalidModule,
            "not valid WebAssembly: ",
        ),
        (
            wasm(r#"(module (func (export "main") (drop (v128.const i64x2 0 0))))"#),
            none.clone(),
            DeployFailure::InvalidModule,
            "uses a WebAssembly feature devices do not enable: ",
        ),
        (
            wasm(r#"(module (memory 1) (memory 1) (func (export "main")))"#),
            none.clone(),
            DeployFailure::InvalidModule,
            "uses a WebAssembly feature devices do not enable: ",
        ),
        (
            wasm(r#"(module (memory i64 1) (func (export "main")))"#),
            none.clone(),
            DeployFailure::InvalidModule,
            "uses a WebAssembly feature devices do not enable: ",
        ),
        (
            wasm(r#"(module (import "env" "foo" (func)) (func (export "main")))"#),
            none.clone(),
            DeployFailure::ImportNotAllowed,
            "imports env.foo, which is not in the host API (docs/host-api.md)",
        ),
        (
            wasm(
                r#"(module (import "wasmbed" "sleep" (func (param i32))) (func (export "main")))"#,
            ),
            none.clone(),
            DeployFailure::ImportNotAllowed,
            "imports wasmbed.sleep, which is not in the host API (docs/host-api.md)",
        ),
        (
            wasm(r#"(module (import "wasmbed" "memory" (memory 1)) (func (export "main")))"#),
            none.clone(),
            DeployFailure::ImportNotAllowed,
            "imports the memory wasmbed.memory, but the host API provides only functions \
             (docs/host-api.md)",
        ),
        (
            wasm(
                r#"(module (import "wasmbed" "clock_ms" (func (result i32))) (func (export "main")))"#,
            ),
            none.clone(),
            DeployFailure::ImportNotAllowed,
            "imports wasmbed.clock_ms as () -> (i32), but the host API's is () -> (i64) \
             (docs/host-api.md)",
        ),
        (
            wasm(
                r#"(module (import "wasmbed" "log" (func (param i32 i32))) (func (export "main")))"#,
            ),
            none.clone(),
            DeployFailure::ImportNotAllowed,
            "imports wasmbed.log but exports no memory named `memory` for it to read lines \
             from (docs/host-api.md)",
        ),
        (
            wasm(r#"(module (memory (export "memory") 3) (func (export "main")))"#),
            none.clone(),
            DeployFailure::OutOfMemory,
            "its memory starts at 3 pages of 64 KiB, more than limits.memory_pages (1)",
        ),
        (
            wasm(r#"(module (func (export "main") (param i32)))"#),
            limits("run", &[Value::I32(1)]),
            DeployFailure::BadEntryPoint,
            "entry function `run` not exported",
        ),
        (
            wasm(r#"(module (global (export "g") i32 (i32.const 0)) (func (export "main")))"#),
            limits("g", &[]),
            DeployFailure::BadEntryPoint,
            "`g` is exported as a global, not a function",
        ),
        (
            wasm(r#"(module (func (export "run") (param i32)))"#),
            limits("run", &[Value::I32(1), Value::I32(2)]),
            DeployFailure::BadEntryPoint,
            "`run` takes (i32) but 2 args were given",
        ),
        (
            wasm(r#"(module (func (export "run") (param i32 f64)))"#),
            limits("run", &[Value::I64(1), Value::F64(2.0)]),
            DeployFailure::BadEntryPoint,
            "`run` takes (i32, f64) but the args are (i64, f64)",
        ),
        (
            wasm(
                r#"(module (func (export "main") (result i32 i32 i32 i32 i32)
                i32.const 0 i32.const 0 i32.const 0 i32.const 0 i32.const 0))"#,
            ),
            none.clone(),
            DeployFailure::BadEntryPoint,
            "`main` returns (i32, i32, i32, i32, i32), but an entry point returns at most 4 \
             numbers (i32, i64, f32, f64)",
        ),
        (
            wasm(r#"(module (func (export "main") (result funcref) ref.null func))"#),
            none,
            DeployFailure::BadEntryPoint,
            "`main` returns (funcref), but an entry point returns at most 4 numbers \
             (i32, i64, f32, f64)",
        ),
    ]
}

#[test]
fn refused_modules_come_with_the_reason() {
    for (module, limits, _, expected) in refused() {
        let reason = reason(&module, &limits);
        assert!(reason.starts_with(expected), "{reason:?} for {expected:?}");
    }
}

#[test]
fn a_device_refuses_the_same_modules_with_the_matching_failure() {
    let mut runtime = WasmiRuntime::new(WasmiConfig::default(), || 0);
    for (module, limits, failure, expected) in refused() {
        let rejection = check_module(&module, &limits).expect_err(expected);
        assert_eq!(rejection.failure(), failure, "{expected}");
        assert_eq!(
            runtime.validate(&module, &limits),
            Err(failure),
            "{expected}"
        );
    }
}

#[test]
fn the_rejection_keeps_what_was_found_wrong() {
    let module = wasm(r#"(module (import "env" "foo" (global i32)) (func (export "main")))"#);
    match check_module(&module, &limits("main", &[])) {
        Err(ModuleRejection::ImportNotInHostApi { module, name, kind }) => {
            assert_eq!((module.as_str(), name.as_str()), ("env", "foo"));
            assert_eq!(kind, ExternKind::Global);
        }
        other => panic!("{other:?}"),
    }
    let module = wasm(r#"(module (memory (export "memory") 2) (func (export "main")))"#);
    match check_module(&module, &limits("main", &[])) {
        Err(ModuleRejection::MemoryTooLarge {
            initial_pages: 2,
            memory_pages: 1,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn valid_modules_are_accepted_as_devices_accept_them() {
    let mut runtime = WasmiRuntime::new(WasmiConfig::default(), || 0);
    let example = documented_example();
    let args = limits("main", &[Value::I32(21)]);
    assert_eq!(
        check_module(&example, &args).expect("valid"),
        ModuleInfo {
            memory_pages: Some(1),
            entry_results: 1,
        }
    );
    assert_eq!(runtime.validate(&example, &args), Ok(()));
    // No memory, four results, every number type as an argument; a memory
    // exactly as large as allowed.
    let cases = [
        (
            wasm(
                r#"(module (func (export "run") (param i32 i64 f32 f64) (result i32 i64 f32 f64)
                local.get 0 local.get 1 local.get 2 local.get 3))"#,
            ),
            limits(
                "run",
                &[
                    Value::I32(1),
                    Value::I64(2),
                    Value::F32(3.0),
                    Value::F64(4.0),
                ],
            ),
            ModuleInfo {
                memory_pages: None,
                entry_results: 4,
            },
        ),
        (
            wasm(r#"(module (memory (export "memory") 1) (func (export "main")))"#),
            limits("main", &[]),
            ModuleInfo {
                memory_pages: Some(1),
                entry_results: 0,
            },
        ),
    ];
    for (module, limits, info) in cases {
        assert_eq!(check_module(&module, &limits).expect("valid"), info);
        assert_eq!(runtime.validate(&module, &limits), Ok(()));
    }
}
