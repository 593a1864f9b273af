//! The process's open-files limit (`RLIMIT_NOFILE`): every connection is a
//! file descriptor, so connection caps are only real below it.

use std::io;

/// The soft limit on open files of this process, if the platform has one.
pub fn soft_limit() -> Option<u64> {
    if !rlimit::Resource::NOFILE.is_supported() {
        return None;
    }
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

/// The open-files limit before and after [`raise_to_hard_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaisedLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now in force.
    pub now: u64,
    /// The hard limit (the most the soft one may be raised to).
    pub hard: u64,
}

/// Raises the soft open-files limit to the hard one (as far as the system
/// allows) and logs both values at info. `None` where there is no such
/// limit.
pub fn raise_to_hard_limit() -> io::Result<Option<RaisedLimit>> {
    if !rlimit::Resource::NOFILE.is_supported() {
        return Ok(None);
    }
    let (before, hard) = rlimit::Resource::NOFILE.get()?;
    rlimit::increase_nofile_limit(u64::MAX)?;
    let (now, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(_) => (before, hard),
    };
    if now == before {
        tracing::info!(
            open_files = now,
            hard,
            "open-files limit already at its hard limit"
        );
    } else {
        tracing::info!(from = before, to = now, hard, "open-files limit raised");
    }
    Ok(Some(RaisedLimit { before, now, hard }))
}
