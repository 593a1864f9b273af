(module (import "env" "foo" (func)) (func (export "main")))
