/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Wasmbed device on Zephyr: the agent (Rust, firmware/agent-ffi) drives
 * enrollment, sessions, deployments and results; this file only moves bytes
 * between it and a TLS socket, waits, and prints the lines it formats. The
 * loop is the agent's sans-IO loop, the same as the Rust firmware's
 * (firmware/mps2/src/device.rs).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <app_version.h>
#include <mbedtls/memory_buffer_alloc.h>
#include <zephyr/arch/common/semihost.h>
#include <zephyr/kernel.h>
#include <zephyr/net/socket.h>
#include <zephyr/sys/reboot.h>
#include <zephyr/version.h>

#include "agent_lock.h"
#include "console.h"
#include "link.h"
#include "platform.h"
#include "storage.h"
#include "wamr_runtime.h"
#include "wasmbed_agent.h"

#define BOARD_NAME "mps2-an385"
/* A console line of the agent's, at most. */
#define AGENT_LINE_MAX 384
/* Semihosting SYS_EXIT and its "runtime error" reason: QEMU exits with 1. */
#define SEMIHOST_SYS_EXIT 0x18
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

static wb_agent *agent;
static wb_provisioned provisioned;
static struct sockaddr_in gateway;
static uint8_t rx[CONFIG_WASMBED_RECEIVE_BUFFER];
static char agent_line[AGENT_LINE_MAX];
/* WAMR's heap: loaded modules, instances, the linear memory, stacks. */
static uint8_t wamr_pool[CONFIG_WASMBED_WAMR_POOL_SIZE] __aligned(8);

static uint64_t wamr_clock(void *ctx)
{
	ARG_UNUSED(ctx);
	return platform_now_ms();
}

/*
 * Errors a reset would not fix (no factory record, a broken one, storage
 * that cannot be written) stop the emulation with a failure status, as the
 * Rust firmware does.
 */
static FUNC_NORETURN void halt(const char *why, int detail)
{
	console_line("fatal: %s (%d)", why, detail);
	(void)semihost_exec((enum semihost_instr)SEMIHOST_SYS_EXIT,
			    (void *)ADP_STOPPED_RUNTIME_ERROR);
	k_panic();
	CODE_UNREACHABLE;
}

/*
 * A panic of the agent's Rust code: reported, then the device resets, as
 * the Rust firmware does; an application that was running is reported as
 * trapped DeviceReset after the reboot.
 */
FUNC_NORETURN void wb_platform_panic(const char *message, size_t len)
{
	console_line("fatal: panic: %.*s; resetting", (int)len, message);
	sys_reboot(SYS_REBOOT_COLD);
	CODE_UNREACHABLE;
}

static wb_agent_config agent_config(void)
{
	wb_agent_config config = wb_agent_config_default();

	strncpy(config.board, BOARD_NAME, sizeof(config.board) - 1);
	strncpy(config.firmware_version, "zephyr-" APP_VERSION_STRING,
		sizeof(config.firmware_version) - 1);
	config.app_memory = CONFIG_WASMBED_APP_MEMORY;
	config.max_fuel = CONFIG_WASMBED_MAX_FUEL;
	config.slots = CONFIG_WASMBED_MODULE_SLOTS;
	config.max_module_size = CONFIG_WASMBED_MAX_MODULE_SIZE;
	config.response_timeout_ms = CONFIG_WASMBED_RESPONSE_TIMEOUT_MS;
	return config;
}

static void setup(void)
{
	uint8_t *provisioning;
	size_t provisioning_len;
	int err = storage_read_provisioning(&provisioning, &provisioning_len);

	if (err != 0) {
		halt("no provision.bin: start the device with `wasmbed emulator run`", err);
	}
	/* Any block of the C heap tells which heap it is. */
	platform_heap_attach(provisioning);

	wb_agent_config config = agent_config();
	uint32_t medium_size = wb_agent_medium_size(&config);
	/* The agent keeps using these for its whole life. */
	static wb_medium medium;

	err = storage_open_flash(medium_size, &medium);
	if (err != 0) {
		halt("cannot open or create flash.bin", err);
	}
	static wb_runtime runtime;
	static const wamr_runtime_config wamr = {
		.pool = wamr_pool,
		.pool_size = sizeof(wamr_pool),
		.stack_size = CONFIG_WASMBED_WAMR_STACK_SIZE,
		.now_ms = wamr_clock,
	};

	if (wamr_runtime_init(&wamr, &runtime) != 0) {
		halt("the WebAssembly runtime cannot start", -ENOMEM);
	}
	wb_status status = wb_agent_new(&config, provisioning, provisioning_len, &medium,
					&runtime, platform_get(), &agent);
	/* The agent keeps its own copy of the record. */
	free(provisioning);
	if (status != WB_STATUS_OK) {
		halt("the agent cannot start (provision.bin or flash.bin invalid)", status);
	}
	wb_agent_provisioned(agent, &provisioned);
	/* From here on sys_csrand_get (TLS, PSA) draws from the agent. */
	agent_lock_publish(agent);

	const char *address = provisioned.gateway_address[0] != '\0'
				      ? provisioned.gateway_address
				      : CONFIG_WASMBED_GATEWAY_ADDRESS;
	if (link_parse_address(address, &gateway) != 0) {
		halt("the gateway address is not IPv4:port", -EINVAL);
	}

	agent_enter();
	wb_agent_boot_line(agent, agent_line, sizeof(agent_line));
	agent_leave();
	console_line("%s", agent_line);
	console_line("link: gateway %s%s", address,
		     provisioned.gateway_address[0] != '\0' ? "" : " (built-in default)");
}

/* Prints what the agent did; returns how many lines there were. */
static int report_events(void)
{
	int count = 0;

	for (;;) {
		agent_enter();
		bool more = wb_agent_poll(agent, platform_now_ms(), agent_line, sizeof(agent_line));
		agent_leave();
		if (!more) {
			return count;
		}
		console_line("%s", agent_line);
		count++;
	}
}

/* Sends everything the agent has to send. */
static int flush(int sock)
{
	for (;;) {
		const uint8_t *data;
		size_t len;

		agent_enter();
		wb_agent_transmit(agent, &data, &len);
		agent_leave();
		if (len == 0) {
			return 0;
		}
		ssize_t sent = zsock_send(sock, data, len, 0);

		if (sent < 0) {
			return -errno;
		}
		agent_enter();
		wb_agent_advance(agent, (size_t)sent);
		agent_leave();
	}
}

enum end {
	END_CLOSED,
	END_FAILED,
};

/* One session over a connected socket, until it closes or fails. */
static enum end serve(int sock)
{
	size_t pending = 0;

	for (;;) {
		int handled = report_events();
		int err = flush(sock);

		if (err != 0) {
			console_line("link: sending failed: %s (%d)", link_describe(-err), -err);
			return END_FAILED;
		}
		agent_enter();
		bool closed = wb_agent_is_closed(agent);
		agent_leave();
		if (closed) {
			return END_CLOSED;
		}
		if (pending > 0) {
			size_t taken = 0;

			agent_enter();
			wb_status status =
				wb_agent_input(agent, rx, pending, platform_now_ms(), &taken);
			if (status == WB_STATUS_OK && taken == 0 && handled == 0) {
				/* Cannot happen with a working session: do not spin. */
				wb_agent_close(agent, WB_GOODBYE_REASON_PROTOCOL_ERROR);
			}
			agent_leave();
			if (status != WB_STATUS_OK) {
				/* The agent has closed the session and says why. */
				pending = 0;
				continue;
			}
			memmove(rx, rx + taken, pending - taken);
			pending -= taken;
			continue;
		}

		uint64_t deadline = UINT64_MAX;

		agent_enter();
		bool has_deadline = wb_agent_timeout(agent, &deadline);
		agent_leave();
		uint64_t now = platform_now_ms();

		if (has_deadline && now >= deadline) {
			agent_enter();
			wb_agent_handle_timeout(agent, now);
			agent_leave();
			continue;
		}
		int wait_ms = has_deadline ? (int)MIN(deadline - now, (uint64_t)INT32_MAX) : -1;
		struct zsock_pollfd fds = {.fd = sock, .events = ZSOCK_POLLIN};

		if (zsock_poll(&fds, 1, wait_ms) < 0) {
			console_line("link: waiting failed: %s (%d)", link_describe(errno), errno);
			return END_FAILED;
		}
		if (fds.revents == 0) {
			continue;
		}
		ssize_t n = zsock_recv(sock, rx, sizeof(rx), ZSOCK_MSG_DONTWAIT);

		if (n == 0) {
			console_line("link: receiving failed: the gateway closed the connection");
			return END_FAILED;
		}
		if (n < 0) {
			if (errno == EAGAIN) {
				continue;
			}
			console_line("link: receiving failed: %s (%d)", link_describe(errno), errno);
			return END_FAILED;
		}
		pending = (size_t)n;
	}
}

/* One connection: credentials, TCP + TLS, then the session. */
static enum end connection(void)
{
	wb_credentials credentials;

	agent_enter();
	wb_status status = wb_agent_credentials(agent, &credentials);
	agent_leave();
	if (status != WB_STATUS_OK) {
		console_line("link: no credentials (%d)", status);
		return END_FAILED;
	}
	int err = link_set_credentials(provisioned.gateway_ca, provisioned.gateway_ca_len,
				       &credentials);
	if (err != 0) {
		console_line("link: credentials refused by the TLS stack (%d)", err);
		return END_FAILED;
	}
	console_line("link: connecting with the %s certificate",
		     credentials.enrolled ? "device" : "claim");

	struct link_attempt attempt;
	int sock = link_connect(agent, &gateway, provisioned.server_name, &attempt);

	if (sock < 0) {
		console_line("tls: handshake failed: %s (errno %d)",
			     attempt.certificate_refused ? "the gateway's certificate is not trusted"
							 : link_describe(attempt.error),
			     attempt.error);
		return END_FAILED;
	}
	console_line("tls: handshake done in %llu us, %llu us busy (stack peak %u B, heap %u B)",
		     (unsigned long long)attempt.handshake_us, (unsigned long long)attempt.busy_us,
		     (unsigned int)attempt.stack_peak, (unsigned int)attempt.heap_used);

	agent_enter();
	status = wb_agent_connect(agent, platform_now_ms());
	agent_leave();
	enum end end = END_FAILED;

	if (status == WB_STATUS_OK) {
		end = serve(sock);
	} else {
		console_line("agent: cannot start a session (%d)", status);
	}
	link_close(sock);
	return end;
}

/* High-water marks since boot, after each connection: what the sizes in
 * prj.conf and Kconfig are checked against (docs/zephyr.md).
 */
static void report_memory(void)
{
	size_t tls_peak = 0;
	size_t tls_blocks = 0;

#ifdef MBEDTLS_MEMORY_DEBUG
	mbedtls_memory_buffer_alloc_max_get(&tls_peak, &tls_blocks);
#endif
	console_line("mem: stack peak %u of %u B, heap peak %u of %u B, mbedTLS heap peak %u of "
		     "%u B",
		     (unsigned int)platform_stack_peak(), (unsigned int)CONFIG_MAIN_STACK_SIZE,
		     (unsigned int)platform_heap_peak(),
		     (unsigned int)CONFIG_COMMON_LIBC_MALLOC_ARENA_SIZE, (unsigned int)tls_peak,
		     (unsigned int)CONFIG_MBEDTLS_HEAP_SIZE);
}

int main(void)
{
	platform_init();
	console_line("wasmbed-zephyr %s on %s: booting (Zephyr %s, WAMR)", APP_VERSION_STRING,
		     BOARD_NAME, KERNEL_VERSION_STRING);
	setup();

	int err = link_network_up();

	if (err != 0) {
		halt("no network interface", err);
	}

	uint64_t reconnect_at = platform_now_ms();

	for (;;) {
		uint64_t now = platform_now_ms();

		if (now < reconnect_at) {
			k_sleep(K_MSEC(reconnect_at - now));
		}
		enum end end = connection();

		agent_enter();
		reconnect_at = wb_agent_disconnected(agent, platform_now_ms());
		agent_leave();
		now = platform_now_ms();
		console_line("link: connection %s; reconnecting in %llu ms",
			     end == END_CLOSED ? "closed" : "failed",
			     (unsigned long long)(reconnect_at > now ? reconnect_at - now : 0));
		report_memory();
	}
	return 0;
}
