(module (memory (export "memory") 3) (func (export "main")))
