/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Storage through semihosting: provision.bin (read-only) and flash.bin (an
 * emulated NOR flash) in the device's state directory on the host.
 *
 * Why semihosting rather than Zephyr's flash/NVS: the identity and the
 * modules then live in the state directory the emulator manager keeps per
 * device, so they survive a reset and a restart of the emulator (a QEMU
 * process knows nothing of the board's flash contents across restarts), and
 * the manager treats this image and the Rust firmware alike (it writes
 * provision.bin, `wasmbed emulator reset-storage` deletes flash.bin). The
 * power-safety logic (record pairs, slot tables) is the agent's, in Rust;
 * this file only enforces NOR rules: erase sets 0xFF, a write only clears
 * bits. Every write reaches the host file at once, as flash keeps what was
 * programmed through a power cut.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zephyr/arch/common/semihost.h>
#include <zephyr/sys/util.h>

#include "storage.h"

#define PROVISIONING_FILE "provision.bin"
#define FLASH_FILE "flash.bin"
/* The factory record is a few KiB at most; a larger file is not one. */
#define PROVISIONING_MAX (16 * 1024)
/* Bytes moved per semihosting call by erase and read-modify-write. */
#define CHUNK 256

struct host_flash {
	long fd;
	uint32_t size;
};

static struct host_flash flash;

/* semihost_read returns `len` only when it read everything. */
static int read_at(long fd, uint32_t offset, void *buf, size_t len)
{
	if (semihost_seek(fd, (long)offset) != 0) {
		return -EIO;
	}
	return semihost_read(fd, buf, (long)len) == (long)len ? 0 : -EIO;
}

/* semihost_write returns the number of bytes it did not write. */
static int write_at(long fd, uint32_t offset, const void *buf, size_t len)
{
	if (semihost_seek(fd, (long)offset) != 0) {
		return -EIO;
	}
	return semihost_write(fd, buf, (long)len) == 0 ? 0 : -EIO;
}

int storage_read_provisioning(uint8_t **bytes, size_t *len)
{
	long fd = semihost_open(PROVISIONING_FILE, SEMIHOST_OPEN_RB);

	if (fd < 0) {
		return -ENOENT;
	}
	long size = semihost_flen(fd);
	int err = 0;
	uint8_t *buf = NULL;

	if (size <= 0 || size > PROVISIONING_MAX) {
		err = -EINVAL;
	} else if ((buf = malloc((size_t)size)) == NULL) {
		err = -ENOMEM;
	} else if (read_at(fd, 0, buf, (size_t)size) != 0) {
		err = -EIO;
	}
	(void)semihost_close(fd);
	if (err != 0) {
		free(buf);
		return err;
	}
	*bytes = buf;
	*len = (size_t)size;
	return 0;
}

static bool in_bounds(const struct host_flash *f, uint32_t offset, size_t len)
{
	return offset <= f->size && len <= f->size - offset;
}

static int32_t medium_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
	struct host_flash *f = ctx;

	if (!in_bounds(f, offset, len)) {
		return -EINVAL;
	}
	return len == 0 ? 0 : read_at(f->fd, offset, buf, len);
}

/* NOR programming: a bit can go from 1 to 0, never back. */
static int32_t medium_write(void *ctx, uint32_t offset, const uint8_t *data, size_t len)
{
	struct host_flash *f = ctx;
	uint8_t cell[CHUNK];

	if (!in_bounds(f, offset, len)) {
		return -EINVAL;
	}
	while (len > 0) {
		size_t n = MIN(len, sizeof(cell));

		if (read_at(f->fd, offset, cell, n) != 0) {
			return -EIO;
		}
		for (size_t i = 0; i < n; i++) {
			cell[i] &= data[i];
		}
		if (write_at(f->fd, offset, cell, n) != 0) {
			return -EIO;
		}
		offset += n;
		data += n;
		len -= n;
	}
	return 0;
}

static int fill_erased(long fd, uint32_t offset, uint32_t len)
{
	static const uint8_t erased[CHUNK] = {[0 ... CHUNK - 1] = 0xFF};

	while (len > 0) {
		uint32_t n = MIN(len, sizeof(erased));

		if (write_at(fd, offset, erased, n) != 0) {
			return -EIO;
		}
		offset += n;
		len -= n;
	}
	return 0;
}

static int32_t medium_erase(void *ctx, uint32_t offset, uint32_t len)
{
	struct host_flash *f = ctx;

	if (!in_bounds(f, offset, len) || offset % STORAGE_ERASE_SIZE != 0 ||
	    len % STORAGE_ERASE_SIZE != 0) {
		return -EINVAL;
	}
	return fill_erased(f->fd, offset, len);
}

int storage_open_flash(uint32_t size, wb_medium *medium)
{
	long fd = semihost_open(FLASH_FILE, SEMIHOST_OPEN_RB);

	if (fd >= 0) {
		/* It exists: open it for writing or stop, never recreate it. */
		(void)semihost_close(fd);
		fd = semihost_open(FLASH_FILE, SEMIHOST_OPEN_RB_PLUS);
	} else {
		fd = semihost_open(FLASH_FILE, SEMIHOST_OPEN_WB_PLUS);
	}
	if (fd < 0) {
		return -EACCES;
	}
	long have = semihost_flen(fd);

	if (have < 0) {
		(void)semihost_close(fd);
		return -EIO;
	}
	/* A new file is a new chip: erased. A shorter one (an older layout)
	 * grows with erased bytes, never with the host's zeros.
	 */
	if ((uint32_t)have < size && fill_erased(fd, (uint32_t)have, size - (uint32_t)have) != 0) {
		(void)semihost_close(fd);
		return -EIO;
	}
	flash.fd = fd;
	flash.size = size;
	*medium = (wb_medium){
		.ctx = &flash,
		.size = size,
		.read = medium_read,
		.write = medium_write,
		.erase = medium_erase,
	};
	return 0;
}
