(module (func (export "main") (param i32)) (global (export "g") i32 (i32.const 0)))
