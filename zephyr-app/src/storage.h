/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device's storage in emulation: two files in its state directory on
 * the host, reached through Arm semihosting, as the Rust firmware does.
 */
#ifndef WASMBED_STORAGE_H
#define WASMBED_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "wasmbed_agent.h"

/* Sector size of the emulated NOR flash (flash.bin). */
#define STORAGE_ERASE_SIZE WB_MEDIUM_SECTOR

/*
 * Reads all of provision.bin (the factory record) into a buffer from the C
 * heap. Returns 0, or a negative errno.
 */
int storage_read_provisioning(uint8_t **bytes, size_t *len);

/*
 * Opens flash.bin read/write, creating it when absent, grows it to `size`
 * bytes of 0xFF (erased), and describes it as a NOR medium. A file that
 * exists but cannot be opened for writing is an error, never recreated: it
 * holds the device's identity. Returns 0, or a negative errno.
 */
int storage_open_flash(uint32_t size, wb_medium *medium);

#endif /* WASMBED_STORAGE_H */
