/*
 * The agent's WebAssembly runtime on WAMR 2.4.3 (classic interpreter).
 *
 * validate() and invoke() behave as the Rust firmware's wasmi runtime
 * (firmware/agent/src/runtime/wasmi.rs and check.rs) does for the same
 * module and limits: the same refusals at install, the same results and
 * trap codes when run. Where WAMR differs by itself, this file says how it
 * is brought in line:
 *
 * - WAMR runs a module's start function, and exports named
 *   __wasm_call_ctors or __post_instantiate, inside instantiation with no
 *   instruction limit. wasmi runs only the start function, within the
 *   fuel. So instantiation here runs neither: the start function is then
 *   called under the limit, the other two are not called at all.
 * - WAMR does not limit the number of tables or their size; the host API
 *   allows one table of at most 1024 elements (HOST_ERROR otherwise, and
 *   table.grow beyond returns -1).
 * - WAMR does not refuse a memory that starts above the instantiation's
 *   maximum (it warns and raises the maximum); wasmi traps MEMORY_LIMIT.
 *
 * This needs a few of WAMR's internal structures (WASMModule,
 * WASMModuleInstance) besides its public API, so this file is compiled with
 * WAMR's own build definitions (zephyr-app/wamr/CMakeLists.txt).
 *
 * Fuel. WAMR's metering (wasm_runtime_set_instruction_count_limit) counts
 * every interpreted instruction down from the limit and traps "instruction
 * limit exceeded" at zero, but 2.4.3 keeps the count in a local variable of
 * the interpreter and never tells how much is left. So fuel_used is exact
 * when the fuel runs out (the limit, as docs/host-api.md says) and unknown
 * otherwise: a call that returns or traps for another reason reports 0. For
 * the same reason the start function and the entry point each get the
 * whole limit.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include "wamr_runtime.h"

#include <stdio.h>
#include <string.h>

#include "wasm_export.h"
/* Internal: WASMModule, WASMModuleInstance (see above). */
#include "wasm_runtime.h"

/* The host API (docs/host-api.md). */
#define HOST_MODULE "wasmbed"
/* Memory a module must export for wasmbed.log to read lines from. */
#define LOG_MEMORY "memory"
/* Bytes in a WebAssembly page. */
#define WASM_PAGE 65536u
/* Elements the one table of a module may have. */
#define MAX_TABLE_ELEMENTS 1024u
/* Exports WAMR would call while instantiating (see the top of the file). */
static const char *const AUTO_CALLED_EXPORTS[] = { "__wasm_call_ctors",
                                                   "__post_instantiate" };
#define AUTO_CALLED_COUNT \
    (sizeof AUTO_CALLED_EXPORTS / sizeof AUTO_CALLED_EXPORTS[0])
/* What those exports are renamed to while instantiating: a name no
 * lookup asks for. */
static char hidden_export_name[] = "\x01wasmbed-hidden";
/* A wb_value_kind code for a type the host API has no kind for. */
#define KIND_NONE 0xFFu
/* WAMR's error messages are short; longer ones are cut. */
#define ERROR_LEN 128

static struct {
    bool ready;
    uint32_t stack_size;
    uint64_t (*now_ms)(void *ctx);
    void *clock_ctx;
} wamr;

/* What the host functions see of the invocation running them. */
struct call {
    wb_invocation *invocation;
    /* How many values report_* may still add: WB_MAX_RESULTS less the
     * entry point's results. */
    size_t report_room;
    /* A host function ended the call (wasmbed.report_* beyond room). */
    bool host_refused;
};

/* ---- host functions (module "wasmbed") ---- */

static struct call *
current_call(wasm_exec_env_t exec_env)
{
    return (struct call *)wasm_runtime_get_user_data(exec_env);
}

static void
refuse(wasm_exec_env_t exec_env, const char *why)
{
    current_call(exec_env)->host_refused = true;
    wasm_runtime_set_exception(wasm_runtime_get_module_inst(exec_env), why);
}

/* log(ptr: i32, len: i32): the line is ptr..ptr+len of the exported
 * memory, pointers unsigned; outside the memory it traps
 * MEMORY_OUT_OF_BOUNDS, as a load would. */
static void
host_log(wasm_exec_env_t exec_env, int32_t ptr, int32_t len)
{
    wasm_module_inst_t instance = wasm_runtime_get_module_inst(exec_env);
    wasm_memory_inst_t memory = wasm_runtime_lookup_memory(instance, LOG_MEMORY);
    if (memory == NULL) {
        /* validate() refuses such modules; an unchecked one fails here. */
        refuse(exec_env, "wasmbed.log: the module exports no memory");
        return;
    }
    uint64_t start = (uint32_t)ptr;
    uint64_t length = (uint32_t)len;
    uint64_t size = wasm_memory_get_cur_page_count(memory)
                    * wasm_memory_get_bytes_per_page(memory);
    if (start + length > size) {
        wasm_runtime_set_exception(instance, "out of bounds memory access");
        return;
    }
    /* Longer lines are cut to WB_LOG_LINE_LEN bytes anyway. */
    size_t kept = length < WB_LOG_LINE_LEN ? (size_t)length : WB_LOG_LINE_LEN;
    const char *base = (const char *)wasm_memory_get_base_address(memory);
    wb_invocation_log(current_call(exec_env)->invocation,
                      kept > 0 ? base + start : NULL, kept);
}

static int64_t
host_clock_ms(wasm_exec_env_t exec_env)
{
    (void)exec_env;
    uint64_t ms = wamr.now_ms(wamr.clock_ctx);
    return ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ms;
}

static void
report(wasm_exec_env_t exec_env, const wb_value *value)
{
    struct call *call = current_call(exec_env);
    if (call->report_room == 0
        || !wb_invocation_report(call->invocation, value)) {
        refuse(exec_env, "wasmbed.report: too many values");
        return;
    }
    call->report_room--;
}

static void
host_report_i32(wasm_exec_env_t exec_env, int32_t v)
{
    wb_value value = { .kind = WB_VALUE_KIND_I32, .of.i32 = v };
    report(exec_env, &value);
}

static void
host_report_i64(wasm_exec_env_t exec_env, int64_t v)
{
    wb_value value = { .kind = WB_VALUE_KIND_I64, .of.i64 = v };
    report(exec_env, &value);
}

static void
host_report_f32(wasm_exec_env_t exec_env, float v)
{
    wb_value value = { .kind = WB_VALUE_KIND_F32, .of.f32 = v };
    report(exec_env, &value);
}

static void
host_report_f64(wasm_exec_env_t exec_env, double v)
{
    wb_value value = { .kind = WB_VALUE_KIND_F64, .of.f64 = v };
    report(exec_env, &value);
}

/* WAMR keeps (and sorts) this array: not const, alive for ever. The
 * signatures are WAMR's: i i32, I i64, f f32, F f64. */
static NativeSymbol host_functions[] = {
    { "log", (void *)host_log, "(ii)", NULL },
    { "clock_ms", (void *)host_clock_ms, "()I", NULL },
    { "report_i32", (void *)host_report_i32, "(i)", NULL },
    { "report_i64", (void *)host_report_i64, "(I)", NULL },
    { "report_f32", (void *)host_report_f32, "(f)", NULL },
    { "report_f64", (void *)host_report_f64, "(F)", NULL },
};

/* ---- the install-time checks (check.rs, in the same order) ---- */

enum check {
    CHECK_OK,
    /* An import outside the host API, or with another signature. */
    CHECK_IMPORT,
    /* The exported memory starts above limits->memory_pages. */
    CHECK_MEMORY,
    /* wasmbed.log imported, no memory exported as "memory". */
    CHECK_LOG_WITHOUT_MEMORY,
    /* Entry missing, not a function, other parameters, too many or
     * non-numeric results. */
    CHECK_ENTRY,
};

/* The entry point check_module() found. */
struct entry {
    /* Index in the module's function space. */
    uint32_t function;
    uint32_t param_count;
    uint32_t result_count;
};

static uint8_t
kind_of(wasm_valkind_t kind)
{
    switch (kind) {
        case WASM_I32:
            return WB_VALUE_KIND_I32;
        case WASM_I64:
            return WB_VALUE_KIND_I64;
        case WASM_F32:
            return WB_VALUE_KIND_F32;
        case WASM_F64:
            return WB_VALUE_KIND_F64;
        default:
            return KIND_NONE;
    }
}

/* Whether an imported function is one of the host API, as the agent's
 * list (wb_host_import_allowed) says. */
static bool
import_allowed(const wasm_import_t *import)
{
    if (import->kind != WASM_IMPORT_EXPORT_KIND_FUNC) {
        return false;
    }
    /* Every host function has at most this many parameters and results. */
    enum { MOST = 4 };
    uint8_t params[MOST], results[MOST];
    uint32_t param_count = wasm_func_type_get_param_count(import->u.func_type);
    uint32_t result_count =
        wasm_func_type_get_result_count(import->u.func_type);
    if (param_count > MOST || result_count > MOST) {
        return false;
    }
    for (uint32_t i = 0; i < param_count; i++) {
        params[i] =
            kind_of(wasm_func_type_get_param_valkind(import->u.func_type, i));
    }
    for (uint32_t i = 0; i < result_count; i++) {
        results[i] =
            kind_of(wasm_func_type_get_result_valkind(import->u.func_type, i));
    }
    return wb_host_import_allowed(import->module_name, import->name, params,
                                  param_count, results, result_count);
}

static bool
entry_matches(wasm_func_type_t type, const wb_limits *limits)
{
    uint32_t param_count = wasm_func_type_get_param_count(type);
    uint32_t result_count = wasm_func_type_get_result_count(type);
    if (limits->arg_count > WB_MAX_ARGS || param_count != limits->arg_count) {
        return false;
    }
    for (uint32_t i = 0; i < param_count; i++) {
        if (kind_of(wasm_func_type_get_param_valkind(type, i))
            != limits->args[i].kind) {
            return false;
        }
    }
    if (result_count > WB_MAX_RESULTS) {
        return false;
    }
    for (uint32_t i = 0; i < result_count; i++) {
        if (kind_of(wasm_func_type_get_result_valkind(type, i)) == KIND_NONE) {
            return false;
        }
    }
    return true;
}

/* The initial size of a memory in WebAssembly pages. WAMR's loader turns
 * the memory of a module that never grows it into one "page" of the whole
 * size, so its own page count is not the module's. */
static uint64_t
wasm_pages(const WASMMemory *memory)
{
    uint64_t bytes = (uint64_t)memory->num_bytes_per_page
                     * memory->init_page_count;
    return (bytes + WASM_PAGE - 1) / WASM_PAGE;
}

/* limits->entry as a C string (the field may fill its array). */
static void
entry_name(const wb_limits *limits, char name[WB_ENTRY_SIZE])
{
    memcpy(name, limits->entry, WB_ENTRY_SIZE);
    name[WB_ENTRY_SIZE - 1] = '\0';
}

static enum check
check_module(wasm_module_t module, const wb_limits *limits,
             struct entry *entry)
{
    bool imports_log = false;
    int32_t import_count = wasm_runtime_get_import_count(module);
    for (int32_t i = 0; i < import_count; i++) {
        wasm_import_t import;
        wasm_runtime_get_import_type(module, i, &import);
        if (!import_allowed(&import)) {
            return CHECK_IMPORT;
        }
        imports_log |= strcmp(import.module_name, HOST_MODULE) == 0
                       && strcmp(import.name, "log") == 0;
    }

    char name[WB_ENTRY_SIZE];
    entry_name(limits, name);
    bool memory_exported = false, entry_found = false;
    wasm_export_t memory = { 0 }, function = { 0 };
    int32_t export_index = -1;
    int32_t export_count = wasm_runtime_get_export_count(module);
    for (int32_t i = 0; i < export_count; i++) {
        wasm_export_t export;
        wasm_runtime_get_export_type(module, i, &export);
        if (export.kind == WASM_IMPORT_EXPORT_KIND_MEMORY
            && strcmp(export.name, LOG_MEMORY) == 0) {
            memory_exported = true;
            memory = export;
        }
        if (strcmp(export.name, name) == 0) {
            entry_found = true;
            function = export;
            export_index = i;
        }
    }
    if (memory_exported
        && wasm_pages(memory.u.memory_type) > limits->memory_pages) {
        return CHECK_MEMORY;
    }
    if (!memory_exported && imports_log) {
        return CHECK_LOG_WITHOUT_MEMORY;
    }
    if (!entry_found || function.kind != WASM_IMPORT_EXPORT_KIND_FUNC
        || !entry_matches(function.u.func_type, limits)) {
        return CHECK_ENTRY;
    }
    entry->function = ((WASMModule *)module)->exports[export_index].index;
    entry->param_count = wasm_func_type_get_param_count(function.u.func_type);
    entry->result_count =
        wasm_func_type_get_result_count(function.u.func_type);
    return CHECK_OK;
}

static uint16_t
deploy_failure(enum check check)
{
    switch (check) {
        case CHECK_IMPORT:
        case CHECK_LOG_WITHOUT_MEMORY:
            return WB_DEPLOY_FAILURE_IMPORT_NOT_ALLOWED;
        case CHECK_MEMORY:
            return WB_DEPLOY_FAILURE_OUT_OF_MEMORY;
        case CHECK_ENTRY:
        default:
            return WB_DEPLOY_FAILURE_BAD_ENTRY_POINT;
    }
}

/* ---- validate ---- */

static bool
wamr_validate(void *ctx, const uint8_t *bytes, size_t len,
              const wb_limits *limits, uint16_t *failure)
{
    (void)ctx;
    *failure = WB_DEPLOY_FAILURE_INVALID_MODULE;
    if (!wamr.ready || len == 0 || len > UINT32_MAX) {
        return false;
    }
    /* WAMR's loader rewrites the buffer it loads (opcodes, names), and the
     * agent's copy is about to be stored: load a copy. */
    uint8_t *copy = wasm_runtime_malloc((uint32_t)len);
    if (copy == NULL) {
        *failure = WB_DEPLOY_FAILURE_OUT_OF_MEMORY;
        return false;
    }
    memcpy(copy, bytes, len);
    char error[ERROR_LEN];
    wasm_module_t module =
        wasm_runtime_load(copy, (uint32_t)len, error, sizeof error);
    bool ok = false;
    if (module != NULL) {
        struct entry entry;
        enum check check = check_module(module, limits, &entry);
        ok = check == CHECK_OK;
        if (!ok) {
            *failure = deploy_failure(check);
        }
        wasm_runtime_unload(module);
    }
    wasm_runtime_free(copy);
    return ok;
}

/* ---- invoke ---- */

/* The trap code of a WAMR exception ("Exception: <message>"). */
static uint16_t
trap_code(const char *exception)
{
    static const struct {
        const char *message;
        uint16_t code;
    } traps[] = {
        { "unreachable", WB_TRAP_CODE_UNREACHABLE },
        { "out of bounds memory access", WB_TRAP_CODE_MEMORY_OUT_OF_BOUNDS },
        { "out of bounds table access", WB_TRAP_CODE_TABLE_OUT_OF_BOUNDS },
        /* call_indirect beyond the table */
        { "undefined element", WB_TRAP_CODE_TABLE_OUT_OF_BOUNDS },
        /* call_indirect to a null entry */
        { "uninitialized element", WB_TRAP_CODE_INDIRECT_CALL_TO_NULL },
        { "null function reference", WB_TRAP_CODE_INDIRECT_CALL_TO_NULL },
        { "indirect call type mismatch", WB_TRAP_CODE_BAD_SIGNATURE },
        { "integer divide by zero", WB_TRAP_CODE_INTEGER_DIVISION_BY_ZERO },
        { "integer overflow", WB_TRAP_CODE_INTEGER_OVERFLOW },
        { "invalid conversion to integer",
          WB_TRAP_CODE_BAD_CONVERSION_TO_INTEGER },
        { "wasm operand stack overflow", WB_TRAP_CODE_STACK_OVERFLOW },
        { "native stack overflow", WB_TRAP_CODE_STACK_OVERFLOW },
        /* A Rust or C module's shadow stack ran into its data (WAMR checks
         * __stack_pointer; wasmi does not and lets the data be
         * overwritten). */
        { "wasm auxiliary stack overflow", WB_TRAP_CODE_STACK_OVERFLOW },
        { "instruction limit exceeded", WB_TRAP_CODE_OUT_OF_FUEL },
        /* WAMR's pool ran out (wasmi: OutOfSystemMemory, MemoryLimit). */
        { "allocate memory failed", WB_TRAP_CODE_MEMORY_LIMIT },
        { "out of memory", WB_TRAP_CODE_MEMORY_LIMIT },
    };
    static const char prefix[] = "Exception: ";
    if (exception == NULL) {
        return WB_TRAP_CODE_HOST_ERROR;
    }
    if (strncmp(exception, prefix, sizeof prefix - 1) == 0) {
        exception += sizeof prefix - 1;
    }
    for (size_t i = 0; i < sizeof traps / sizeof traps[0]; i++) {
        if (strcmp(exception, traps[i].message) == 0) {
            return traps[i].code;
        }
    }
    return WB_TRAP_CODE_HOST_ERROR;
}

/* Why an invocation cannot start (a wb_trap_code), as wasmi's invoke
 * answers the same module: the checks' failures, then the limits on tables
 * and memory that wasmi's resource limiter applies at instantiation.
 * UINT16_MAX when it can. */
static uint16_t
cannot_start(wasm_module_t loaded, const wb_limits *limits,
             struct entry *entry)
{
    switch (check_module(loaded, limits, entry)) {
        case CHECK_OK:
            break;
        case CHECK_ENTRY:
            return WB_TRAP_CODE_BAD_SIGNATURE;
        case CHECK_MEMORY:
            return WB_TRAP_CODE_MEMORY_LIMIT;
        default:
            return WB_TRAP_CODE_HOST_ERROR;
    }
    const WASMModule *module = (const WASMModule *)loaded;
    if (module->import_table_count + module->table_count > 1) {
        return WB_TRAP_CODE_HOST_ERROR;
    }
    for (uint32_t i = 0; i < module->table_count; i++) {
        if (module->tables[i].table_type.init_size > MAX_TABLE_ELEMENTS) {
            return WB_TRAP_CODE_HOST_ERROR;
        }
    }
    for (uint32_t i = 0; i < module->memory_count; i++) {
        if (wasm_pages(&module->memories[i]) > limits->memory_pages) {
            return WB_TRAP_CODE_MEMORY_LIMIT;
        }
    }
    return UINT16_MAX;
}

/* Instantiates `loaded` without running anything in it (see the top of
 * the file); *start is set to the start function's index, or UINT32_MAX. */
static wasm_module_inst_t
instantiate_quietly(wasm_module_t loaded, const wb_limits *limits,
                    uint32_t *start, char *error, uint32_t error_size)
{
    WASMModule *module = (WASMModule *)loaded;
    char *names[AUTO_CALLED_COUNT] = { 0 };
    WASMExport *hidden[AUTO_CALLED_COUNT] = { 0 };
    for (uint32_t i = 0; i < module->export_count; i++) {
        for (size_t n = 0; n < AUTO_CALLED_COUNT; n++) {
            if (strcmp(module->exports[i].name, AUTO_CALLED_EXPORTS[n]) == 0) {
                hidden[n] = &module->exports[i];
                names[n] = module->exports[i].name;
                module->exports[i].name = hidden_export_name;
            }
        }
    }
    *start = module->start_function;
    module->start_function = UINT32_MAX;

    struct InstantiationArgs2 *args = NULL;
    wasm_module_inst_t instance = NULL;
    if (wasm_runtime_instantiation_args_create(&args)) {
        wasm_runtime_instantiation_args_set_default_stack_size(
            args, wamr.stack_size);
        /* No app heap: modules get only their own linear memory. */
        wasm_runtime_instantiation_args_set_host_managed_heap_size(args, 0);
        /* memory.grow beyond this returns -1 (0: see below). */
        wasm_runtime_instantiation_args_set_max_memory_pages(
            args, limits->memory_pages);
        instance = wasm_runtime_instantiate_ex2(loaded, args, error, error_size);
        wasm_runtime_instantiation_args_destroy(args);
    }
    if (instance != NULL) {
        WASMModuleInstance *inst = (WASMModuleInstance *)instance;
        /* WAMR took 0 for "no limit": a memory of 0 pages may not grow. */
        for (uint32_t i = 0; limits->memory_pages == 0 && i < inst->memory_count;
             i++) {
            inst->memories[i]->max_page_count = 0;
        }
        /* WAMR lets a table without a maximum grow to twice its size (at
         * least 1024); table.grow beyond 1024 returns -1 here, as in
         * wasmi. The elements were allocated for WAMR's larger maximum. */
        for (uint32_t i = 0; i < inst->table_count; i++) {
            if (inst->tables[i]->max_size > MAX_TABLE_ELEMENTS) {
                inst->tables[i]->max_size = MAX_TABLE_ELEMENTS;
            }
        }
    }
    else {
        snprintf(error, error_size, "allocate memory failed");
    }

    module->start_function = *start;
    for (size_t n = 0; n < AUTO_CALLED_COUNT; n++) {
        if (hidden[n] != NULL) {
            hidden[n]->name = names[n];
        }
    }
    return instance;
}

static wasm_val_t
to_wasm(const wb_value *value)
{
    wasm_val_t v;
    memset(&v, 0, sizeof v);
    switch (value->kind) {
        case WB_VALUE_KIND_I32:
            v.kind = WASM_I32;
            v.of.i32 = value->of.i32;
            break;
        case WB_VALUE_KIND_I64:
            v.kind = WASM_I64;
            v.of.i64 = value->of.i64;
            break;
        case WB_VALUE_KIND_F32:
            v.kind = WASM_F32;
            v.of.f32 = value->of.f32;
            break;
        default:
            v.kind = WASM_F64;
            v.of.f64 = value->of.f64;
            break;
    }
    return v;
}

static wb_value
from_wasm(const wasm_val_t *v)
{
    wb_value value;
    memset(&value, 0, sizeof value);
    value.kind = kind_of(v->kind);
    switch (v->kind) {
        case WASM_I32:
            value.of.i32 = v->of.i32;
            break;
        case WASM_I64:
            value.of.i64 = v->of.i64;
            break;
        case WASM_F32:
            value.of.f32 = v->of.f32;
            break;
        default:
            value.of.f64 = v->of.f64;
            break;
    }
    return value;
}

/* Calls function `index` of `instance` under the fuel limit. */
static bool
call_metered(wasm_exec_env_t exec_env, wasm_module_inst_t instance,
             uint32_t index, int fuel, uint32_t result_count,
             wasm_val_t *results, uint32_t arg_count, wasm_val_t *args)
{
    WASMModuleInstance *inst = (WASMModuleInstance *)instance;
    wasm_function_inst_t function = &inst->e->functions[index];
    wasm_runtime_set_instruction_count_limit(exec_env, fuel);
    return wasm_runtime_call_wasm_a(exec_env, function, result_count, results,
                                    arg_count, args);
}

static void
wamr_invoke(void *ctx, uint8_t *bytes, size_t len, const wb_limits *limits,
            wb_invocation *invocation)
{
    (void)ctx;
    if (!wamr.ready || len == 0 || len > UINT32_MAX) {
        wb_invocation_trap(invocation, WB_TRAP_CODE_HOST_ERROR);
        return;
    }
    /* WAMR's limit is an int; devices allow far less fuel than that. */
    int fuel = limits->fuel > (uint64_t)INT32_MAX ? INT32_MAX
                                                   : (int)limits->fuel;
    char error[ERROR_LEN];
    /* The buffer is the agent's for this call: WAMR runs the code in
     * place (it rewrites some opcodes) and refers to its names. */
    wasm_module_t module =
        wasm_runtime_load(bytes, (uint32_t)len, error, sizeof error);
    if (module == NULL) {
        wb_invocation_trap(invocation, WB_TRAP_CODE_HOST_ERROR);
        return;
    }
    struct entry entry;
    uint16_t refusal = cannot_start(module, limits, &entry);
    if (refusal != UINT16_MAX) {
        wb_invocation_trap(invocation, refusal);
        wasm_runtime_unload(module);
        return;
    }
    uint32_t start;
    wasm_module_inst_t instance =
        instantiate_quietly(module, limits, &start, error, sizeof error);
    if (instance == NULL) {
        /* The pool could not hold the memory or tables (wasmi: its
         * limiter refused, MEMORY_LIMIT), or another failure. */
        bool no_room = strstr(error, "allocate memory failed") != NULL
                       || strstr(error, "out of memory") != NULL;
        wb_invocation_trap(invocation, no_room ? WB_TRAP_CODE_MEMORY_LIMIT
                                               : WB_TRAP_CODE_HOST_ERROR);
        wasm_runtime_unload(module);
        return;
    }
    wasm_exec_env_t exec_env =
        wasm_runtime_create_exec_env(instance, wamr.stack_size);
    if (exec_env == NULL) {
        wb_invocation_trap(invocation, WB_TRAP_CODE_MEMORY_LIMIT);
        wasm_runtime_deinstantiate(instance);
        wasm_runtime_unload(module);
        return;
    }
    struct call call = {
        .invocation = invocation,
        .report_room = WB_MAX_RESULTS - entry.result_count,
        .host_refused = false,
    };
    wasm_runtime_set_user_data(exec_env, &call);

    wasm_val_t args[WB_MAX_ARGS];
    wasm_val_t results[WB_MAX_RESULTS];
    memset(results, 0, sizeof results);
    for (uint32_t i = 0; i < entry.param_count; i++) {
        args[i] = to_wasm(&limits->args[i]);
    }
    bool ok = start == UINT32_MAX
              || call_metered(exec_env, instance, start, fuel, 0, NULL, 0,
                              NULL);
    ok = ok
         && call_metered(exec_env, instance, entry.function, fuel,
                         entry.result_count, results, entry.param_count, args);

    if (ok) {
        for (uint32_t i = 0; i < entry.result_count; i++) {
            wb_value value = from_wasm(&results[i]);
            wb_invocation_return(invocation, &value);
        }
        /* Unknown (see the top of the file). */
        wb_invocation_fuel_used(invocation, 0);
    }
    else {
        uint16_t code = call.host_refused
                            ? WB_TRAP_CODE_HOST_ERROR
                            : trap_code(wasm_runtime_get_exception(instance));
        wb_invocation_trap(invocation, code);
        wb_invocation_fuel_used(invocation, code == WB_TRAP_CODE_OUT_OF_FUEL
                                                ? (uint64_t)fuel
                                                : 0);
    }
    wasm_runtime_destroy_exec_env(exec_env);
    wasm_runtime_deinstantiate(instance);
    wasm_runtime_unload(module);
}

/* ---- setup ---- */

int
wamr_runtime_init(const wamr_runtime_config *config, wb_runtime *runtime)
{
    if (config == NULL || runtime == NULL || config->pool == NULL
        || config->now_ms == NULL || config->stack_size == 0) {
        return -1;
    }
    if (!wamr.ready) {
        RuntimeInitArgs init;
        memset(&init, 0, sizeof init);
        init.mem_alloc_type = Alloc_With_Pool;
        init.mem_alloc_option.pool.heap_buf = config->pool;
        init.mem_alloc_option.pool.heap_size = config->pool_size;
        init.native_module_name = HOST_MODULE;
        init.native_symbols = host_functions;
        init.n_native_symbols =
            sizeof host_functions / sizeof host_functions[0];
        if (!wasm_runtime_full_init(&init)) {
            return -1;
        }
        /* Warnings (e.g. an import left unlinked by a module validate()
         * refuses) would only clutter the console. */
        wasm_runtime_set_log_level(WASM_LOG_LEVEL_ERROR);
        wamr.ready = true;
    }
    wamr.stack_size = config->stack_size;
    wamr.now_ms = config->now_ms;
    wamr.clock_ctx = config->clock_ctx;

    memset(runtime, 0, sizeof *runtime);
    runtime->ctx = NULL;
    runtime->kind = WB_RUNTIME_KIND_WAMR;
    runtime->version = WAMR_RUNTIME_VERSION;
    runtime->validate = wamr_validate;
    runtime->invoke = wamr_invoke;
    return 0;
}
