;; A Wasmbed application in WebAssembly text: Fibonacci, recursively.
;; Entry `run`, one i64 argument `n`; returns fib(n) and logs a line.
(module
  (import "wasmbed" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "fibonacci from WAT")
  (func $fib (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else
        (i64.add
          (call $fib (i64.sub (local.get $n) (i64.const 1)))
          (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
  (func (export "run") (param $n i64) (result i64)
    (call $log (i32.const 16) (i32.const 18))
    (call $fib (local.get $n))))
