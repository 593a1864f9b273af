(module
  (import "wasmbed" "report_i32" (func $ri32 (param i32)))
  (import "wasmbed" "report_f32" (func $rf32 (param f32)))
  (import "wasmbed" "clock_ms" (func $clock (result i64)))
  (func (export "main") (result i64)
    (call $ri32 (i32.const 7))
    (call $rf32 (f32.const 0.5))
    (call $clock)))
