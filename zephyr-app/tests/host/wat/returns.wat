(module (func (export "main") (param i32 i64) (result i64 f64)
  local.get 0 i64.extend_i32_s local.get 1 i64.add
  f64.const 1.5))
