(module
  (type $v (func))
  (type $i (func (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $f)
  (func $f)
  (func (export "main") (param $slot i32) (call_indirect (type $v) (local.get $slot)))
  (func (export "mismatch") (drop (call_indirect (type $i) (i32.const 0)))))
