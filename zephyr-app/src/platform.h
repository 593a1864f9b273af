/* SPDX-License-Identifier: Apache-2.0 */
/* What the agent needs from the board (time, memory, entropy), and figures. */
#ifndef WASMBED_PLATFORM_H
#define WASMBED_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#include "wasmbed_agent.h"

/* Starts the CPU usage statistics behind platform_busy_cycles. */
void platform_init(void);

/* The platform callbacks handed to wb_agent_new. */
const wb_agent_platform *platform_get(void);

/* Milliseconds since boot: the agent's clock. */
uint64_t platform_now_ms(void);

/* Finds the C malloc arena among the system's heaps, given a block from it. */
void platform_heap_attach(const void *block_from_malloc);
/* Bytes of the C malloc arena in use now, and at most so far (0 if unknown). */
size_t platform_heap_used(void);
size_t platform_heap_peak(void);

/* Bytes of the current thread's stack used at most so far. */
size_t platform_stack_peak(void);

/* Cycles the CPU was not idle since boot (0 without thread usage stats). */
uint64_t platform_busy_cycles(void);

#endif /* WASMBED_PLATFORM_H */
