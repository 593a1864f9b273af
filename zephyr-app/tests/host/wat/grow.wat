(module (memory (export "memory") 1)
  (func (export "main") (param i32) (result i32) local.get 0 memory.grow))
