/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The link to the gateway: Zephyr's network stack, and TLS 1.3 through its
 * TLS sockets and mbedTLS, with the gateway's certificate checked by the
 * agent (the same check the Rust firmware runs).
 */
#ifndef WASMBED_LINK_H
#define WASMBED_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zephyr/net/socket.h>

#include "wasmbed_agent.h"

/* Brings the network interface up (DHCPv4, or the static address of
 * CONFIG_NET_CONFIG_MY_IPV4_ADDR), waits for an address and prints it.
 * Returns 0, or -ENODEV without a network interface.
 */
int link_network_up(void);

/* Parses "a.b.c.d:port". Returns 0 or -EINVAL. */
int link_parse_address(const char *text, struct sockaddr_in *out);

/* Puts the gateway CA and the client certificate and key of the next
 * connection under CONFIG_WASMBED_SEC_TAG, replacing what was there.
 * Returns 0 or a negative errno.
 */
int link_set_credentials(const uint8_t *gateway_ca, size_t gateway_ca_len,
			 const wb_credentials *credentials);

/* How the last connection attempt went, for the console. */
struct link_attempt {
	uint64_t handshake_us; /* connect() including the TCP handshake */
	uint64_t busy_us;      /* of which the CPU was not idle */
	size_t stack_peak;
	size_t heap_used;
	int error; /* errno of a failed connect, 0 if it succeeded */
	bool certificate_refused;
};

/* Connects to the gateway over TCP and TLS 1.3 (SNI and name check:
 * server_name). What the gateway sends must pass the agent's
 * wb_agent_check_gateway_chain: its own certificate alone, signed by the
 * gateway CA itself. Returns the socket, or -1 with attempt->error set.
 */
int link_connect(const wb_agent *agent, const struct sockaddr_in *gateway, const char *server_name,
		 struct link_attempt *attempt);

void link_close(int sock);

/* Text for an errno of the link. */
const char *link_describe(int error);

#endif /* WASMBED_LINK_H */
