/*
 * The C side of protocol/ffi/tests/c_abi.rs: uses libwasmbed_protocol_ffi.a
 * through wasmbed_protocol.h as the Zephyr application does.
 *
 * Arguments: NAME=HEX pairs, the gateway frames the Rust test encoded.
 * Prints:
 *   layout NAME SIZE ALIGN      a struct's size and alignment as C sees it
 *   offset NAME OFFSET          a field's offset
 *   frame NAME HEX              a frame this program encoded (checked by Rust)
 * and "c_abi: all checks passed" at the end. Exits non-zero at the first
 * failed check, saying which.
 */

#include "wasmbed_protocol.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define CHECK_STATUS(call, expected)                                                    \
    do {                                                                                \
        wb_status got_ = (call);                                                        \
        checks++;                                                                       \
        if (got_ != (expected)) {                                                       \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__, \
                    #call, wb_status_name(got_), wb_status_name(expected));             \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* ------------------------------------------------------------ helpers --- */

static int argc_;
static char **argv_;

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The bytes of argument NAME=HEX into buf; exits when it is missing. */
static size_t frame_arg(const char *name, uint8_t *buf, size_t cap) {
    size_t name_len = strlen(name);
    for (int i = 1; i < argc_; i++) {
        const char *arg = argv_[i];
        if (strncmp(arg, name, name_len) != 0 || arg[name_len] != '=') continue;
        const char *hex = arg + name_len + 1;
        size_t len = strlen(hex) / 2;
        CHECK(strlen(hex) % 2 == 0 && len <= cap);
        for (size_t j = 0; j < len; j++) {
            int hi = hex_digit(hex[2 * j]), lo = hex_digit(hex[2 * j + 1]);
            CHECK(hi >= 0 && lo >= 0);
            buf[j] = (uint8_t)(hi * 16 + lo);
        }
        return len;
    }
    fprintf(stderr, "missing argument %s=HEX\n", name);
    exit(2);
}

static void print_frame(const char *name, const uint8_t *data, size_t len) {
    printf("frame %s ", name);
    for (size_t i = 0; i < len; i++) printf("%02x", data[i]);
    printf("\n");
}

static void set_text(char *field, size_t size, const char *text) {
    CHECK(strlen(text) < size);
    memset(field, 0, size);
    memcpy(field, text, strlen(text));
}

static wb_capabilities capabilities(void) {
    wb_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.runtime = WB_RUNTIME_KIND_WAMR;
    set_text(caps.runtime_version, sizeof caps.runtime_version, "2.1.0");
    caps.max_module_size = 65536;
    caps.app_memory = 98304;
    caps.app_slots = 4;
    return caps;
}

static wb_heartbeat heartbeat(void) {
    wb_heartbeat hb;
    memset(&hb, 0, sizeof hb);
    hb.uptime_ms = 123456789012ULL;
    hb.free_memory = 40960;
    hb.app_count = 2;
    hb.apps[0] = (wb_app_status){.deployment = 7, .application = 3, .state = WB_APP_STATE_RUNNING};
    hb.apps[1] = (wb_app_status){.deployment = 8, .application = 4, .state = WB_APP_STATE_FAILED};
    return hb;
}

static wb_session_start hello(void) {
    wb_session_start start;
    memset(&start, 0, sizeof start);
    set_text(start.agent_version, sizeof start.agent_version, "0.1.0");
    start.capabilities = capabilities();
    start.app_count = 1;
    start.apps[0] = (wb_app_status){.deployment = 7, .application = 3, .state = WB_APP_STATE_RUNNING};
    return start;
}

static wb_enroll_request enroll_request(void) {
    wb_enroll_request req;
    memset(&req, 0, sizeof req);
    memset(req.public_key, 0x11, sizeof req.public_key);
    req.public_key[0] = 0x04;
    memset(req.proof, 0x22, sizeof req.proof);
    set_text(req.device.board, sizeof req.device.board, "mps2-an385");
    set_text(req.device.firmware_version, sizeof req.device.firmware_version, "0.1.0");
    req.capabilities = capabilities();
    return req;
}

static const char *const LOGS[] = {"hello from wasm"};

static wb_execution_result returned_result(void) {
    wb_execution_result res;
    memset(&res, 0, sizeof res);
    res.deployment = 7;
    res.invocation = 1;
    res.value_count = 2;
    res.values[0].kind = WB_VALUE_KIND_I32;
    res.values[0].of.i32 = 42;
    res.values[1].kind = WB_VALUE_KIND_F64;
    res.values[1].of.f64 = 1.5;
    res.fuel_used = 1234;
    res.duration_us = 87;
    res.logs = LOGS;
    res.log_count = 1;
    return res;
}

/* Sends everything the session has pending, printed as frame NAME. */
static void transmit(wb_device_session *s, const char *name) {
    const uint8_t *data = NULL;
    size_t len = 99;
    CHECK_STATUS(wb_device_session_transmit(s, &data, &len), WB_STATUS_OK);
    CHECK(len > 0 && data != NULL);
    print_frame(name, data, len);
    CHECK_STATUS(wb_device_session_advance(s, len + 1), WB_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(wb_device_session_advance(s, len), WB_STATUS_OK);
    CHECK_STATUS(wb_device_session_transmit(s, &data, &len), WB_STATUS_OK);
    CHECK(len == 0);
}

/* Feeds a whole frame, in two pieces to exercise reassembly. */
static void input(wb_device_session *s, const uint8_t *data, size_t len, uint64_t now) {
    size_t taken = 0;
    size_t first = len < 3 ? len : 3;
    CHECK_STATUS(wb_device_session_input(s, data, first, now, &taken), WB_STATUS_OK);
    CHECK(taken == first);
    CHECK_STATUS(wb_device_session_input(s, data + first, len - first, now, &taken), WB_STATUS_OK);
    CHECK(taken == len - first);
}

static wb_device_event next_event(wb_device_session *s) {
    wb_device_event ev;
    CHECK(wb_device_session_poll_event(s, &ev));
    return ev;
}

static void no_event(wb_device_session *s) {
    wb_device_event ev;
    CHECK(!wb_device_session_poll_event(s, &ev));
}

/* ------------------------------------------------------------- layout --- */

#define LAYOUT(type) printf("layout %s %zu %zu\n", #type, sizeof(type), alignof(type))
#define OFFSET(type, field) printf("offset %s.%s %zu\n", #type, #field, offsetof(type, field))

static void print_layouts(void) {
    LAYOUT(wb_status);
    LAYOUT(wb_value_bits);
    LAYOUT(wb_value);
    LAYOUT(wb_app_status);
    LAYOUT(wb_heartbeat);
    LAYOUT(wb_device_info);
    LAYOUT(wb_capabilities);
    LAYOUT(wb_enroll_request);
    LAYOUT(wb_session_start);
    LAYOUT(wb_deploy_status);
    LAYOUT(wb_execution_result);
    LAYOUT(wb_error_message);
    LAYOUT(wb_enroll_challenge);
    LAYOUT(wb_enrolled);
    LAYOUT(wb_session_accept);
    LAYOUT(wb_heartbeat_ack);
    LAYOUT(wb_limits);
    LAYOUT(wb_deploy_start);
    LAYOUT(wb_deploy_chunk);
    LAYOUT(wb_close_reason);
    LAYOUT(wb_downlink_data);
    LAYOUT(wb_downlink);
    LAYOUT(wb_device_config);
    LAYOUT(wb_device_event_data);
    LAYOUT(wb_device_event);
    OFFSET(wb_heartbeat, apps);
    OFFSET(wb_execution_result, values);
    OFFSET(wb_execution_result, logs);
    OFFSET(wb_execution_result, logs_truncated);
    OFFSET(wb_deploy_start, limits);
    OFFSET(wb_limits, args);
    OFFSET(wb_downlink, data);
    OFFSET(wb_device_event, data);
    OFFSET(wb_close_reason, violation);
}

/* -------------------------------------------------------------- codec --- */

static void codec_checks(void) {
    uint8_t out[WB_FRAME_HEADER_LEN + WB_MAX_FRAME_LEN];
    size_t written = 0, off = 0, len = 0;

    /* A heartbeat round trip: encode, find the frame, decode, compare. */
    wb_heartbeat hb = heartbeat();
    CHECK_STATUS(wb_encode_heartbeat(&hb, 42, out, sizeof out, &written), WB_STATUS_OK);
    CHECK(written > WB_FRAME_HEADER_LEN);
    print_frame("heartbeat", out, written);
    CHECK_STATUS(wb_frame_find(out, written, WB_MAX_FRAME_LEN, &off, &len), WB_STATUS_OK);
    CHECK(off == WB_FRAME_HEADER_LEN && off + len == written);
    const size_t body_len = len;
    wb_heartbeat back;
    memset(&back, 0xee, sizeof back);
    uint32_t id = 0;
    CHECK_STATUS(wb_decode_heartbeat(out + off, len, &back, &id), WB_STATUS_OK);
    CHECK(id == 42);
    CHECK(back.uptime_ms == hb.uptime_ms);
    CHECK(back.free_memory == hb.free_memory);
    CHECK(back.app_count == hb.app_count);
    for (size_t i = 0; i < hb.app_count; i++) {
        CHECK(back.apps[i].deployment == hb.apps[i].deployment);
        CHECK(back.apps[i].application == hb.apps[i].application);
        CHECK(back.apps[i].state == hb.apps[i].state);
    }
    CHECK_STATUS(wb_decode_heartbeat(out + off, len, &back, NULL), WB_STATUS_OK);

    /* Framing: incomplete, too large, empty. */
    CHECK_STATUS(wb_frame_find(out, 2, WB_MAX_FRAME_LEN, &off, &len), WB_STATUS_NEED_MORE);
    CHECK(len == 0);
    CHECK_STATUS(wb_frame_find(out, written - 1, WB_MAX_FRAME_LEN, &off, &len),
                 WB_STATUS_NEED_MORE);
    CHECK(len == written - WB_FRAME_HEADER_LEN);
    CHECK_STATUS(wb_frame_find(NULL, 0, WB_MAX_FRAME_LEN, &off, &len), WB_STATUS_NEED_MORE);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x00};
    CHECK_STATUS(wb_frame_find(huge, sizeof huge, WB_MAX_FRAME_LEN, &off, &len),
                 WB_STATUS_FRAME_TOO_LARGE);
    CHECK_STATUS(wb_frame_find(out, written, 8, &off, &len), WB_STATUS_FRAME_TOO_LARGE);
    const uint8_t empty[] = {0, 0, 0, 0};
    CHECK_STATUS(wb_frame_find(empty, sizeof empty, WB_MAX_FRAME_LEN, &off, &len),
                 WB_STATUS_EMPTY_FRAME);

    /* Decoding errors. */
    const uint8_t malformed[] = {0x01};
    CHECK_STATUS(wb_decode_heartbeat(malformed, sizeof malformed, &back, NULL),
                 WB_STATUS_MALFORMED);
    wb_downlink dl;
    CHECK_STATUS(wb_decode_downlink(malformed, sizeof malformed, &dl), WB_STATUS_MALFORMED);
    CHECK(strcmp(wb_status_name(WB_STATUS_MALFORMED), "WB_STATUS_MALFORMED") == 0);
    CHECK(strcmp(wb_status_name(12345), "WB_STATUS_UNKNOWN") == 0);
    CHECK_STATUS(wb_decode_heartbeat(out + WB_FRAME_HEADER_LEN, body_len - 1, &back, NULL),
                 WB_STATUS_TRUNCATED);
    uint8_t other_version[WB_MAX_FRAME_LEN];
    memcpy(other_version, out + WB_FRAME_HEADER_LEN, body_len);
    /* The envelope is a map whose first entry is key 0, the version 1. */
    CHECK(other_version[1] == 0x00 && other_version[2] == 0x01);
    other_version[2] = 0x02;
    CHECK_STATUS(wb_decode_heartbeat(other_version, body_len, &back, NULL),
                 WB_STATUS_UNSUPPORTED_VERSION);

    /* Encoding errors. */
    CHECK_STATUS(wb_encode_heartbeat(&hb, 1, out, 8, &written), WB_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == 0);
    CHECK_STATUS(wb_encode_heartbeat(NULL, 1, out, sizeof out, &written),
                 WB_STATUS_NULL_POINTER);
    CHECK_STATUS(wb_encode_heartbeat(&hb, 1, NULL, sizeof out, &written),
                 WB_STATUS_NULL_POINTER);
    CHECK_STATUS(wb_encode_heartbeat(&hb, 1, out, sizeof out, NULL), WB_STATUS_NULL_POINTER);
    wb_heartbeat too_many = hb;
    too_many.app_count = WB_MAX_APPS + 1;
    CHECK_STATUS(wb_encode_heartbeat(&too_many, 1, out, sizeof out, &written),
                 WB_STATUS_INVALID_ARGUMENT);
    wb_enroll_request bad_text = enroll_request();
    memset(bad_text.device.board, 'x', sizeof bad_text.device.board);
    CHECK_STATUS(wb_encode_enroll_request(&bad_text, 1, out, sizeof out, &written),
                 WB_STATUS_INVALID_ARGUMENT);

    /* Every other message the device sends. */
    wb_enroll_request req = enroll_request();
    CHECK_STATUS(wb_encode_enroll_request(&req, 1, out, sizeof out, &written), WB_STATUS_OK);
    print_frame("enroll_request", out, written);

    wb_session_start start = hello();
    CHECK_STATUS(wb_encode_session_start(&start, 2, out, sizeof out, &written), WB_STATUS_OK);
    print_frame("session_start", out, written);
    /* A valid device message, but not a heartbeat. */
    CHECK_STATUS(wb_decode_heartbeat(out + WB_FRAME_HEADER_LEN, written - WB_FRAME_HEADER_LEN,
                                     &back, NULL),
                 WB_STATUS_UNEXPECTED_MESSAGE);

    wb_deploy_status failed = {.deployment = 7,
                               .state = WB_DEPLOY_STATE_FAILED,
                               .failure = WB_DEPLOY_FAILURE_HASH_MISMATCH};
    CHECK_STATUS(wb_encode_deploy_status(&failed, 3, out, sizeof out, &written), WB_STATUS_OK);
    print_frame("deploy_status", out, written);
    wb_deploy_status bad_state = {.deployment = 7, .state = 200};
    CHECK_STATUS(wb_encode_deploy_status(&bad_state, 3, out, sizeof out, &written),
                 WB_STATUS_INVALID_ARGUMENT);

    wb_execution_result trapped;
    memset(&trapped, 0, sizeof trapped);
    trapped.deployment = 7;
    trapped.invocation = 2;
    trapped.trapped = 1;
    trapped.trap_code = WB_TRAP_CODE_OUT_OF_FUEL;
    trapped.fuel_used = 1000000;
    trapped.duration_us = 52000;
    trapped.logs_truncated = 1;
    CHECK_STATUS(wb_encode_execution_result(&trapped, 4, out, sizeof out, &written),
                 WB_STATUS_OK);
    print_frame("execution_result", out, written);
    wb_execution_result no_logs = returned_result();
    no_logs.logs = NULL;
    CHECK_STATUS(wb_encode_execution_result(&no_logs, 4, out, sizeof out, &written),
                 WB_STATUS_NULL_POINTER);

    wb_error_message error = {.code = WB_ERROR_CODE_UNKNOWN_DEPLOYMENT};
    set_text(error.detail, sizeof error.detail, "deployment 9");
    CHECK_STATUS(wb_encode_error(&error, 5, out, sizeof out, &written), WB_STATUS_OK);
    print_frame("error", out, written);

    CHECK_STATUS(wb_encode_goodbye(WB_GOODBYE_REASON_RESTART, 6, out, sizeof out, &written),
                 WB_STATUS_OK);
    print_frame("goodbye", out, written);

    /* The enrollment proof's payload: context, nonce, public key. */
    uint8_t nonce[WB_NONCE_LEN], payload[WB_PROOF_PAYLOAD_LEN];
    memset(nonce, 0x33, sizeof nonce);
    CHECK_STATUS(wb_proof_payload(nonce, req.public_key, payload), WB_STATUS_OK);
    CHECK(memcmp(payload, "wasmbed-enroll-v1", 18) == 0);
    CHECK(memcmp(payload + 18, nonce, WB_NONCE_LEN) == 0);
    CHECK(memcmp(payload + 18 + WB_NONCE_LEN, req.public_key, WB_PUBLIC_KEY_LEN) == 0);
    CHECK_STATUS(wb_proof_payload(NULL, req.public_key, payload), WB_STATUS_NULL_POINTER);

    /* A gateway message decoded without a session. */
    uint8_t frame[WB_FRAME_HEADER_LEN + WB_MAX_FRAME_LEN];
    size_t frame_len = frame_arg("deploy_start", frame, sizeof frame);
    CHECK_STATUS(wb_frame_find(frame, frame_len, WB_MAX_FRAME_LEN, &off, &len), WB_STATUS_OK);
    CHECK_STATUS(wb_decode_downlink(frame + off, len, &dl), WB_STATUS_OK);
    CHECK(dl.kind == WB_DOWNLINK_KIND_DEPLOY_START);
    CHECK(dl.id == 9 && dl.has_reply_to && dl.reply_to == 4);
    CHECK(dl.data.deploy_start.deployment == 7 && dl.data.deploy_start.application == 3);
    CHECK(strcmp(dl.data.deploy_start.limits.entry, "run") == 0);
    frame_len = frame_arg("deploy_chunk", frame, sizeof frame);
    CHECK_STATUS(wb_frame_find(frame, frame_len, WB_MAX_FRAME_LEN, &off, &len), WB_STATUS_OK);
    CHECK_STATUS(wb_decode_downlink(frame + off, len, &dl), WB_STATUS_OK);
    CHECK(dl.kind == WB_DOWNLINK_KIND_DEPLOY_CHUNK && !dl.has_reply_to);
    /* Chunk data points into the decoded buffer. */
    CHECK(dl.data.deploy_chunk.data > frame && dl.data.deploy_chunk.data < frame + frame_len);
    CHECK(dl.data.deploy_chunk.data_len == 8);
    CHECK(memcmp(dl.data.deploy_chunk.data, "\0asm\1\0\0\0", 8) == 0);
}

/* ----------------------------------------------------- device session --- */

static void check_deploy_start(const wb_deploy_start *start) {
    CHECK(start->deployment == 7 && start->application == 3);
    CHECK(start->module_size == 16384 && start->chunk_size == 1024);
    for (size_t i = 0; i < WB_SHA256_LEN; i++) CHECK(start->sha256[i] == 0x44);
    CHECK(start->limits.fuel == 1000000 && start->limits.memory_pages == 1);
    CHECK(strcmp(start->limits.entry, "run") == 0);
    CHECK(start->limits.arg_count == 2);
    CHECK(start->limits.args[0].kind == WB_VALUE_KIND_I32 && start->limits.args[0].of.i32 == 5);
    CHECK(start->limits.args[1].kind == WB_VALUE_KIND_I64 && start->limits.args[1].of.i64 == -1);
}

static void resume_session(void) {
    static alignas(WB_DEVICE_SESSION_ALIGN) uint8_t storage[WB_DEVICE_SESSION_SIZE];
    uint8_t frame[WB_FRAME_HEADER_LEN + WB_MAX_FRAME_LEN];
    size_t len;
    uint64_t deadline = 0;
    wb_device_session *s = NULL;
    wb_device_config config = wb_device_config_default();
    wb_session_start start = hello();

    /* Storage and config are checked. */
    CHECK(config.max_frame_len == WB_MAX_FRAME_LEN && config.response_timeout_ms == 10000);
    CHECK_STATUS(wb_device_session_init_resume(storage, 16, &config, &start, 1000, &s),
                 WB_STATUS_BAD_STORAGE);
    CHECK(s == NULL);
    CHECK_STATUS(
        wb_device_session_init_resume(storage + 1, sizeof storage - 1, &config, &start, 1000, &s),
        WB_STATUS_BAD_STORAGE);
    wb_device_config tiny = {.max_frame_len = 16, .response_timeout_ms = 10000};
    CHECK_STATUS(wb_device_session_init_resume(storage, sizeof storage, &tiny, &start, 1000, &s),
                 WB_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(wb_device_session_init_resume(storage, sizeof storage, &config, NULL, 1000, &s),
                 WB_STATUS_NULL_POINTER);

    CHECK_STATUS(wb_device_session_init_resume(storage, sizeof storage, &config, &start, 1000, &s),
                 WB_STATUS_OK);
    CHECK(s == (wb_device_session *)storage);
    CHECK(!wb_device_session_is_established(s) && !wb_device_session_is_closed(s));
    CHECK(wb_device_session_timeout(s, &deadline) && deadline == 11000);
    transmit(s, "session_hello");
    no_event(s);

    /* A heartbeat before the session is established is refused. */
    wb_heartbeat hb = heartbeat();
    CHECK_STATUS(wb_device_session_send_heartbeat(s, &hb), WB_STATUS_INVALID_STATE);

    len = frame_arg("session_accept", frame, sizeof frame);
    input(s, frame, len, 1010);
    wb_device_event ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_ESTABLISHED);
    for (size_t i = 0; i < WB_DEVICE_ID_LEN; i++) CHECK(ev.data.established.device_id[i] == 0xab);
    CHECK(ev.data.established.server_time_ms == 1764253000000ULL);
    CHECK(ev.data.established.heartbeat_interval_ms == 10000);
    no_event(s);
    CHECK(wb_device_session_is_established(s));

    /* The heartbeat falls due after the interval. */
    CHECK(wb_device_session_timeout(s, &deadline) && deadline == 11010);
    CHECK_STATUS(wb_device_session_handle_timeout(s, 11009), WB_STATUS_OK);
    no_event(s);
    CHECK_STATUS(wb_device_session_handle_timeout(s, deadline), WB_STATUS_OK);
    CHECK(next_event(s).kind == WB_DEVICE_EVENT_KIND_HEARTBEAT_DUE);
    no_event(s);
    CHECK_STATUS(wb_device_session_send_heartbeat(s, &hb), WB_STATUS_OK);
    transmit(s, "session_heartbeat");

    len = frame_arg("heartbeat_ack", frame, sizeof frame);
    input(s, frame, len, 11020);
    ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_HEARTBEAT_ACKED);
    CHECK(ev.data.heartbeat_acked.next_interval_ms == 5000);

    /* A deployment arrives. */
    len = frame_arg("deploy_start", frame, sizeof frame);
    input(s, frame, len, 11030);
    ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_DEPLOY_START);
    check_deploy_start(&ev.data.deploy_start);

    len = frame_arg("deploy_chunk", frame, sizeof frame);
    input(s, frame, len, 11040);
    CHECK(wb_device_session_buffered_input(s) == len);
    ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_DEPLOY_CHUNK);
    CHECK(ev.data.deploy_chunk.deployment == 7 && ev.data.deploy_chunk.offset == 0);
    CHECK(ev.data.deploy_chunk.data_len == 8);
    CHECK(memcmp(ev.data.deploy_chunk.data, "\0asm\1\0\0\0", 8) == 0);
    /* The chunk lives in the session, not in the caller's buffer. */
    CHECK((const uint8_t *)ev.data.deploy_chunk.data >= storage &&
          (const uint8_t *)ev.data.deploy_chunk.data < storage + sizeof storage);
    no_event(s);

    wb_deploy_status progress = {.deployment = 7, .state = WB_DEPLOY_STATE_PROGRESS, .bytes = 8};
    CHECK_STATUS(wb_device_session_send_deploy_status(s, &progress), WB_STATUS_OK);
    wb_execution_result result = returned_result();
    CHECK_STATUS(wb_device_session_send_execution_result(s, &result), WB_STATUS_OK);
    transmit(s, "session_reports");

    /* A malformed frame ends the session: the gateway is told why. */
    const uint8_t malformed[] = {0, 0, 0, 1, 0x01};
    input(s, malformed, sizeof malformed, 11050);
    ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_CLOSED);
    CHECK(ev.data.closed.kind == WB_CLOSE_KIND_PROTOCOL_VIOLATION);
    CHECK(ev.data.closed.error_code == WB_ERROR_CODE_MALFORMED);
    CHECK(ev.data.closed.violation == WB_STATUS_MALFORMED);
    no_event(s);
    CHECK(wb_device_session_is_closed(s));
    CHECK(!wb_device_session_timeout(s, &deadline));
    transmit(s, "session_violation");
    CHECK_STATUS(wb_device_session_send_heartbeat(s, &hb), WB_STATUS_CLOSED);

    /* NULL pointers. */
    size_t taken;
    CHECK_STATUS(wb_device_session_input(NULL, frame, 1, 0, &taken), WB_STATUS_NULL_POINTER);
    CHECK_STATUS(wb_device_session_input(s, NULL, 1, 0, &taken), WB_STATUS_NULL_POINTER);
    CHECK_STATUS(wb_device_session_send_heartbeat(s, NULL), WB_STATUS_NULL_POINTER);
    CHECK(!wb_device_session_poll_event(NULL, &ev));
    CHECK(!wb_device_session_poll_event(s, NULL));
    CHECK(wb_device_session_is_closed(NULL));
}

static void enroll_session(void) {
    static alignas(WB_DEVICE_SESSION_ALIGN) uint8_t storage[WB_DEVICE_SESSION_SIZE];
    uint8_t frame[WB_FRAME_HEADER_LEN + WB_MAX_FRAME_LEN];
    size_t len;
    wb_device_session *s = NULL;
    wb_device_config config = wb_device_config_default();
    config.response_timeout_ms = 5000;

    CHECK_STATUS(wb_device_session_init_enroll(storage, sizeof storage, &config, 0, &s),
                 WB_STATUS_OK);
    const uint8_t *data;
    CHECK_STATUS(wb_device_session_transmit(s, &data, &len), WB_STATUS_OK);
    CHECK(len == 0);
    uint64_t deadline;
    CHECK(wb_device_session_timeout(s, &deadline) && deadline == 5000);

    len = frame_arg("enroll_challenge", frame, sizeof frame);
    input(s, frame, len, 10);
    wb_device_event ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_ENROLL_CHALLENGE);
    for (size_t i = 0; i < WB_NONCE_LEN; i++) CHECK(ev.data.enroll_challenge.nonce[i] == 0x33);
    wb_enroll_request req = enroll_request();
    uint8_t payload[WB_PROOF_PAYLOAD_LEN];
    CHECK_STATUS(wb_proof_payload(ev.data.enroll_challenge.nonce, req.public_key, payload),
                 WB_STATUS_OK);
    /* (A real device signs the payload here.) */
    CHECK_STATUS(wb_device_session_send_enroll_request(s, &req), WB_STATUS_OK);
    CHECK_STATUS(wb_device_session_send_enroll_request(s, &req), WB_STATUS_INVALID_STATE);
    transmit(s, "session_enroll_request");

    len = frame_arg("enroll_accepted", frame, sizeof frame);
    input(s, frame, len, 20);
    ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_ENROLLED);
    for (size_t i = 0; i < WB_DEVICE_ID_LEN; i++) CHECK(ev.data.enrolled.device_id[i] == 0xab);
    const uint8_t certificate[] = {0x30, 0x82, 0x01, 0x0a, 0xde, 0xad, 0xbe, 0xef};
    CHECK(ev.data.enrolled.certificate_len == sizeof certificate);
    CHECK(memcmp(ev.data.enrolled.certificate, certificate, sizeof certificate) == 0);

    len = frame_arg("goodbye_enrolled", frame, sizeof frame);
    input(s, frame, len, 30);
    ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_CLOSED);
    CHECK(ev.data.closed.kind == WB_CLOSE_KIND_PEER_GOODBYE);
    CHECK(ev.data.closed.goodbye_reason == WB_GOODBYE_REASON_ENROLLED);
    CHECK(ev.data.closed.violation == WB_STATUS_OK);
    CHECK(wb_device_session_is_closed(s));

    /* The same storage starts a new session; closing it says goodbye. */
    CHECK_STATUS(wb_device_session_init_enroll(storage, sizeof storage, &config, 100, &s),
                 WB_STATUS_OK);
    CHECK(!wb_device_session_is_closed(s));
    CHECK_STATUS(wb_device_session_close(s, WB_GOODBYE_REASON_SHUTDOWN), WB_STATUS_OK);
    ev = next_event(s);
    CHECK(ev.kind == WB_DEVICE_EVENT_KIND_CLOSED);
    CHECK(ev.data.closed.kind == WB_CLOSE_KIND_LOCAL_GOODBYE);
    CHECK(ev.data.closed.goodbye_reason == WB_GOODBYE_REASON_SHUTDOWN);
    transmit(s, "session_close");
}

int main(int argc, char **argv) {
    argc_ = argc;
    argv_ = argv;
    print_layouts();
    codec_checks();
    resume_session();
    enroll_session();
    printf("c_abi: all %d checks passed\n", checks);
    return 0;
}
