//! The install-time checks of a module (`docs/host-api.md`), written once
//! for every side that makes them: the device's [`WasmiRuntime`] before it
//! installs a module, and the host (API server, gateway) before it accepts
//! one, so that the host refuses exactly what devices would.
//!
//! The checks are generic over how a refusal is reported ([`Refusal`]).
//! The device's runtime asks for a bare [`DeployFailure`], so the firmware
//! builds no details and carries none of their text. [`check_module`], for
//! the host, answers a [`ModuleRejection`] with what was found wrong, which
//! (with the `std` feature) displays as a sentence.
//!
//! [`WasmiRuntime`]: super::WasmiRuntime

use alloc::string::String;

use wasmbed_protocol::{DeployFailure, ENTRY_LEN, Limits, MAX_ARGS, MAX_RESULTS};
use wasmi::{CompilationMode, Config, Engine, ExternType, FuncType, ImportType, Module, ValType};

use super::{HostFunction, ValueKind, host_function};

/// The engine settings that decide which modules are valid: the
/// WebAssembly features devices enable (wasmi's defaults, but one memory;
/// no SIMD nor 64-bit memories, as this crate builds wasmi without its
/// `simd` and `memory64` features), eager validation of every function
/// body, custom sections skipped.
///
/// The device's runtime starts from these and adds what only matters when
/// code runs (fuel, stack sizes).
pub(super) fn validation_config() -> Config {
    let mut config = Config::default();
    config
        // Validate everything at install; translate functions on first
        // call, so code that never runs costs no memory.
        .compilation_mode(CompilationMode::LazyTranslation)
        // Names and debug sections are not needed to run, and a copy of
        // them can be larger than a device's free heap.
        .ignore_custom_sections(true)
        .wasm_multi_memory(false);
    config
}

/// What [`check_module`] learnt about a module it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Initial size, in 64 KiB pages, of the memory the module exports as
    /// `memory`; `None` when it exports none.
    pub memory_pages: Option<u64>,
    /// How many values the entry point returns.
    pub entry_results: usize,
}

/// Why [`check_module`] refused a module.
#[derive(Debug)]
pub enum ModuleRejection {
    /// Not a valid WebAssembly module.
    Invalid(wasmi::Error),
    /// Valid WebAssembly that uses a feature devices do not enable (SIMD,
    /// threads, 64-bit or several memories, ...). Told apart from
    /// [`Invalid`](Self::Invalid) only with the `std` feature; a device
    /// answers both with [`DeployFailure::InvalidModule`].
    UnsupportedFeature(wasmi::Error),
    /// An import that is not a function of the host API.
    ImportNotInHostApi {
        module: String,
        name: String,
        kind: ExternKind,
    },
    /// A function of the host API imported with another signature.
    ImportSignature {
        function: &'static HostFunction,
        imported: FuncType,
    },
    /// `wasmbed.log` is imported but no memory is exported as `memory` for
    /// it to read the lines from.
    LogWithoutMemory,
    /// The memory exported as `memory` starts larger than
    /// `limits.memory_pages`.
    MemoryTooLarge {
        initial_pages: u64,
        memory_pages: u16,
    },
    /// Nothing is exported under the entry point's name.
    EntryMissing { entry: EntryName },
    /// The entry point's name is exported, but not as a function.
    EntryNotFunction { entry: EntryName, kind: ExternKind },
    /// The entry point's parameters do not match the types of
    /// `limits.args`.
    EntryParams {
        entry: EntryName,
        signature: FuncType,
        args: heapless::Vec<ValueKind, MAX_ARGS>,
    },
    /// The entry point returns more than
    /// [`MAX_RESULTS`](wasmbed_protocol::MAX_RESULTS) values, or a value
    /// that is not a number.
    EntryResults {
        entry: EntryName,
        signature: FuncType,
    },
}

/// The name of an entry point, as `Limits` bounds it.
pub type EntryName = heapless::String<ENTRY_LEN>;

/// What an import or export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternKind {
    Function,
    Memory,
    Table,
    Global,
}

impl ExternKind {
    fn of(ty: &ExternType) -> ExternKind {
        match ty {
            ExternType::Func(_) => ExternKind::Function,
            ExternType::Memory(_) => ExternKind::Memory,
            ExternType::Table(_) => ExternKind::Table,
            ExternType::Global(_) => ExternKind::Global,
        }
    }
}

impl ModuleRejection {
    /// The refusal a device reports for the same module.
    pub fn failure(&self) -> DeployFailure {
        match self {
            ModuleRejection::Invalid(_) | ModuleRejection::UnsupportedFeature(_) => {
                DeployFailure::InvalidModule
            }
            ModuleRejection::ImportNotInHostApi { .. }
            | ModuleRejection::ImportSignature { .. }
            | ModuleRejection::LogWithoutMemory => DeployFailure::ImportNotAllowed,
            ModuleRejection::MemoryTooLarge { .. } => DeployFailure::OutOfMemory,
            ModuleRejection::EntryMissing { .. }
            | ModuleRejection::EntryNotFunction { .. }
            | ModuleRejection::EntryParams { .. }
            | ModuleRejection::EntryResults { .. } => DeployFailure::BadEntryPoint,
        }
    }
}

/// Checks that `bytes` is a module a device installs and can start under
/// `limits` (`docs/host-api.md`, "Install-time checks"): valid WebAssembly
/// using only the features devices enable; imports only functions of the
/// host API, with their signatures, and an exported `memory` when it
/// imports `log`; an exported memory no larger at start than
/// `limits.memory_pages`; an exported entry point taking `limits.args`
/// and returning at most [`MAX_RESULTS`] numbers.
///
/// What only a given device knows (its largest module, its application
/// memory, its most fuel) is not checked here.
pub fn check_module(bytes: &[u8], limits: &Limits) -> Result<ModuleInfo, ModuleRejection> {
    let engine = Engine::new(&validation_config());
    match Module::new(&engine, bytes) {
        Ok(module) => check_compiled(&module, limits),
        Err(error) => Err(not_valid(bytes, error)),
    }
}

/// How the checks report what they found wrong. A device only needs the
/// [`DeployFailure`], so its checks build nothing more; the host wants a
/// [`ModuleRejection`] with the details. Both run the same checks.
pub(super) trait Refusal: Sized {
    fn import_not_in_host_api(import: &ImportType<'_>) -> Self;
    fn import_signature(function: &'static HostFunction, imported: &FuncType) -> Self;
    fn log_without_memory() -> Self;
    fn memory_too_large(initial_pages: u64, limits: &Limits) -> Self;
    fn entry_missing(limits: &Limits) -> Self;
    fn entry_not_function(limits: &Limits, kind: ExternKind) -> Self;
    fn entry_params(limits: &Limits, signature: &FuncType) -> Self;
    fn entry_results(limits: &Limits, signature: &FuncType) -> Self;
}

impl Refusal for DeployFailure {
    fn import_not_in_host_api(_: &ImportType<'_>) -> Self {
        DeployFailure::ImportNotAllowed
    }
    fn import_signature(_: &'static HostFunction, _: &FuncType) -> Self {
        DeployFailure::ImportNotAllowed
    }
    fn log_without_memory() -> Self {
        DeployFailure::ImportNotAllowed
    }
    fn memory_too_large(_: u64, _: &Limits) -> Self {
        DeployFailure::OutOfMemory
    }
    fn entry_missing(_: &Limits) -> Self {
        DeployFailure::BadEntryPoint
    }
    fn entry_not_function(_: &Limits, _: ExternKind) -> Self {
        DeployFailure::BadEntryPoint
    }
    fn entry_params(_: &Limits, _: &FuncType) -> Self {
        DeployFailure::BadEntryPoint
    }
    fn entry_results(_: &Limits, _: &FuncType) -> Self {
        DeployFailure::BadEntryPoint
    }
}

impl Refusal for ModuleRejection {
    fn import_not_in_host_api(import: &ImportType<'_>) -> Self {
        ModuleRejection::ImportNotInHostApi {
            module: import.module().into(),
            name: import.name().into(),
            kind: ExternKind::of(import.ty()),
        }
    }
    fn import_signature(function: &'static HostFunction, imported: &FuncType) -> Self {
        ModuleRejection::ImportSignature {
            function,
            imported: imported.clone(),
        }
    }
    fn log_without_memory() -> Self {
        ModuleRejection::LogWithoutMemory
    }
    fn memory_too_large(initial_pages: u64, limits: &Limits) -> Self {
        ModuleRejection::MemoryTooLarge {
            initial_pages,
            memory_pages: limits.memory_pages,
        }
    }
    fn entry_missing(limits: &Limits) -> Self {
        ModuleRejection::EntryMissing {
            entry: limits.entry.clone(),
        }
    }
    fn entry_not_function(limits: &Limits, kind: ExternKind) -> Self {
        ModuleRejection::EntryNotFunction {
            entry: limits.entry.clone(),
            kind,
        }
    }
    fn entry_params(limits: &Limits, signature: &FuncType) -> Self {
        ModuleRejection::EntryParams {
            entry: limits.entry.clone(),
            signature: signature.clone(),
            args: limits.args.iter().map(ValueKind::of).collect(),
        }
    }
    fn entry_results(limits: &Limits, signature: &FuncType) -> Self {
        ModuleRejection::EntryResults {
            entry: limits.entry.clone(),
            signature: signature.clone(),
        }
    }
}

/// The checks of [`check_module`] after compiling. The device's runtime
/// calls them with its own engine, made from [`validation_config`].
pub(super) fn check_compiled<R: Refusal>(
    module: &Module,
    limits: &Limits,
) -> Result<ModuleInfo, R> {
    let mut imports_log = false;
    for import in module.imports() {
        let (Some(host), ExternType::Func(ty)) =
            (host_function(import.module(), import.name()), import.ty())
        else {
            return Err(R::import_not_in_host_api(&import));
        };
        if !kinds_match(ty.params(), host.params) || !kinds_match(ty.results(), host.results) {
            return Err(R::import_signature(host, ty));
        }
        imports_log |= host.name == "log";
    }
    let memory_pages = match module.get_export("memory") {
        Some(ExternType::Memory(memory)) => Some(memory.minimum()),
        _ => None,
    };
    match memory_pages {
        Some(initial_pages) if initial_pages > u64::from(limits.memory_pages) => {
            return Err(R::memory_too_large(initial_pages, limits));
        }
        // `log` reads the line from the exported memory.
        None if imports_log => return Err(R::log_without_memory()),
        _ => {}
    }
    let entry = entry_type(module, limits)?;
    Ok(ModuleInfo {
        memory_pages,
        entry_results: entry.results().len(),
    })
}

/// The rejection of bytes wasmi refused to compile.
fn not_valid(bytes: &[u8], error: wasmi::Error) -> ModuleRejection {
    #[cfg(feature = "std")]
    {
        // wasmi's own words for this one are a multi-line dump of bytes.
        if !bytes.starts_with(b"\0asm") {
            return ModuleRejection::Invalid(wasmi::Error::new(
                "it does not start with \\0asm, WebAssembly's magic number",
            ));
        }
        let mut everything =
            wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
        if everything.validate_all(bytes).is_ok() {
            return ModuleRejection::UnsupportedFeature(error);
        }
    }
    #[cfg(not(feature = "std"))]
    let _ = bytes;
    ModuleRejection::Invalid(error)
}

/// The entry point's type, if it takes `limits.args` and returns at most
/// [`MAX_RESULTS`] numbers.
pub(super) fn entry_type<R: Refusal>(module: &Module, limits: &Limits) -> Result<FuncType, R> {
    let ty = match module.get_export(&limits.entry) {
        Some(ExternType::Func(ty)) => ty,
        Some(other) => return Err(R::entry_not_function(limits, ExternKind::of(&other))),
        None => return Err(R::entry_missing(limits)),
    };
    let args = limits.args.iter().map(ValueKind::of);
    if ty.params().len() != limits.args.len()
        || !ty
            .params()
            .iter()
            .zip(args)
            .all(|(t, a)| kind_of(t) == Some(a))
    {
        return Err(R::entry_params(limits, &ty));
    }
    if ty.results().len() > MAX_RESULTS || ty.results().iter().any(|t| kind_of(t).is_none()) {
        return Err(R::entry_results(limits, &ty));
    }
    Ok(ty)
}

fn kind_of(ty: &ValType) -> Option<ValueKind> {
    match ty {
        ValType::I32 => Some(ValueKind::I32),
        ValType::I64 => Some(ValueKind::I64),
        ValType::F32 => Some(ValueKind::F32),
        ValType::F64 => Some(ValueKind::F64),
        _ => None,
    }
}

fn kinds_match(types: &[ValType], kinds: &[ValueKind]) -> bool {
    types.len() == kinds.len()
        && types
            .iter()
            .zip(kinds)
            .all(|(ty, kind)| kind_of(ty) == Some(*kind))
}

/// The sentences, for the host only.
#[cfg(feature = "std")]
mod reason {
    use core::fmt::{self, Display, Formatter, Write as _};

    use wasmi::ValType;

    use super::{ExternKind, ModuleRejection, ValueKind};
    use crate::runtime::HOST_MODULE;

    const HOST_API_DOC: &str = "docs/host-api.md";

    impl Display for ModuleRejection {
        fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
            match self {
                ModuleRejection::Invalid(error) => write!(f, "not valid WebAssembly: {error}"),
                ModuleRejection::UnsupportedFeature(error) => write!(
                    f,
                    "uses a WebAssembly feature devices do not enable: {error} ({HOST_API_DOC})"
                ),
                ModuleRejection::ImportNotInHostApi {
                    module,
                    name,
                    kind: ExternKind::Function,
                } => write!(
                    f,
                    "imports {module}.{name}, which is not in the host API ({HOST_API_DOC})"
                ),
                ModuleRejection::ImportNotInHostApi { module, name, kind } => write!(
                    f,
                    "imports the {kind} {module}.{name}, but the host API provides only \
                     functions ({HOST_API_DOC})"
                ),
                ModuleRejection::ImportSignature { function, imported } => {
                    let host = Signature(function.params, function.results);
                    write!(
                        f,
                        "imports {HOST_MODULE}.{} as {}, but the host API's is {host} \
                         ({HOST_API_DOC})",
                        function.name,
                        Signature(imported.params(), imported.results()),
                    )
                }
                ModuleRejection::LogWithoutMemory => write!(
                    f,
                    "imports {HOST_MODULE}.log but exports no memory named `memory` for it to \
                     read lines from ({HOST_API_DOC})"
                ),
                ModuleRejection::MemoryTooLarge {
                    initial_pages,
                    memory_pages,
                } => write!(
                    f,
                    "its memory starts at {initial_pages} pages of 64 KiB, more than \
                     limits.memory_pages ({memory_pages})"
                ),
                ModuleRejection::EntryMissing { entry } => {
                    write!(f, "entry function `{entry}` not exported")
                }
                ModuleRejection::EntryNotFunction { entry, kind } => {
                    write!(f, "`{entry}` is exported as a {kind}, not a function")
                }
                ModuleRejection::EntryParams {
                    entry,
                    signature,
                    args,
                } => {
                    let params = Types(signature.params());
                    if signature.params().len() == args.len() {
                        write!(
                            f,
                            "`{entry}` takes {params} but the args are {}",
                            Types(args)
                        )
                    } else {
                        write!(
                            f,
                            "`{entry}` takes {params} but {} args were given",
                            args.len()
                        )
                    }
                }
                ModuleRejection::EntryResults { entry, signature } => write!(
                    f,
                    "`{entry}` returns {}, but an entry point returns at most {} numbers \
                     (i32, i64, f32, f64)",
                    Types(signature.results()),
                    wasmbed_protocol::MAX_RESULTS
                ),
            }
        }
    }

    impl std::error::Error for ModuleRejection {}

    impl Display for ExternKind {
        fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                ExternKind::Function => "function",
                ExternKind::Memory => "memory",
                ExternKind::Table => "table",
                ExternKind::Global => "global",
            })
        }
    }

    /// A WebAssembly value type, as the text format writes it.
    trait TypeName {
        fn type_name(&self) -> &'static str;
    }

    impl TypeName for ValType {
        fn type_name(&self) -> &'static str {
            match self {
                ValType::I32 => "i32",
                ValType::I64 => "i64",
                ValType::F32 => "f32",
                ValType::F64 => "f64",
                ValType::V128 => "v128",
                ValType::FuncRef => "funcref",
                ValType::ExternRef => "externref",
            }
        }
    }

    impl TypeName for ValueKind {
        fn type_name(&self) -> &'static str {
            match self {
                ValueKind::I32 => "i32",
                ValueKind::I64 => "i64",
                ValueKind::F32 => "f32",
                ValueKind::F64 => "f64",
            }
        }
    }

    /// `(i32, i64)`.
    struct Types<'a, T>(&'a [T]);

    impl<T: TypeName> Display for Types<'_, T> {
        fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
            f.write_char('(')?;
            for (i, ty) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(ty.type_name())?;
            }
            f.write_char(')')
        }
    }

    /// `(i32) -> (i64)`.
    struct Signature<'a, P, R>(&'a [P], &'a [R]);

    impl<P: TypeName, R: TypeName> Display for Signature<'_, P, R> {
        fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
            write!(f, "{} -> {}", Types(self.0), Types(self.1))
        }
    }
}
