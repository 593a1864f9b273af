(module (import "wasmbed" "clock_ms" (func (result i32))) (func (export "main")))
