(module (global (export "counter") (mut i32) (i32.const 0))
  (func (export "main") (result i32)
    (global.set 0 (i32.add (global.get 0) (i32.const 1))) (global.get 0)))
