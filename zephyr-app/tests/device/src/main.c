/*
 * The WAMR runtime glue on the device (see ../CMakeLists.txt): the sample
 * applications give the Rust firmware's results, and a few cases of
 * firmware/agent/tests/runtime.rs that depend on the target (64-bit values
 * through Thumb native calls, the stack, the fuel) give wasmi's answers.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include <string.h>

#include <zephyr/arch/common/semihost.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "wamr_runtime.h"

/* ---- test doubles of the agent's invocation functions ---- */

struct wb_invocation {
	wb_value returned[WB_MAX_RESULTS];
	size_t returned_count;
	wb_value reported[WB_MAX_RESULTS];
	size_t reported_count;
	char log[WB_LOG_LINE_LEN + 1];
	size_t log_count;
	bool trapped;
	uint16_t trap_code;
	uint64_t fuel_used;
};

void wb_invocation_return(wb_invocation *inv, const wb_value *value)
{
	if (inv->returned_count < WB_MAX_RESULTS) {
		inv->returned[inv->returned_count++] = *value;
	}
}

bool wb_invocation_report(wb_invocation *inv, const wb_value *value)
{
	if (inv->reported_count == WB_MAX_RESULTS) {
		return false;
	}
	inv->reported[inv->reported_count++] = *value;
	return true;
}

void wb_invocation_log(wb_invocation *inv, const char *text, size_t len)
{
	if (inv->log_count++ == 0 && len <= WB_LOG_LINE_LEN) {
		memcpy(inv->log, text, len);
		inv->log[len] = '\0';
	}
}

void wb_invocation_trap(wb_invocation *inv, uint16_t trap_code)
{
	inv->trapped = true;
	inv->trap_code = trap_code;
}

void wb_invocation_fuel_used(wb_invocation *inv, uint64_t fuel)
{
	inv->fuel_used = fuel;
}

/* The host API of docs/host-api.md. */
bool wb_host_import_allowed(const char *module, const char *name, const uint8_t *params,
			    size_t param_count, const uint8_t *results, size_t result_count)
{
	if (strcmp(module, "wasmbed") != 0) {
		return false;
	}
	if (strcmp(name, "log") == 0) {
		return param_count == 2 && params[0] == WB_VALUE_KIND_I32 &&
		       params[1] == WB_VALUE_KIND_I32 && result_count == 0;
	}
	if (strcmp(name, "clock_ms") == 0) {
		return param_count == 0 && result_count == 1 && results[0] == WB_VALUE_KIND_I64;
	}
	static const char *const reports[] = {"report_i32", "report_i64", "report_f32",
					      "report_f64"};
	for (uint8_t kind = 0; kind < 4; kind++) {
		if (strcmp(name, reports[kind]) == 0) {
			return param_count == 1 && params[0] == kind && result_count == 0;
		}
	}
	return false;
}

/* ---- the modules ---- */

static const uint8_t primes[] = {
#include "primes.wasm.inc"
};
static const uint8_t fib[] = {
#include "fib.wasm.inc"
};
static const uint8_t spin[] = {
#include "spin.wasm.inc"
};
static const uint8_t trap[] = {
#include "trap.wasm.inc"
};
static const uint8_t recursion[] = {
#include "trap_recursion.wasm.inc"
};
static const uint8_t reports[] = {
#include "reports.wasm.inc"
};
static const uint8_t returns[] = {
#include "returns.wasm.inc"
};
static const uint8_t grow[] = {
#include "grow.wasm.inc"
};
static const uint8_t start_spins[] = {
#include "start_spins.wasm.inc"
};
static const uint8_t import_env[] = {
#include "import_env.wasm.inc"
};

/* ---- the harness ---- */

static uint8_t wamr_pool[CONFIG_WASMBED_WAMR_POOL_SIZE] __aligned(8);
/* The agent's copy of a module, writable during invoke(). */
static uint8_t module_buffer[CONFIG_WASMBED_WAMR_POOL_SIZE / 4];
static wb_runtime runtime;
static int passed, failed;

static uint64_t now_ms(void *ctx)
{
	ARG_UNUSED(ctx);
	return (uint64_t)k_uptime_get();
}

static void check(bool ok, const char *what)
{
	printk("%s %s\n", ok ? "ok  " : "FAIL", what);
	ok ? passed++ : failed++;
}

static wb_value i32(int32_t v)
{
	return (wb_value){.kind = WB_VALUE_KIND_I32, .of.i32 = v};
}

static wb_value i64(int64_t v)
{
	return (wb_value){.kind = WB_VALUE_KIND_I64, .of.i64 = v};
}

static wb_limits limits(const char *entry, const wb_value *args, size_t count, uint64_t fuel)
{
	wb_limits l;

	memset(&l, 0, sizeof(l));
	l.fuel = fuel;
	l.memory_pages = 1;
	strncpy(l.entry, entry, sizeof(l.entry) - 1);
	l.arg_count = count;
	memcpy(l.args, args, count * sizeof(*args));
	return l;
}

/* validate() then invoke(), as the agent does; *refusal gets validate's
 * failure, or -1. */
static struct wb_invocation run(const uint8_t *module, size_t len, const wb_limits *l,
				int *refusal)
{
	struct wb_invocation inv;
	uint16_t failure = 0;

	memset(&inv, 0, sizeof(inv));
	*refusal = runtime.validate(runtime.ctx, module, len, l, &failure) ? -1 : failure;
	if (*refusal == -1) {
		memcpy(module_buffer, module, len);
		runtime.invoke(runtime.ctx, module_buffer, len, l, &inv);
	}
	return inv;
}

static bool is(const wb_value *v, wb_value want)
{
	return v->kind == want.kind && memcmp(&v->of, &want.of, sizeof(v->of)) == 0;
}

int main(void)
{
	const wamr_runtime_config config = {
		.pool = wamr_pool,
		.pool_size = sizeof(wamr_pool),
		.stack_size = CONFIG_WASMBED_WAMR_STACK_SIZE,
		.now_ms = now_ms,
	};
	int refusal;

	check(wamr_runtime_init(&config, &runtime) == 0, "wamr_runtime_init");

	wb_value arg = i32(10000);
	wb_limits l = limits("run", &arg, 1, 50000000);
	struct wb_invocation inv = run(primes, sizeof(primes), &l, &refusal);
	check(!inv.trapped && inv.returned_count == 1 && is(&inv.returned[0], i32(1229)) &&
		      inv.reported_count == 1 && is(&inv.reported[0], i32(9973)) &&
		      strncmp(inv.log, "primes below 10000: 1229 in ", 28) == 0,
	      "primes(10000) returns 1229, reports 9973 and logs its count");

	arg = i64(20);
	l = limits("run", &arg, 1, 50000000);
	inv = run(fib, sizeof(fib), &l, &refusal);
	check(!inv.trapped && inv.returned_count == 1 && is(&inv.returned[0], i64(6765)) &&
		      strcmp(inv.log, "fibonacci from WAT") == 0,
	      "fib(20) returns 6765");

	l = limits("run", NULL, 0, 1000000);
	inv = run(spin, sizeof(spin), &l, &refusal);
	check(inv.trapped && inv.trap_code == WB_TRAP_CODE_OUT_OF_FUEL && inv.fuel_used == l.fuel,
	      "spin is stopped by its fuel, all of it used");

	arg = i32(7);
	l = limits("run", &arg, 1, 1000);
	inv = run(trap, sizeof(trap), &l, &refusal);
	check(inv.trapped && inv.trap_code == WB_TRAP_CODE_INTEGER_DIVISION_BY_ZERO,
	      "trap traps IntegerDivisionByZero");

	l = limits("main", NULL, 0, 1000000);
	inv = run(recursion, sizeof(recursion), &l, &refusal);
	check(inv.trapped && inv.trap_code == WB_TRAP_CODE_STACK_OVERFLOW,
	      "endless recursion traps StackOverflow");

	l = limits("main", NULL, 0, 1000);
	inv = run(reports, sizeof(reports), &l, &refusal);
	check(!inv.trapped && inv.returned_count == 1 &&
		      inv.returned[0].kind == WB_VALUE_KIND_I64 && inv.returned[0].of.i64 >= 0 &&
		      inv.reported_count == 2 && is(&inv.reported[0], i32(7)) &&
		      inv.reported[1].kind == WB_VALUE_KIND_F32 && inv.reported[1].of.f32 == 0.5f,
	      "report_i32/f32 and clock_ms pass their values");

	wb_value args[] = {i32(20), i64(22)};
	l = limits("main", args, 2, 1000);
	inv = run(returns, sizeof(returns), &l, &refusal);
	check(!inv.trapped && inv.returned_count == 2 && is(&inv.returned[0], i64(42)) &&
		      inv.returned[1].kind == WB_VALUE_KIND_F64 && inv.returned[1].of.f64 == 1.5,
	      "(i32, i64) -> (i64, f64) round-trips");

	arg = i32(1);
	l = limits("main", &arg, 1, 1000);
	inv = run(grow, sizeof(grow), &l, &refusal);
	check(!inv.trapped && is(&inv.returned[0], i32(-1)),
	      "memory.grow beyond memory_pages returns -1");

	l = limits("main", NULL, 0, 100000);
	inv = run(start_spins, sizeof(start_spins), &l, &refusal);
	check(inv.trapped && inv.trap_code == WB_TRAP_CODE_OUT_OF_FUEL,
	      "a spinning start function is stopped by the fuel");

	inv = run(import_env, sizeof(import_env), &l, &refusal);
	check(refusal == WB_DEPLOY_FAILURE_IMPORT_NOT_ALLOWED, "env.foo is refused at install");

	printk("%d passed, %d failed\n", passed, failed);
	/* Semihosting SYS_EXIT: QEMU exits 0 (ApplicationExit) or 1. */
	(void)semihost_exec((enum semihost_instr)0x18,
			    (void *)(uintptr_t)(failed == 0 ? 0x20026 : 0x20023));
	return 0;
}
