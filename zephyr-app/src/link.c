/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/x509_crt.h>
#include <zephyr/kernel.h>
#include <zephyr/net/net_config.h>
#include <zephyr/net/net_if.h>
#include <zephyr/net/net_ip.h>
#include <zephyr/net/socket.h>
#include <zephyr/net/tls_credentials.h>

#include "agent_lock.h"
#include "console.h"
#include "link.h"
#include "platform.h"

/* Client credentials of the current connection, copied out of the agent:
 * Zephyr keeps a pointer to a credential, not a copy.
 */
/* How long link_network_up waits for DHCPv4 before giving up (and retrying). */
#define ADDRESS_WAIT_MS 30000

#define CERT_MAX 1024
#define KEY_MAX 256
static uint8_t client_cert[CERT_MAX];
static uint8_t client_key[KEY_MAX];

int link_network_up(void)
{
	struct net_if *iface = net_if_get_default();

	if (iface == NULL) {
		return -ENODEV;
	}
	/* Once: it starts DHCPv4 (or sets the static address) and registers
	 * its callbacks. DHCPv4 keeps trying by itself after a timeout.
	 */
	int err = net_config_init_by_iface(iface, NULL, NET_CONFIG_NEED_IPV4, ADDRESS_WAIT_MS);

	if (err < 0) {
		console_line("net: no address after %d s (%d); still waiting", ADDRESS_WAIT_MS / 1000,
			     err);
	}
	const struct in_addr *addr;

	while ((addr = net_if_ipv4_get_global_addr(iface, NET_ADDR_PREFERRED)) == NULL) {
		k_sleep(K_MSEC(500));
	}
	char text[NET_IPV4_ADDR_LEN];

	net_addr_ntop(AF_INET, addr, text, sizeof(text));
	console_line("net: address %s (%s)", text,
		     IS_ENABLED(CONFIG_NET_DHCPV4) ? "DHCPv4" : "static");
	return 0;
}

int link_parse_address(const char *text, struct sockaddr_in *out)
{
	char host[NET_IPV4_ADDR_LEN];
	const char *colon = strrchr(text, ':');

	if (colon == NULL || colon == text || (size_t)(colon - text) >= sizeof(host)) {
		return -EINVAL;
	}
	memcpy(host, text, colon - text);
	host[colon - text] = '\0';
	char *end;
	unsigned long port = strtoul(colon + 1, &end, 10);

	if (*(colon + 1) == '\0' || *end != '\0' || port == 0 || port > 65535) {
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	return net_addr_pton(AF_INET, host, &out->sin_addr) == 0 ? 0 : -EINVAL;
}

static void delete_credentials(void)
{
	(void)tls_credential_delete(CONFIG_WASMBED_SEC_TAG, TLS_CREDENTIAL_CA_CERTIFICATE);
	(void)tls_credential_delete(CONFIG_WASMBED_SEC_TAG, TLS_CREDENTIAL_PUBLIC_CERTIFICATE);
	(void)tls_credential_delete(CONFIG_WASMBED_SEC_TAG, TLS_CREDENTIAL_PRIVATE_KEY);
}

int link_set_credentials(const uint8_t *gateway_ca, size_t gateway_ca_len,
			 const wb_credentials *credentials)
{
	if (credentials->certificate_len > sizeof(client_cert) ||
	    credentials->private_key_len > sizeof(client_key)) {
		return -E2BIG;
	}
	/* Removed first: Zephyr points at the buffers rewritten below. */
	delete_credentials();
	memset(client_key, 0, sizeof(client_key));
	memcpy(client_cert, credentials->certificate, credentials->certificate_len);
	memcpy(client_key, credentials->private_key, credentials->private_key_len);

	int err = tls_credential_add(CONFIG_WASMBED_SEC_TAG, TLS_CREDENTIAL_CA_CERTIFICATE,
				     gateway_ca, gateway_ca_len);
	if (err == 0) {
		err = tls_credential_add(CONFIG_WASMBED_SEC_TAG,
					 TLS_CREDENTIAL_PUBLIC_CERTIFICATE, client_cert,
					 credentials->certificate_len);
	}
	if (err == 0) {
		err = tls_credential_add(CONFIG_WASMBED_SEC_TAG, TLS_CREDENTIAL_PRIVATE_KEY,
					 client_key, credentials->private_key_len);
	}
	if (err != 0) {
		delete_credentials();
	}
	return err;
}

/* State of the certificate check during one handshake. */
struct gateway_check {
	const wb_agent *agent;
	bool leaf_accepted;
	bool refused;
};

/* Most certificates of the gateway's chain handed to the agent's check: it
 * accepts exactly one, so more only make the refusal's count.
 */
#define CHAIN_MAX 8

/*
 * mbedTLS's verify callback, called for each certificate of the chain it
 * built, from the trust anchor (the highest depth) down to the gateway's own
 * (depth 0, whose `next` are the other certificates the gateway sent). The
 * agent decides, at depth 0, over what the gateway sent, with the very check
 * the Rust firmware runs (firmware/agent/src/x509.rs): one certificate,
 * issued directly by the provisioned gateway CA, not a CA itself, naming the
 * gateway. A flag set here fails the handshake before a byte of the protocol
 * is sent; flags mbedTLS set itself (a chain to an unknown CA) fail it too.
 */
static int verify_gateway(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct gateway_check *check = ctx;

	if (depth > 0) {
		return 0;
	}
	const uint8_t *certificates[CHAIN_MAX];
	size_t lengths[CHAIN_MAX];
	size_t count = 0;

	for (const mbedtls_x509_crt *c = crt; c != NULL && c->raw.len != 0 && count < CHAIN_MAX;
	     c = c->next) {
		certificates[count] = c->raw.p;
		lengths[count] = c->raw.len;
		count++;
	}
	char line[128];

	agent_enter();
	wb_status status = wb_agent_check_gateway_chain(check->agent, certificates, lengths, count,
							line, sizeof(line));
	agent_leave();
	if (status != WB_STATUS_OK) {
		console_line("%s", line);
		check->refused = true;
		*flags |= MBEDTLS_X509_BADCERT_NOT_TRUSTED;
		return 0;
	}
	check->leaf_accepted = true;
	return 0;
}

int link_connect(const wb_agent *agent, const struct sockaddr_in *gateway, const char *server_name,
		 struct link_attempt *attempt)
{
	static const sec_tag_t tags[] = {CONFIG_WASMBED_SEC_TAG};
	static const int required = TLS_PEER_VERIFY_REQUIRED;
	struct gateway_check check = {.agent = agent};
	struct tls_cert_verify_cb verify = {.cb = verify_gateway, .ctx = &check};

	memset(attempt, 0, sizeof(*attempt));
	int sock = zsock_socket(AF_INET, SOCK_STREAM, IPPROTO_TLS_1_3);

	if (sock < 0) {
		attempt->error = errno;
		return -1;
	}
	if (zsock_setsockopt(sock, SOL_TLS, TLS_SEC_TAG_LIST, tags, sizeof(tags)) < 0 ||
	    zsock_setsockopt(sock, SOL_TLS, TLS_HOSTNAME, server_name, strlen(server_name)) < 0 ||
	    zsock_setsockopt(sock, SOL_TLS, TLS_PEER_VERIFY, &required, sizeof(required)) < 0 ||
	    zsock_setsockopt(sock, SOL_TLS, TLS_CERT_VERIFY_CALLBACK, &verify, sizeof(verify)) <
		    0) {
		attempt->error = errno;
		zsock_close(sock);
		return -1;
	}

	uint32_t started = k_cycle_get_32();
	uint64_t busy_before = platform_busy_cycles();
	int ret = zsock_connect(sock, (const struct sockaddr *)gateway, sizeof(*gateway));
	int error = ret < 0 ? errno : 0;

	attempt->handshake_us = k_cyc_to_us_floor64(k_cycle_get_32() - started);
	attempt->busy_us = k_cyc_to_us_floor64(platform_busy_cycles() - busy_before);
	attempt->stack_peak = platform_stack_peak();
	attempt->heap_used = platform_heap_used();
	attempt->certificate_refused = check.refused;
	/* Trust only a handshake in which the agent's check ran and passed. */
	if (error == 0 && (!check.leaf_accepted || check.refused)) {
		error = ECONNABORTED;
		attempt->certificate_refused = true;
	}
	if (error != 0) {
		attempt->error = error;
		zsock_close(sock);
		return -1;
	}
	return sock;
}

void link_close(int sock)
{
	(void)zsock_close(sock);
}

const char *link_describe(int error)
{
	switch (error) {
	case ECONNREFUSED:
		return "the gateway refused the connection";
	case ETIMEDOUT:
		return "timed out";
	case ECONNABORTED:
		return "TLS error";
	case ECONNRESET:
		return "the gateway closed the connection";
	case ENETUNREACH:
	case EHOSTUNREACH:
		return "the gateway is unreachable";
	case ENOMEM:
	case ENOBUFS:
		return "out of memory";
	default:
		return "link error";
	}
}
