(module (table 1 funcref) (table 1 funcref) (func (export "main")))
