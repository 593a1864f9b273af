(module (table 2000 funcref) (func (export "main")))
