/*
 * The agent driven from C, as the Zephyr application drives it: a NOR
 * medium over a file, a runtime of our own behind the vtable, and the
 * sans-IO loop over a byte stream (stdin from the gateway, stdout to it).
 * Console lines go to stderr.
 *
 *   agent_loop PROVISION_FILE FLASH_FILE
 *
 * Runs one connection: boots the agent, connects with the credentials it
 * hands out, and serves until the session closes and everything is sent.
 * The runtime is a test double that "runs" every module by returning twice
 * its i32 argument, logging a line and using 7 fuel; a module not starting
 * with the WebAssembly magic is refused as invalid, an entry other than
 * "main" as a bad entry point.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wasmbed_agent.h"

static void die(const char *why) {
    fprintf(stderr, "fatal: %s\n", why);
    exit(2);
}

/* ------------------------------------------------------------ medium -- */

static int32_t file_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len) {
    FILE *f = ctx;
    if (fseek(f, (long)offset, SEEK_SET) != 0) return -1;
    size_t n = fread(buf, 1, len, f);
    memset(buf + n, 0xFF, len - n); /* past the end reads as erased */
    return 0;
}

static int32_t file_put(FILE *f, uint32_t offset, const uint8_t *data, size_t len) {
    if (fseek(f, (long)offset, SEEK_SET) != 0) return -1;
    if (fwrite(data, 1, len, f) != len) return -1;
    return fflush(f) == 0 ? 0 : -1;
}

/* NOR programming only clears bits. */
static int32_t file_write(void *ctx, uint32_t offset, const uint8_t *data, size_t len) {
    uint8_t old[256];
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof old ? len - done : sizeof old;
        if (file_read(ctx, offset + (uint32_t)done, old, n) != 0) return -1;
        for (size_t i = 0; i < n; i++) old[i] &= data[done + i];
        if (file_put(ctx, offset + (uint32_t)done, old, n) != 0) return -1;
        done += n;
    }
    return 0;
}

static int32_t file_erase(void *ctx, uint32_t offset, uint32_t len) {
    uint8_t erased[256];
    memset(erased, 0xFF, sizeof erased);
    for (uint32_t at = 0; at < len; at += sizeof erased) {
        if (file_put(ctx, offset + at, erased, sizeof erased) != 0) return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- runtime -- */

static bool double_validate(void *ctx, const uint8_t *module, size_t len,
                            const wb_limits *limits, uint16_t *failure) {
    (void)ctx;
    if (len < 4 || memcmp(module, "\0asm", 4) != 0) {
        *failure = WB_DEPLOY_FAILURE_INVALID_MODULE;
        return false;
    }
    if (strcmp(limits->entry, "main") != 0 || limits->arg_count != 1 ||
        limits->args[0].kind != WB_VALUE_KIND_I32) {
        *failure = WB_DEPLOY_FAILURE_BAD_ENTRY_POINT;
        return false;
    }
    /* The host API is defined once, in Rust: ask it. */
    const uint8_t log_params[] = {WB_VALUE_KIND_I32, WB_VALUE_KIND_I32};
    if (!wb_host_import_allowed("wasmbed", "log", log_params, 2, NULL, 0)) {
        *failure = WB_DEPLOY_FAILURE_IMPORT_NOT_ALLOWED;
        return false;
    }
    return true;
}

static void double_invoke(void *ctx, uint8_t *module, size_t len, const wb_limits *limits,
                          wb_invocation *invocation) {
    (void)ctx;
    (void)module;
    (void)len;
    static const char line[] = "double from C";
    wb_invocation_log(invocation, line, sizeof line - 1);
    if (limits->fuel < 7) {
        wb_invocation_fuel_used(invocation, limits->fuel);
        wb_invocation_trap(invocation, WB_TRAP_CODE_OUT_OF_FUEL);
        return;
    }
    wb_value result = {.kind = WB_VALUE_KIND_I32, .of = {.i32 = limits->args[0].of.i32 * 2}};
    wb_invocation_return(invocation, &result);
    wb_invocation_fuel_used(invocation, 7);
}

/* ---------------------------------------------------------- platform -- */

static uint64_t now_us(void *ctx) {
    (void)ctx;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static uint64_t now_ms(void) { return now_us(NULL) / 1000u; }

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open the provisioning file");
    static uint8_t bytes[8192];
    *len = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    return bytes;
}

static void print_events(wb_agent *agent) {
    char line[256];
    while (wb_agent_poll(agent, now_ms(), line, sizeof line)) fprintf(stderr, "%s\n", line);
}

static void flush(wb_agent *agent) {
    for (;;) {
        const uint8_t *data;
        size_t len;
        wb_agent_transmit(agent, &data, &len);
        if (len == 0) return;
        ssize_t n = write(STDOUT_FILENO, data, len);
        if (n <= 0) die("the gateway stopped reading");
        wb_agent_advance(agent, (size_t)n);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) die("usage: agent_loop PROVISION_FILE FLASH_FILE");
    size_t provisioning_len;
    const uint8_t *provisioning = read_file(argv[1], &provisioning_len);
    FILE *flash = fopen(argv[2], "r+b");
    if (!flash) flash = fopen(argv[2], "w+b");
    if (!flash) die("cannot open the flash file");

    wb_agent_config config = wb_agent_config_default();
    snprintf(config.board, sizeof config.board, "%s", "host-c");
    wb_medium medium = {
        .ctx = flash,
        .size = wb_agent_medium_size(&config),
        .read = file_read,
        .write = file_write,
        .erase = file_erase,
    };
    wb_runtime runtime = {
        .kind = WB_RUNTIME_KIND_WAMR,
        .version = "test-double",
        .validate = double_validate,
        .invoke = double_invoke,
    };
    wb_agent_platform platform = {.now_us = now_us};
    wb_agent *agent = NULL;
    wb_status status = wb_agent_new(&config, provisioning, provisioning_len, &medium, &runtime,
                                    &platform, &agent);
    if (status != WB_STATUS_OK) {
        fprintf(stderr, "fatal: the agent cannot start: %s\n", wb_status_name(status));
        return 2;
    }
    char line[256];
    wb_agent_boot_line(agent, line, sizeof line);
    fprintf(stderr, "%s\n", line);

    wb_credentials credentials;
    if (wb_agent_credentials(agent, &credentials) != WB_STATUS_OK) die("no credentials");
    fprintf(stderr, "link: connecting with the %s certificate (%zu B, key %zu B)\n",
            credentials.enrolled ? "device" : "claim", credentials.certificate_len,
            credentials.private_key_len);
    if (wb_agent_connect(agent, now_ms()) != WB_STATUS_OK) die("cannot start a session");

    uint8_t rx[1024];
    size_t held = 0;
    for (;;) {
        print_events(agent);
        flush(agent);
        if (wb_agent_is_closed(agent)) break;
        /* Feed what is held; the rest waits until events are drained. */
        if (held > 0) {
            size_t taken = 0;
            if (wb_agent_input(agent, rx, held, now_ms(), &taken) != WB_STATUS_OK) die("input");
            memmove(rx, rx + taken, held - taken);
            held -= taken;
            if (taken > 0) continue;
        }
        uint64_t deadline;
        int timeout = -1;
        if (wb_agent_timeout(agent, &deadline)) {
            uint64_t now = now_ms();
            timeout = deadline > now ? (int)(deadline - now) : 0;
        }
        struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
        int ready = poll(&in, 1, timeout);
        if (ready < 0 && errno != EINTR) die("poll");
        if (ready > 0) {
            ssize_t n = read(STDIN_FILENO, rx + held, sizeof rx - held);
            if (n <= 0) {
                fprintf(stderr, "link: connection closed by the gateway\n");
                break;
            }
            held += (size_t)n;
        } else {
            wb_agent_handle_timeout(agent, now_ms());
        }
    }
    uint64_t at = wb_agent_disconnected(agent, now_ms());
    fprintf(stderr, "link: connection closed; reconnecting in %llu ms\n",
            (unsigned long long)(at > now_ms() ? at - now_ms() : 0));
    wb_agent_free(agent);
    fclose(flash);
    return 0;
}
