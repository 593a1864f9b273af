/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The entropy device bound as zephyr,entropy on boards without a TRNG in
 * emulation: its bytes are the agent's CSPRNG output (ChaCha20 seeded with
 * the provisioned per-device seed, a seed saved in flash and replaced at
 * every boot, and boot jitter; see docs/firmware.md, Randomness). Zephyr's
 * sys_csrand_get (HARDWARE_DEVICE_CS_GENERATOR) and through it PSA crypto
 * (MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG) and the TLS sockets draw from it, so the
 * device has one CSPRNG. A real board binds its TRNG here instead.
 *
 * Also the lock around the agent (agent_lock.h).
 */
#define DT_DRV_COMPAT wasmbed_agent_entropy

#include <errno.h>

#include <zephyr/device.h>
#include <zephyr/drivers/entropy.h>
#include <zephyr/kernel.h>

#include "agent_lock.h"

static K_MUTEX_DEFINE(agent_mutex);
static wb_agent *published;
/* Set while the main thread is inside a call into the agent. */
static bool agent_busy;

void agent_lock_publish(wb_agent *agent)
{
	k_mutex_lock(&agent_mutex, K_FOREVER);
	published = agent;
	k_mutex_unlock(&agent_mutex);
}

void agent_enter(void)
{
	k_mutex_lock(&agent_mutex, K_FOREVER);
	agent_busy = true;
}

void agent_leave(void)
{
	agent_busy = false;
	k_mutex_unlock(&agent_mutex);
}

int agent_random(uint8_t *buf, size_t len)
{
	int err = 0;

	if (k_is_in_isr()) {
		return -EWOULDBLOCK;
	}
	/* The mutex is recursive: the main thread gets it back while it is
	 * inside an agent call, and agent_busy then refuses.
	 */
	k_mutex_lock(&agent_mutex, K_FOREVER);
	if (published == NULL || agent_busy) {
		err = -EAGAIN;
	} else if (wb_agent_random(published, buf, len) != WB_STATUS_OK) {
		err = -EIO;
	}
	k_mutex_unlock(&agent_mutex);
	return err;
}

#if IS_ENABLED(CONFIG_WASMBED_ENTROPY)

static int agent_entropy_get(const struct device *dev, uint8_t *buf, uint16_t len)
{
	ARG_UNUSED(dev);
	return agent_random(buf, len);
}

static DEVICE_API(entropy, agent_entropy_api) = {
	.get_entropy = agent_entropy_get,
};

/* Nothing to set up: the device serves bytes once the agent is published. */
DEVICE_DT_INST_DEFINE(0, NULL, NULL, NULL, NULL, PRE_KERNEL_1,
		      CONFIG_ENTROPY_INIT_PRIORITY, &agent_entropy_api);

#endif
