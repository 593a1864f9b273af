(module (func (export "main") (loop $forever br $forever)))
