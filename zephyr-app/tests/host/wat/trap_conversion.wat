(module (func (export "main") (result i32) f32.const nan i32.trunc_f32_s))
