(module (memory 1) (func $self (export "main") i32.const -1 i32.load drop))
