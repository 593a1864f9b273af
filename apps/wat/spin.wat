;; A runaway application: loops forever. The device stops it when its fuel
;; runs out (trap OutOfFuel) and keeps serving.
(module
  (func (export "run")
    (loop $forever (br $forever))))
