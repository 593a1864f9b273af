(module (import "wasmbed" "exit" (func)) (func (export "main")))
