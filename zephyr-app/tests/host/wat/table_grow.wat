(module (table $t 600 funcref)
  (func (export "main") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))
