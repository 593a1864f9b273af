;; An application that traps: divides by zero.
(module
  (func (export "run") (param $x i32) (result i32)
    (i32.div_s (local.get $x) (i32.const 0))))
