/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include <zephyr/arch/common/semihost.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/sys_heap.h>

#include "platform.h"

static struct sys_heap *malloc_heap;

void platform_init(void)
{
#ifdef CONFIG_SCHED_THREAD_USAGE_ALL
	/* CPU (not thread) usage is counted only once asked for. */
	k_sys_runtime_stats_enable();
#endif
}

uint64_t platform_now_ms(void)
{
	return (uint64_t)k_uptime_get();
}

static uint64_t now_us(void *ctx)
{
	ARG_UNUSED(ctx);
	/* Cycle-accurate: the result's duration_us, and guest instructions
	 * under QEMU -icount, come from it (ticks are 10 ms).
	 */
	return k_cyc_to_us_floor64(k_cycle_get_64());
}

void platform_heap_attach(const void *block)
{
	struct sys_heap **heaps;
	int count = sys_heap_array_get(&heaps);

	/* A sys_heap keeps its bookkeeping at the start of its memory. */
	for (int i = 0; i < count; i++) {
		uintptr_t start = (uintptr_t)heaps[i]->heap;
		uintptr_t end = start + CONFIG_COMMON_LIBC_MALLOC_ARENA_SIZE;

		if ((uintptr_t)block >= start && (uintptr_t)block < end) {
			malloc_heap = heaps[i];
			return;
		}
	}
}

static bool heap_stats(struct sys_memory_stats *stats)
{
	return malloc_heap != NULL && sys_heap_runtime_stats_get(malloc_heap, stats) == 0;
}

size_t platform_heap_used(void)
{
	struct sys_memory_stats stats;

	return heap_stats(&stats) ? stats.allocated_bytes : 0;
}

size_t platform_heap_peak(void)
{
	struct sys_memory_stats stats;

	return heap_stats(&stats) ? stats.max_allocated_bytes : 0;
}

static uint32_t free_memory(void *ctx)
{
	struct sys_memory_stats stats;

	ARG_UNUSED(ctx);
	return heap_stats(&stats) ? (uint32_t)stats.free_bytes : 0;
}

size_t platform_stack_peak(void)
{
	size_t unused = 0;
	const struct k_thread *self = k_current_get();

	if (k_thread_stack_space_get(self, &unused) != 0) {
		return 0;
	}
	return self->stack_info.size - unused;
}

uint64_t platform_busy_cycles(void)
{
#ifdef CONFIG_SCHED_THREAD_USAGE_ALL
	k_thread_runtime_stats_t stats;

	if (k_thread_runtime_stats_all_get(&stats) == 0) {
		return stats.total_cycles;
	}
#endif
	return 0;
}

/*
 * What differs between boots in emulation: the host's clock, and the
 * cycle counter read around semihosting calls, whose duration depends on the
 * host. The agent hashes this with the provisioned seed and the seed saved
 * at the previous boot (the saved seed is what keeps two boots apart under
 * -icount, where guest timing repeats exactly).
 */
static void boot_entropy(void *ctx, uint8_t *buf, size_t len)
{
	ARG_UNUSED(ctx);
	memset(buf, 0, len);
	for (size_t i = 0; i < len; i++) {
		uint32_t before = k_cycle_get_32();
		long host = semihost_exec(i % 2 ? SEMIHOST_CLOCK : SEMIHOST_TIME, NULL);
		uint32_t after = k_cycle_get_32();
		uint32_t mixed = before ^ (after << 7) ^ (uint32_t)host ^ (uint32_t)(host >> 16);

		buf[i] ^= (uint8_t)(mixed ^ (mixed >> 8) ^ (mixed >> 16) ^ (mixed >> 24));
	}
}

static const wb_agent_platform platform = {
	.ctx = NULL,
	.now_us = now_us,
	.free_memory = free_memory,
	.boot_entropy = boot_entropy,
};

const wb_agent_platform *platform_get(void)
{
	return &platform;
}
