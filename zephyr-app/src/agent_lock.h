/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One agent, used by two kinds of callers: the main thread drives it, and
 * any thread may draw random bytes from it through the entropy device
 * (mbedTLS in the main thread, the network stack in its own). The agent is
 * not reentrant, so every call into it holds this lock.
 */
#ifndef WASMBED_AGENT_LOCK_H
#define WASMBED_AGENT_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wasmbed_agent.h"

/* Hands the agent to the entropy device once it exists. */
void agent_lock_publish(wb_agent *agent);

/* Brackets a call into the agent from the main thread. */
void agent_enter(void);
void agent_leave(void);

/*
 * Random bytes from the agent's CSPRNG. Fails (-EAGAIN) before the agent
 * exists and when called from inside an agent call (a runtime or storage
 * callback), which would re-enter it; -EWOULDBLOCK in an interrupt.
 */
int agent_random(uint8_t *buf, size_t len);

#endif /* WASMBED_AGENT_LOCK_H */
