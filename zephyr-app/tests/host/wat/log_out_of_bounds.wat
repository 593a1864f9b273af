(module
  (import "wasmbed" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "main") (call $log (i32.const 65530) (i32.const 10))))
