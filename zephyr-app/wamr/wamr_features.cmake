# WAMR's build options for Wasmbed devices: the WebAssembly of
# docs/host-api.md ("WebAssembly features"), run by the classic interpreter
# with instruction metering, and nothing else. Included by the Zephyr glue
# (CMakeLists.txt here) and by the host test (../tests/host), so both build
# the same runtime.
#
# Classic interpreter, not the fast one: it runs a module's code in place
# from the module buffer, where the fast interpreter first translates every
# function into a copy about twice as large in RAM; its code is smaller in
# flash; and its metering counts WebAssembly instructions (the fast one
# counts its own fused operations), which is what fuel means in the host
# API. It is about half as fast, which the sample applications do not feel.

set(WAMR_BUILD_INTERP 1)
set(WAMR_BUILD_FAST_INTERP 0)
set(WAMR_BUILD_AOT 0)
set(WAMR_BUILD_JIT 0)
set(WAMR_BUILD_FAST_JIT 0)
set(WAMR_BUILD_INSTRUCTION_METERING 1)

# No libc of WAMR's, no WASI, no threads: modules see the host API only.
set(WAMR_BUILD_LIBC_BUILTIN 0)
set(WAMR_BUILD_LIBC_WASI 0)
set(WAMR_BUILD_LIBC_UVWASI 0)
set(WAMR_BUILD_LIB_PTHREAD 0)
set(WAMR_BUILD_LIB_WASI_THREADS 0)
set(WAMR_BUILD_THREAD_MGR 0)
set(WAMR_BUILD_MULTI_MODULE 0)
set(WAMR_BUILD_SHARED_HEAP 0)
set(WAMR_DISABLE_APP_ENTRY 1)

# WebAssembly 2.0 without SIMD and 64-bit memories, one memory
# (multi-value, sign extension, saturating conversions and mutable globals
# are always on in WAMR).
set(WAMR_BUILD_BULK_MEMORY 1)
set(WAMR_BUILD_REF_TYPES 1)
set(WAMR_BUILD_TAIL_CALL 1)
set(WAMR_BUILD_EXTENDED_CONST_EXPR 1)
set(WAMR_BUILD_SIMD 0)
set(WAMR_BUILD_MEMORY64 0)
set(WAMR_BUILD_MULTI_MEMORY 0)
set(WAMR_BUILD_SHARED_MEMORY 0)
set(WAMR_BUILD_EXCE_HANDLING 0)
set(WAMR_BUILD_GC 0)
set(WAMR_BUILD_STRINGREF 0)

# Run modules as they are: a full validating loader; memory not shrunk to
# what WAMR guesses a module uses; bounds checked in software, as on an MCU;
# no debug or profiling data kept.
set(WAMR_BUILD_MINI_LOADER 0)
set(WAMR_BUILD_SHRUNK_MEMORY 0)
set(WAMR_DISABLE_HW_BOUND_CHECK 1)
set(WAMR_DISABLE_STACK_HW_BOUND_CHECK 1)
set(WAMR_DISABLE_WAKEUP_BLOCKING_OP 1)
set(WAMR_BUILD_CUSTOM_NAME_SECTION 0)
set(WAMR_BUILD_LOAD_CUSTOM_SECTION 0)
set(WAMR_BUILD_DUMP_CALL_STACK 0)
set(WAMR_BUILD_MEMORY_PROFILING 0)
set(WAMR_BUILD_PERF_PROFILING 0)
set(WAMR_BUILD_DEBUG_INTERP 0)

# The heap is a pool the application gives at run time
# (wamr_runtime_config.pool), not one of WAMR's own.
set(WAMR_BUILD_GLOBAL_HEAP_POOL 0)
