;; WebAssembly 2.0 features devices run (docs/host-api.md): multi-value,
;; sign extension, saturating conversion, bulk memory, reference types,
;; tail calls, extended constant expressions.
(module
  (memory (export "memory") 1)
  (table 2 funcref)
  (global $base i32 (i32.add (i32.const 8) (i32.const 8)))
  (func $pair (result i32 i32) i32.const 40 i32.const 2)
  (func $sum (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func $tail (param i32) (result i32) local.get 0 return_call $id)
  (func $id (param i32) (result i32) local.get 0)
  (func (export "main") (result i32)
    (memory.fill (global.get $base) (i32.const 7) (i32.const 4))
    (drop (ref.is_null (ref.null func)))
    (i32.add
      (i32.add (call $sum (call $pair)) (i32.extend8_s (i32.const 0xff)))
      (i32.add (i32.trunc_sat_f32_s (f32.const 1e10))
               (i32.add (call $tail (i32.load8_u (global.get $base)))
                        (i32.const -2147483647))))))
