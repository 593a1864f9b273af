/*
 * The agent's WebAssembly runtime on WAMR (WebAssembly Micro Runtime).
 *
 * wamr_runtime_init() sets WAMR up once and fills a wb_runtime, the vtable
 * the agent (wasmbed_agent.h) installs and runs modules through. Modules
 * get exactly the host API of docs/host-api.md (module "wasmbed": log,
 * clock_ms, report_i32/i64/f32/f64), instruction metering as fuel, and the
 * deployment's memory limit; the install-time checks give the verdicts the
 * Rust runtime gives (firmware/agent/src/runtime/check.rs).
 *
 * Everything WAMR allocates (loaded modules, instances, linear memory,
 * stacks) comes from the pool given here; nothing stays allocated between
 * calls.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#ifndef WASMBED_WAMR_RUNTIME_H
#define WASMBED_WAMR_RUNTIME_H

#include <stdint.h>

#include "wasmbed_agent.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How WAMR is set up. */
typedef struct wamr_runtime_config {
    /** WAMR's heap: modules, instances, linear memory and stacks. Aligned
     *  to 8 bytes; used by WAMR alone from wamr_runtime_init() on. */
    void *pool;
    uint32_t pool_size;
    /** Bytes of WAMR's value and frame stack for one invocation; a module
     *  that needs more traps with STACK_OVERFLOW. */
    uint32_t stack_size;
    /** Milliseconds since boot, for wasmbed.clock_ms. Required. */
    uint64_t (*now_ms)(void *ctx);
    void *clock_ctx;
} wamr_runtime_config;

/** Version of WAMR this glue is written for, and reported to the gateway. */
#define WAMR_RUNTIME_VERSION "2.4.3"

/**
 * Initialises WAMR (once per boot) and fills *runtime for wb_agent_new().
 * Returns 0, or -1 when the configuration is incomplete or WAMR refused to
 * start (pool too small); WAMR is then not usable.
 */
int wamr_runtime_init(const wamr_runtime_config *config, wb_runtime *runtime);

#ifdef __cplusplus
}
#endif

#endif /* WASMBED_WAMR_RUNTIME_H */
