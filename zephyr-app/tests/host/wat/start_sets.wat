(module (global $g (mut i32) (i32.const 0))
  (func $set (global.set $g (i32.const 7))) (start $set)
  (func (export "main") (result i32) global.get $g))
