(module (memory 1) (func $self (export "main") unreachable))
