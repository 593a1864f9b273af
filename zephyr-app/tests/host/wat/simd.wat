(module (func (export "main") (drop (v128.const i32x4 0 0 0 0))))
