/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdint.h>

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "console.h"

/* Longer lines are cut; the agent's lines are shorter. */
#define LINE_MAX 512

void console_line(const char *fmt, ...)
{
	static char text[LINE_MAX];
	static K_MUTEX_DEFINE(lock);
	int64_t ms = k_uptime_get();
	va_list args;

	/* One printk per line, so lines from two threads never interleave. */
	k_mutex_lock(&lock, K_FOREVER);
	va_start(args, fmt);
	vsnprintk(text, sizeof(text), fmt, args);
	va_end(args);
	printk("[%6u.%03u] %s\n", (unsigned int)(ms / 1000), (unsigned int)(ms % 1000), text);
	k_mutex_unlock(&lock);
}
