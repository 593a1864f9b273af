(module (import "wasmbed" "log" (func (param i32 i32))) (func (export "main")))
