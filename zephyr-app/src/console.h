/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Console lines on UART0, in the Rust firmware's grammar
 * ("[seconds.millis] text", docs/firmware.md), so the emulator manager, the
 * tests and the robot suite read both firmwares alike.
 */
#ifndef WASMBED_CONSOLE_H
#define WASMBED_CONSOLE_H

#include <zephyr/toolchain.h>

/* Prints one line, prefixed with the time since boot. */
void console_line(const char *fmt, ...) __printf_like(1, 2);

#endif /* WASMBED_CONSOLE_H */
