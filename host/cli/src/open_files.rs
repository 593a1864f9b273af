//! The open-files limit at start: every connection is a file descriptor,
//! so the soft limit is raised to the hard one and the connection caps are
//! fitted to the result.

use tracing::warn;

/// Raises the soft open-files limit to the hard one (logging both) and
/// returns the limit in force; `None` where the platform has none.
pub(crate) fn raise() -> Option<u64> {
    match wasmbed_httpd::open_files::raise_to_hard_limit() {
        Ok(raised) => raised.map(|limit| limit.now),
        Err(e) => {
            warn!(error = %e, "could not raise the open-files limit");
            wasmbed_httpd::open_files::soft_limit()
        }
    }
}

/// Warns when an explicit `flag` value is above what `room` file
/// descriptors allow.
pub(crate) fn warn_if_above(flag: &str, value: Option<usize>, room: usize, open_files: u64) {
    if let Some(value) = value.filter(|value| *value > room) {
        warn!(
            "{flag} {value} is above the {room} connections the open-files limit of {open_files} \
             leaves room for: descriptors can run out before the limit refuses anything \
             (raise the limit with `ulimit -n` or lower {flag})"
        );
    }
}
