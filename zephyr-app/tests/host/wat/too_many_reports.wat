(module
  (import "wasmbed" "report_i64" (func $r (param i64)))
  (func (export "main") (result i32)
    (call $r (i64.const 1)) (call $r (i64.const 2)) (call $r (i64.const 3))
    (call $r (i64.const 4))
    i32.const 0))
