//! A device runs deployment after deployment for months: the runtime must
//! give back all the memory an invocation took.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use wasmbed_agent::runtime::{Clock, Runtime, WasmiConfig, WasmiRuntime};
use wasmbed_protocol::{Limits, Outcome, Value};

/// Bytes allocated and not freed by the measured thread.
static LIVE: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Set on the thread under test: the test harness's other threads
    /// allocate now and then too, which must not count.
    static MEASURED: Cell<bool> = const { Cell::new(false) };
}

fn measured() -> bool {
    MEASURED.try_with(Cell::get).unwrap_or(false)
}

struct Counting;

// SAFETY: forwards to the system allocator; the counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if measured() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: the caller's guarantees are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if measured() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Clone)]
struct FixedClock;

impl Clock for FixedClock {
    fn now_us(&self) -> u64 {
        0
    }
}

#[test]
fn repeated_deployments_do_not_grow_the_heap() {
    MEASURED.with(|measured| measured.set(true));
    // Many functions, all called, so that each invocation translates a lot
    // of code.
    let functions: String = (0..40)
        .map(|i| format!("(func $f{i} (param i32) (result i32) local.get 0 i32.const {i} i32.add)"))
        .collect();
    let calls: String = (0..40).map(|i| format!("call $f{i} ")).collect();
    let module = wat::parse_str(format!(
        r#"(module (memory 1) {functions}
            (func (export "run") (param i32) (result i32) local.get 0 {calls}))"#
    ))
    .expect("valid WAT");
    let limits = Limits {
        fuel: 1_000_000,
        memory_pages: 1,
        entry: "run".try_into().expect("short"),
        args: heapless::Vec::from_slice(&[Value::I32(1)]).expect("one arg"),
    };
    let mut runtime = WasmiRuntime::new(WasmiConfig::default(), FixedClock);
    let mut run_once = || {
        runtime.validate(&module, &limits).expect("valid");
        let result = runtime.invoke(module.clone(), &limits);
        assert_eq!(
            result.outcome,
            Outcome::Returned(heapless::Vec::from_slice(&[Value::I32(781)]).expect("one"))
        );
    };
    run_once();
    let after_first = LIVE.load(Ordering::Relaxed);
    for _ in 0..20 {
        run_once();
    }
    let growth = LIVE.load(Ordering::Relaxed) - after_first;
    assert!(growth <= 0, "20 more invocations kept {growth} bytes");
}
