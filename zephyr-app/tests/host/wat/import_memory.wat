(module (import "wasmbed" "memory" (memory 1)) (func (export "main")))
