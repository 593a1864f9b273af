(module (memory 3) (func (export "main")))
