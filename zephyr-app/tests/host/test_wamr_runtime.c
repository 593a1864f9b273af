/*
 * The WAMR runtime glue on the host: the sample applications give the
 * Rust firmware's results, and the cases of firmware/agent/tests/runtime.rs
 * give wasmi's verdicts and trap codes. The agent's wb_invocation_* and
 * wb_host_import_allowed are test doubles here (see the end of the file).
 *
 * Usage: wamr_runtime_test APPS_DIR WASM_DIR FIXTURES_DIR
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wamr_runtime.h"
#include "wasm_export.h"

/* ---- the test double of the agent's invocation ---- */

struct wb_invocation {
    wb_value returned[WB_MAX_RESULTS];
    size_t returned_count;
    wb_value reported[WB_MAX_RESULTS];
    size_t reported_count;
    bool overflowed;
    char logs[WB_MAX_LOG_LINES][WB_LOG_LINE_LEN + 1];
    size_t log_count;
    bool logs_truncated;
    bool trapped;
    uint16_t trap_code;
    uint64_t fuel_used;
    bool fuel_set;
};

void
wb_invocation_return(wb_invocation *inv, const wb_value *value)
{
    if (inv->returned_count == WB_MAX_RESULTS) {
        inv->overflowed = true;
        return;
    }
    inv->returned[inv->returned_count++] = *value;
}

bool
wb_invocation_report(wb_invocation *inv, const wb_value *value)
{
    if (inv->reported_count == WB_MAX_RESULTS) {
        inv->overflowed = true;
        return false;
    }
    inv->reported[inv->reported_count++] = *value;
    return true;
}

void
wb_invocation_log(wb_invocation *inv, const char *text, size_t len)
{
    if (len > WB_LOG_LINE_LEN) {
        /* The glue reads at most a line's worth of the module's memory. */
        fprintf(stderr, "log of %zu bytes handed over\n", len);
        abort();
    }
    if (inv->log_count == WB_MAX_LOG_LINES) {
        inv->logs_truncated = true;
        return;
    }
    memcpy(inv->logs[inv->log_count], text, len);
    inv->logs[inv->log_count][len] = '\0';
    inv->log_count++;
}

void
wb_invocation_trap(wb_invocation *inv, uint16_t trap_code)
{
    if (!inv->trapped) {
        inv->trapped = true;
        inv->trap_code = trap_code;
    }
}

void
wb_invocation_fuel_used(wb_invocation *inv, uint64_t fuel)
{
    inv->fuel_used = fuel;
    inv->fuel_set = true;
}

/* The host API of docs/host-api.md, as wasmbed_agent::runtime::
 * HOST_FUNCTIONS lists it. */
bool
wb_host_import_allowed(const char *module, const char *name,
                       const uint8_t *params, size_t param_count,
                       const uint8_t *results, size_t result_count)
{
    static const struct {
        const char *name;
        const char *params;
        const char *results;
    } api[] = {
        { "log", "\0\0", "" },     { "clock_ms", "", "\1" },
        { "report_i32", "\0", "" }, { "report_i64", "\1", "" },
        { "report_f32", "\2", "" }, { "report_f64", "\3", "" },
    };
    static const size_t param_counts[] = { 2, 0, 1, 1, 1, 1 };
    static const size_t result_counts[] = { 0, 1, 0, 0, 0, 0 };
    if (strcmp(module, "wasmbed") != 0) {
        return false;
    }
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
        if (strcmp(api[i].name, name) == 0) {
            return param_count == param_counts[i]
                   && result_count == result_counts[i]
                   && memcmp(params, api[i].params, param_count) == 0
                   && memcmp(results, api[i].results, result_count) == 0;
        }
    }
    return false;
}

/* ---- the harness ---- */

static const char *apps_dir, *wasm_dir, *fixtures_dir;
static wb_runtime runtime;
static int failures, checks;

#define CHECK(cond, ...)                                           \
    do {                                                           \
        checks++;                                                  \
        if (!(cond)) {                                             \
            failures++;                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, \
                    #cond);                                        \
            fprintf(stderr, __VA_ARGS__);                          \
            fputc('\n', stderr);                                   \
        }                                                          \
    } while (0)

struct module {
    uint8_t *bytes;
    size_t len;
};

static struct module
read_module(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.wasm", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    struct module m = { malloc(1 << 20), 0 };
    m.len = fread(m.bytes, 1, 1 << 20, f);
    fclose(f);
    return m;
}

static struct module
bytes_module(const char *bytes, size_t len)
{
    struct module m = { malloc(len), len };
    memcpy(m.bytes, bytes, len);
    return m;
}

static wb_value
i32(int32_t v)
{
    return (wb_value){ .kind = WB_VALUE_KIND_I32, .of.i32 = v };
}

static wb_value
i64(int64_t v)
{
    return (wb_value){ .kind = WB_VALUE_KIND_I64, .of.i64 = v };
}

static wb_limits
limits(const char *entry, const wb_value *args, size_t count)
{
    wb_limits l;
    memset(&l, 0, sizeof l);
    l.fuel = 100000;
    l.memory_pages = 1;
    snprintf(l.entry, sizeof l.entry, "%s", entry);
    l.arg_count = count;
    for (size_t i = 0; i < count; i++) {
        l.args[i] = args[i];
    }
    return l;
}

/* validate() with its verdict: -1 for yes, else the wb_deploy_failure. */
static int
validate(const struct module *m, const wb_limits *l)
{
    uint16_t failure = 0xBEEF;
    /* validate() must leave the agent's bytes alone. */
    uint8_t *before = malloc(m->len);
    memcpy(before, m->bytes, m->len);
    bool ok = runtime.validate(runtime.ctx, m->bytes, m->len, l, &failure);
    CHECK(memcmp(before, m->bytes, m->len) == 0, "validate changed the module");
    free(before);
    return ok ? -1 : failure;
}

/* validate() then invoke() on a copy, as the agent does. */
static struct wb_invocation
run(const struct module *m, const wb_limits *l)
{
    struct wb_invocation inv;
    memset(&inv, 0, sizeof inv);
    int verdict = validate(m, l);
    CHECK(verdict == -1, "validate refused with %d", verdict);
    uint8_t *copy = malloc(m->len);
    memcpy(copy, m->bytes, m->len);
    runtime.invoke(runtime.ctx, copy, m->len, l, &inv);
    free(copy);
    CHECK(inv.fuel_set, "fuel_used not reported");
    return inv;
}

static struct wb_invocation
invoke_only(const struct module *m, const wb_limits *l)
{
    struct wb_invocation inv;
    memset(&inv, 0, sizeof inv);
    uint8_t *copy = malloc(m->len);
    memcpy(copy, m->bytes, m->len);
    runtime.invoke(runtime.ctx, copy, m->len, l, &inv);
    free(copy);
    return inv;
}

static bool
value_is(const wb_value *v, wb_value want)
{
    if (v->kind != want.kind) {
        return false;
    }
    switch (v->kind) {
        case WB_VALUE_KIND_I32:
            return v->of.i32 == want.of.i32;
        case WB_VALUE_KIND_I64:
            return v->of.i64 == want.of.i64;
        case WB_VALUE_KIND_F32:
            return v->of.f32 == want.of.f32;
        default:
            return v->of.f64 == want.of.f64;
    }
}

#define EXPECT_TRAP(inv, code, what)                                       \
    CHECK((inv).trapped && (inv).trap_code == (code),                      \
          "%s: trapped %d with %u, want %u", what, (inv).trapped,          \
          (inv).trap_code, (unsigned)(code))

#define EXPECT_RETURNED(inv, what)                                          \
    CHECK(!(inv).trapped, "%s: trapped with %u", what, (inv).trap_code)

static struct module
wat(const char *name)
{
    return read_module(wasm_dir, name);
}

/* ---- the sample applications (apps/README.md) ---- */

static void
test_sample_apps(void)
{
    struct module primes = read_module(apps_dir, "primes");
    wb_value arg = i32(10000);
    wb_limits l = limits("run", &arg, 1);
    l.fuel = 50000000;
    struct wb_invocation inv = run(&primes, &l);
    EXPECT_RETURNED(inv, "primes");
    CHECK(inv.returned_count == 1 && value_is(&inv.returned[0], i32(1229)),
          "primes returned %d", inv.returned[0].of.i32);
    CHECK(inv.reported_count == 1 && value_is(&inv.reported[0], i32(9973)),
          "primes reported %d", inv.reported[0].of.i32);
    CHECK(inv.log_count == 1
              && strncmp(inv.logs[0], "primes below 10000: 1229 in ", 28) == 0,
          "primes logged %s", inv.logs[0]);

    struct module fib = read_module(apps_dir, "fib");
    arg = i64(20);
    l = limits("run", &arg, 1);
    l.fuel = 50000000;
    inv = run(&fib, &l);
    EXPECT_RETURNED(inv, "fib");
    CHECK(inv.returned_count == 1 && value_is(&inv.returned[0], i64(6765)),
          "fib returned %lld", (long long)inv.returned[0].of.i64);
    CHECK(inv.log_count == 1 && strcmp(inv.logs[0], "fibonacci from WAT") == 0,
          "fib logged %s", inv.logs[0]);

    struct module spin = read_module(apps_dir, "spin");
    l = limits("run", NULL, 0);
    l.fuel = 1000000;
    inv = run(&spin, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_OUT_OF_FUEL, "spin");
    CHECK(inv.fuel_used == l.fuel, "spin used %llu",
          (unsigned long long)inv.fuel_used);

    struct module trap = read_module(apps_dir, "trap");
    arg = i32(7);
    l = limits("run", &arg, 1);
    inv = run(&trap, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_INTEGER_DIVISION_BY_ZERO, "trap");
}

/* ---- firmware/agent/tests/runtime.rs, case by case ---- */

static void
test_returns_values_computed_from_arguments(void)
{
    struct module m = wat("returns");
    wb_value args[] = { i32(20), i64(22) };
    wb_limits l = limits("main", args, 2);
    struct wb_invocation inv = run(&m, &l);
    EXPECT_RETURNED(inv, "returns");
    CHECK(inv.returned_count == 2 && value_is(&inv.returned[0], i64(42))
              && inv.returned[1].kind == WB_VALUE_KIND_F64
              && inv.returned[1].of.f64 == 1.5,
          "returned %zu values", inv.returned_count);
}

static void
test_traps_map_to_protocol_codes(void)
{
    static const struct {
        const char *module;
        const char *entry;
        int32_t arg;
        uint16_t code;
    } cases[] = {
        { "trap_unreachable", "main", -1, WB_TRAP_CODE_UNREACHABLE },
        { "trap_div_zero", "main", -1, WB_TRAP_CODE_INTEGER_DIVISION_BY_ZERO },
        { "trap_out_of_bounds", "main", -1, WB_TRAP_CODE_MEMORY_OUT_OF_BOUNDS },
        { "trap_recursion", "main", -1, WB_TRAP_CODE_STACK_OVERFLOW },
        { "trap_overflow", "main", -1, WB_TRAP_CODE_INTEGER_OVERFLOW },
        { "trap_conversion", "main", -1, WB_TRAP_CODE_BAD_CONVERSION_TO_INTEGER },
        { "trap_indirect", "main", 1, WB_TRAP_CODE_INDIRECT_CALL_TO_NULL },
        { "trap_indirect", "main", 5, WB_TRAP_CODE_TABLE_OUT_OF_BOUNDS },
        { "trap_indirect", "mismatch", -1, WB_TRAP_CODE_BAD_SIGNATURE },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct module m = wat(cases[i].module);
        wb_value arg = i32(cases[i].arg);
        wb_limits l = limits(cases[i].entry, &arg, cases[i].arg >= 0 ? 1 : 0);
        struct wb_invocation inv = run(&m, &l);
        EXPECT_TRAP(inv, cases[i].code, cases[i].module);
        CHECK(inv.returned_count == 0, "%s returned values", cases[i].module);
    }
    /* Within the limits the indirect call works. */
    struct module m = wat("trap_indirect");
    wb_value arg = i32(0);
    wb_limits l = limits("main", &arg, 1);
    struct wb_invocation inv = run(&m, &l);
    EXPECT_RETURNED(inv, "call_indirect of slot 0");
}

static void
test_a_runaway_loop_is_stopped_by_its_fuel(void)
{
    struct module m = wat("spin");
    wb_limits l = limits("main", NULL, 0);
    struct wb_invocation inv = run(&m, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_OUT_OF_FUEL, "spin");
    CHECK(inv.fuel_used == l.fuel, "used %llu", (unsigned long long)inv.fuel_used);
    /* Fuel is counted in instructions: a loop of 2 (loop, br) runs out
     * after the limit, however small. */
    l.fuel = 3;
    inv = run(&m, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_OUT_OF_FUEL, "spin, 3 fuel");
}

static void
test_memory_cannot_grow_beyond_the_limit(void)
{
    struct module m = wat("grow");
    wb_value arg = i32(2);
    wb_limits l = limits("main", &arg, 1);
    l.memory_pages = 2;
    struct wb_invocation inv = run(&m, &l);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(-1)),
          "grow by 2 returned %d", inv.returned[0].of.i32);
    arg = i32(1);
    l = limits("main", &arg, 1);
    l.memory_pages = 2;
    inv = run(&m, &l);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(1)),
          "grow by 1 returned %d", inv.returned[0].of.i32);
    /* A limit of 0 pages (WAMR's "no limit"). */
    m = wat("grow_from_zero");
    l = limits("main", &arg, 1);
    l.memory_pages = 0;
    inv = run(&m, &l);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(-1)),
          "grow from 0 under a limit of 0 returned %d", inv.returned[0].of.i32);
    arg = i32(0);
    l = limits("main", &arg, 1);
    l.memory_pages = 0;
    inv = run(&m, &l);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(0)),
          "grow by 0 returned %d", inv.returned[0].of.i32);
}

static void
test_a_module_needing_more_memory_than_allowed_is_refused(void)
{
    wb_limits l = limits("main", NULL, 0);
    struct module m = wat("memory_exported_3");
    CHECK(validate(&m, &l) == WB_DEPLOY_FAILURE_OUT_OF_MEMORY, "exported");
    m = wat("memory_hidden_3");
    CHECK(validate(&m, &l) == -1, "hidden memory refused at install");
    struct wb_invocation inv = invoke_only(&m, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_MEMORY_LIMIT, "hidden memory of 3 pages");
}

static void
test_log_lines_are_captured_cut_and_counted(void)
{
    struct module m = wat("logs");
    wb_value arg = i32(WB_MAX_LOG_LINES);
    wb_limits l = limits("main", &arg, 1);
    struct wb_invocation inv = run(&m, &l);
    EXPECT_RETURNED(inv, "logs");
    CHECK(inv.log_count == WB_MAX_LOG_LINES && inv.logs_truncated,
          "%zu lines", inv.log_count);
    CHECK(strcmp(inv.logs[0], "hello") == 0, "line 0 %s", inv.logs[0]);
    CHECK(strlen(inv.logs[1]) == WB_LOG_LINE_LEN
              && strspn(inv.logs[1], "x") == WB_LOG_LINE_LEN,
          "line 1 %s", inv.logs[1]);
    arg = i32(WB_MAX_LOG_LINES - 2);
    l = limits("main", &arg, 1);
    inv = run(&m, &l);
    CHECK(inv.log_count == WB_MAX_LOG_LINES && !inv.logs_truncated,
          "%zu lines", inv.log_count);
}

static void
test_a_log_outside_memory_traps(void)
{
    struct module m = wat("log_out_of_bounds");
    wb_limits l = limits("main", NULL, 0);
    struct wb_invocation inv = run(&m, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_MEMORY_OUT_OF_BOUNDS, "log out of bounds");
    CHECK(inv.log_count == 0, "logged anyway");
}

static void
test_reported_values_follow_returned_ones(void)
{
    struct module m = wat("reports");
    wb_limits l = limits("main", NULL, 0);
    struct wb_invocation inv = run(&m, &l);
    EXPECT_RETURNED(inv, "reports");
    CHECK(inv.returned_count == 1 && inv.returned[0].kind == WB_VALUE_KIND_I64
              && inv.returned[0].of.i64 >= 1000,
          "clock_ms returned %lld", (long long)inv.returned[0].of.i64);
    CHECK(inv.reported_count == 2 && value_is(&inv.reported[0], i32(7))
              && inv.reported[1].kind == WB_VALUE_KIND_F32
              && inv.reported[1].of.f32 == 0.5f,
          "%zu reported", inv.reported_count);

    m = wat("too_many_reports");
    inv = run(&m, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_HOST_ERROR, "too many reports");
}

static void
test_imports_outside_the_host_api_are_refused(void)
{
    static const char *cases[] = { "import_env", "import_unknown_name",
                                   "import_wrong_signature", "import_memory",
                                   "import_log_without_memory" };
    wb_limits l = limits("main", NULL, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct module m = wat(cases[i]);
        int verdict = validate(&m, &l);
        CHECK(verdict == WB_DEPLOY_FAILURE_IMPORT_NOT_ALLOWED, "%s: %d",
              cases[i], verdict);
        /* Invoked anyway, it does not run. */
        struct wb_invocation inv = invoke_only(&m, &l);
        EXPECT_TRAP(inv, WB_TRAP_CODE_HOST_ERROR, cases[i]);
    }
}

static void
test_bad_bytes_and_bad_entry_points_are_refused(void)
{
    wb_limits none = limits("main", NULL, 0);
    struct module garbage = bytes_module("\0asm\x01\0\0\0garbage", 15);
    CHECK(validate(&garbage, &none) == WB_DEPLOY_FAILURE_INVALID_MODULE,
          "garbage");
    struct module text = bytes_module("not wasm", 8);
    CHECK(validate(&text, &none) == WB_DEPLOY_FAILURE_INVALID_MODULE, "text");
    struct module simd = wat("simd");
    CHECK(validate(&simd, &none) == WB_DEPLOY_FAILURE_INVALID_MODULE, "simd");
    struct module two = wat("two_memories");
    CHECK(validate(&two, &none) == WB_DEPLOY_FAILURE_INVALID_MODULE,
          "two memories");

    struct module m = wat("entries");
    wb_value one = i32(1), wide = i64(1);
    wb_limits start = limits("start", NULL, 0), g = limits("g", NULL, 0);
    wb_limits wrong = limits("main", &wide, 1), right = limits("main", &one, 1);
    CHECK(validate(&m, &start) == WB_DEPLOY_FAILURE_BAD_ENTRY_POINT, "missing");
    CHECK(validate(&m, &none) == WB_DEPLOY_FAILURE_BAD_ENTRY_POINT, "no args");
    CHECK(validate(&m, &wrong) == WB_DEPLOY_FAILURE_BAD_ENTRY_POINT, "i64 arg");
    CHECK(validate(&m, &g) == WB_DEPLOY_FAILURE_BAD_ENTRY_POINT, "a global");
    CHECK(validate(&m, &right) == -1, "the right entry refused");
    struct wb_invocation inv = invoke_only(&m, &wrong);
    EXPECT_TRAP(inv, WB_TRAP_CODE_BAD_SIGNATURE, "invoked with a bad entry");

    struct module five = wat("five_results");
    CHECK(validate(&five, &none) == WB_DEPLOY_FAILURE_BAD_ENTRY_POINT,
          "five results");
}

static void
test_start_functions_run_within_the_fuel_and_nothing_else_runs(void)
{
    wb_limits l = limits("main", NULL, 0);
    struct module m = wat("start_spins");
    struct wb_invocation inv = run(&m, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_OUT_OF_FUEL, "start spins");
    CHECK(inv.fuel_used == l.fuel, "used %llu", (unsigned long long)inv.fuel_used);

    m = wat("start_sets");
    inv = run(&m, &l);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(7)),
          "start did not run first: %d", inv.returned[0].of.i32);

    /* WAMR would call these two at instantiation (wasmi does not); the
     * second would never return. */
    m = wat("ctors_not_called");
    inv = run(&m, &l);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(0)),
          "__wasm_call_ctors ran: trapped %d, %d", inv.trapped,
          inv.returned[0].of.i32);
    /* ... but they stay callable as entry points. */
    l = limits("__wasm_call_ctors", NULL, 0);
    inv = run(&m, &l);
    EXPECT_RETURNED(inv, "__wasm_call_ctors as entry");
}

static void
test_the_documented_examples_run(void)
{
    struct module doc = wat("doc_example");
    struct module rust = read_module(fixtures_dir, "rust_example");
    const struct {
        struct module *m;
        const char *entry;
    } cases[] = { { &doc, "main" }, { &rust, "run" } };
    for (size_t i = 0; i < 2; i++) {
        wb_value arg = i32(21);
        wb_limits l = limits(cases[i].entry, &arg, 1);
        struct wb_invocation inv = run(cases[i].m, &l);
        EXPECT_RETURNED(inv, cases[i].entry);
        CHECK(inv.returned_count == 1 && value_is(&inv.returned[0], i32(42))
                  && inv.reported_count == 1
                  && inv.reported[0].kind == WB_VALUE_KIND_I64
                  && inv.reported[0].of.i64 >= 0,
              "%s: %zu returned, %zu reported", cases[i].entry,
              inv.returned_count, inv.reported_count);
        CHECK(inv.log_count == 1 && strcmp(inv.logs[0], "hello from wasm") == 0,
              "%s logged %s", cases[i].entry, inv.logs[0]);
    }
}

static void
test_one_memory_and_one_table_at_most(void)
{
    wb_limits l = limits("main", NULL, 0);
    struct module two = wat("two_tables");
    CHECK(validate(&two, &l) == -1, "two tables refused at install");
    struct wb_invocation inv = invoke_only(&two, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_HOST_ERROR, "two tables");
    /* table.grow beyond 1024 elements returns -1, within succeeds. */
    struct module grow = wat("table_grow");
    wb_value arg = i32(425);
    wb_limits g = limits("main", &arg, 1);
    inv = run(&grow, &g);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(-1)),
          "table.grow to 1025 returned %d", inv.returned[0].of.i32);
    arg = i32(424);
    g = limits("main", &arg, 1);
    inv = run(&grow, &g);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(600)),
          "table.grow to 1024 returned %d", inv.returned[0].of.i32);
    struct module big = wat("big_table");
    inv = invoke_only(&big, &l);
    EXPECT_TRAP(inv, WB_TRAP_CODE_HOST_ERROR, "a table of 2000");
}

static void
test_the_webassembly_features_devices_run(void)
{
    wb_limits l = limits("main", NULL, 0);
    struct module m = wat("features");
    struct wb_invocation inv = run(&m, &l);
    /* 42 - 1 + 2147483647 + 7 - 2147483647 */
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(48)),
          "features: trapped %d, %d", inv.trapped, inv.returned[0].of.i32);
    m = wat("mutable_global_export");
    inv = run(&m, &l);
    CHECK(!inv.trapped && value_is(&inv.returned[0], i32(1)),
          "an exported mutable global: trapped %d", inv.trapped);
}

/* ---- main ---- */

/* The largest block WAMR's pool can give now. */
static uint32_t
largest_free_block(void)
{
    uint32_t low = 0, high = 1u << 24;
    while (low + 8 < high) {
        uint32_t mid = low + (high - low) / 2;
        void *block = wasm_runtime_malloc(mid);
        if (block != NULL) {
            wasm_runtime_free(block);
            low = mid;
        }
        else {
            high = mid;
        }
    }
    return low;
}

static uint64_t
fake_now_ms(void *ctx)
{
    (void)ctx;
    return 1234;
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s APPS_DIR WASM_DIR FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    apps_dir = argv[1];
    wasm_dir = argv[2];
    fixtures_dir = argv[3];

    /* As on the device: one pool, sized like CONFIG_WASMBED_WAMR_POOL_SIZE. */
    static uint8_t pool[160 * 1024] __attribute__((aligned(8)));
    wamr_runtime_config config = {
        .pool = pool,
        .pool_size = sizeof pool,
        .stack_size = 16 * 1024,
        .now_ms = fake_now_ms,
    };
    if (wamr_runtime_init(&config, &runtime) != 0) {
        fprintf(stderr, "wamr_runtime_init failed\n");
        return 1;
    }
    CHECK(runtime.kind == WB_RUNTIME_KIND_WAMR
              && strcmp(runtime.version, "2.4.3") == 0,
          "kind %u version %s", runtime.kind, runtime.version);
    uint32_t largest_before = largest_free_block();

    static const struct {
        const char *name;
        void (*run)(void);
    } tests[] = {
        { "sample_apps", test_sample_apps },
        { "returns_values_computed_from_arguments",
          test_returns_values_computed_from_arguments },
        { "traps_map_to_protocol_codes", test_traps_map_to_protocol_codes },
        { "a_runaway_loop_is_stopped_by_its_fuel",
          test_a_runaway_loop_is_stopped_by_its_fuel },
        { "memory_cannot_grow_beyond_the_limit",
          test_memory_cannot_grow_beyond_the_limit },
        { "a_module_needing_more_memory_than_allowed_is_refused",
          test_a_module_needing_more_memory_than_allowed_is_refused },
        { "log_lines_are_captured_cut_and_counted",
          test_log_lines_are_captured_cut_and_counted },
        { "a_log_outside_memory_traps", test_a_log_outside_memory_traps },
        { "reported_values_follow_returned_ones",
          test_reported_values_follow_returned_ones },
        { "imports_outside_the_host_api_are_refused",
          test_imports_outside_the_host_api_are_refused },
        { "bad_bytes_and_bad_entry_points_are_refused",
          test_bad_bytes_and_bad_entry_points_are_refused },
        { "start_functions_run_within_the_fuel_and_nothing_else_runs",
          test_start_functions_run_within_the_fuel_and_nothing_else_runs },
        { "the_documented_examples_run", test_the_documented_examples_run },
        { "the_webassembly_features_devices_run",
          test_the_webassembly_features_devices_run },
        { "one_memory_and_one_table_at_most",
          test_one_memory_and_one_table_at_most },
    };
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before_failures = failures;
        tests[i].run();
        bool ok = failures == before_failures;
        printf("%s %s\n", ok ? "ok  " : "FAIL", tests[i].name);
        ok ? passed++ : failed++;
    }

    /* Nothing stays allocated between calls: the pool's largest free
     * block is as large as before. (WAMR's free-byte count is no measure:
     * its allocator's bookkeeping drifts upwards.) */
    uint32_t largest_after = largest_free_block();
    bool no_leak = largest_after == largest_before;
    printf("%s nothing_stays_allocated (largest free block %u bytes before, "
           "%u after, of a %u-byte pool)\n",
           no_leak ? "ok  " : "FAIL", largest_before, largest_after,
           (unsigned)sizeof pool);
    no_leak ? passed++ : failed++;

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
