//! A device's console: every line it printed, kept in memory for waiting
//! and written to `console.log`.
//!
//! Lines are numbered from 0 for the life of a device, across restarts. A
//! [`ConsoleMark`] is a position in that sequence: take one before an
//! action (a reset, a deployment) and wait for what the device prints
//! after it with [`Console::wait_for_after`]. Waiting always looks at the
//! history first, so a line that arrived before the wait started is found.
//!
//! The history in memory keeps the last [`HISTORY_LINES`] lines, so a
//! device that runs for weeks does not grow its manager without bound;
//! `console.log` on disk keeps everything. Marks stay valid: they count
//! every line ever printed, and a mark before the oldest line kept means
//! "from the oldest line kept".

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use crate::manager::DeviceState;

/// Longest line kept; longer output without a newline is split.
pub const MAX_LINE: usize = 4096;
/// Console lines quoted in a [`WaitError`].
pub const TAIL_LINES: usize = 20;
/// Lines of history kept in memory per device.
pub const HISTORY_LINES: usize = 20_000;
/// Capacity of the channel behind [`Console::subscribe`].
const BROADCAST_CAPACITY: usize = 1024;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One line a device printed, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// The text (invalid UTF-8 replaced, `\r` stripped).
    pub text: String,
    /// When the host read it.
    pub at: Instant,
    /// Its position in the device's console, from 0.
    pub index: usize,
}

impl ConsoleLine {
    /// The position just after this line: waiting from it finds only later
    /// lines.
    pub fn mark_after(&self) -> ConsoleMark {
        ConsoleMark(self.index + 1)
    }
}

/// A position in a device's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConsoleMark(pub usize);

impl ConsoleMark {
    /// Before the first line.
    pub const START: ConsoleMark = ConsoleMark(0);
}

/// What a line is waited for by: a substring or a regular expression.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// The line contains this text.
    Substring(String),
    /// The regular expression matches somewhere in the line.
    Regex(Regex),
}

impl Pattern {
    /// A regular-expression pattern.
    pub fn regex(expression: &str) -> Result<Pattern, regex::Error> {
        Regex::new(expression).map(Pattern::Regex)
    }

    /// Whether `line` matches.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Substring(text) => line.contains(text.as_str()),
            Pattern::Regex(regex) => regex.is_match(line),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Substring(text) => write!(f, "{text:?}"),
            Pattern::Regex(regex) => write!(f, "/{}/", regex.as_str()),
        }
    }
}

impl From<&str> for Pattern {
    fn from(text: &str) -> Pattern {
        Pattern::Substring(text.to_owned())
    }
}

impl From<String> for Pattern {
    fn from(text: String) -> Pattern {
        Pattern::Substring(text)
    }
}

impl From<Regex> for Pattern {
    fn from(regex: Regex) -> Pattern {
        Pattern::Regex(regex)
    }
}

impl From<&Regex> for Pattern {
    fn from(regex: &Regex) -> Pattern {
        Pattern::Regex(regex.clone())
    }
}

/// Why waiting for a console line failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    /// No matching line within the timeout.
    #[error(
        "{device}: no console line matching {pattern} within {timeout:?}; last console lines:\n{}",
        quote(.last_lines)
    )]
    Timeout {
        /// The device.
        device: String,
        /// What was waited for.
        pattern: String,
        /// How long.
        timeout: Duration,
        /// The last [`TAIL_LINES`] console lines.
        last_lines: Vec<String>,
    },
    /// The device stopped running (exited, crashed or was stopped) without
    /// printing a matching line.
    #[error(
        "{device} {state} before printing a line matching {pattern}; emulator stderr:\n{}\nlast console lines:\n{}",
        quote(.stderr_tail),
        quote(.last_lines)
    )]
    Exited {
        /// The device.
        device: String,
        /// What was waited for.
        pattern: String,
        /// How it ended.
        state: DeviceState,
        /// The end of the emulator's standard error.
        stderr_tail: Vec<String>,
        /// The last [`TAIL_LINES`] console lines.
        last_lines: Vec<String>,
    },
}

fn quote(lines: &[String]) -> String {
    if lines.is_empty() {
        return "  (nothing)".to_owned();
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("  | ");
        out.push_str(line);
    }
    out
}

/// How the device's current run ended, as far as waiting is concerned.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) state: DeviceState,
    pub(crate) stderr_tail: Vec<String>,
}

/// The last lines printed, numbered from the first line ever printed.
#[derive(Debug)]
struct History {
    lines: VecDeque<ConsoleLine>,
    /// The number of the oldest line kept.
    first: usize,
    capacity: usize,
}

impl History {
    fn new(capacity: usize) -> History {
        History {
            lines: VecDeque::new(),
            first: 0,
            capacity: capacity.max(1),
        }
    }

    /// The number the next line gets.
    fn end(&self) -> usize {
        self.first + self.lines.len()
    }

    /// The lines kept from line number `from` on.
    fn from(&self, from: usize) -> impl Iterator<Item = &ConsoleLine> {
        self.lines
            .range(from.saturating_sub(self.first).min(self.lines.len())..)
    }

    fn push(&mut self, text: String) -> ConsoleLine {
        let line = ConsoleLine {
            text,
            at: Instant::now(),
            index: self.end(),
        };
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
            self.first += 1;
        }
        self.lines.push_back(line.clone());
        line
    }
}

#[derive(Debug)]
struct Inner {
    device: String,
    lines: Mutex<History>,
    ended: Mutex<Option<Ended>>,
    notify: Notify,
    sender: broadcast::Sender<ConsoleLine>,
}

/// A device's console. Cheap to clone; all clones share the history.
#[derive(Debug, Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

impl Console {
    pub(crate) fn new(device: &str) -> Console {
        Console::with_history(device, HISTORY_LINES)
    }

    /// A console that keeps the last `lines` lines in memory.
    pub(crate) fn with_history(device: &str, lines: usize) -> Console {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Console {
            inner: Arc::new(Inner {
                device: device.to_owned(),
                lines: Mutex::new(History::new(lines)),
                ended: Mutex::new(None),
                notify: Notify::new(),
                sender,
            }),
        }
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.inner.device
    }

    /// The position after the last line printed so far.
    pub fn mark(&self) -> ConsoleMark {
        ConsoleMark(lock(&self.inner.lines).end())
    }

    /// Every line kept (the last [`HISTORY_LINES`]).
    pub fn lines(&self) -> Vec<ConsoleLine> {
        lock(&self.inner.lines).lines.iter().cloned().collect()
    }

    /// The lines kept that were printed after `mark`.
    pub fn lines_after(&self, mark: ConsoleMark) -> Vec<ConsoleLine> {
        lock(&self.inner.lines).from(mark.0).cloned().collect()
    }

    /// The text of the last `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let history = lock(&self.inner.lines);
        history
            .from(history.end().saturating_sub(n))
            .map(|l| l.text.clone())
            .collect()
    }

    /// New lines as they arrive (lines already printed are not repeated;
    /// a receiver that falls more than 1024 lines behind loses some, see
    /// [`Console::follow`] for a reader that never does).
    pub fn subscribe(&self) -> broadcast::Receiver<ConsoleLine> {
        self.inner.sender.subscribe()
    }

    /// A reader of every line from `from` on, in order, without loss
    /// (unless it falls more than [`HISTORY_LINES`] behind).
    pub fn follow(&self, from: ConsoleMark) -> ConsoleFollower {
        ConsoleFollower {
            console: self.clone(),
            next: from.0,
        }
    }

    /// Waits for a line matching `pattern`, searching the whole history
    /// first.
    pub async fn wait_for(
        &self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<ConsoleLine, WaitError> {
        self.wait_for_after(ConsoleMark::START, pattern, timeout)
            .await
    }

    /// Waits for a line after `mark` matching `pattern`.
    ///
    /// Fails with [`WaitError::Exited`] as soon as the device has stopped
    /// running and printed no matching line (a restart in progress does
    /// not count as stopped), and with [`WaitError::Timeout`] after
    /// `timeout`.
    pub async fn wait_for_after(
        &self,
        mark: ConsoleMark,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<ConsoleLine, WaitError> {
        let pattern = pattern.into();
        let deadline = Instant::now() + timeout;
        let mut cursor = mark.0;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // `ended` is read before the lines: every line of a run is
            // pushed before its end is recorded, so none is missed.
            let ended = lock(&self.inner.ended).clone();
            {
                let history = lock(&self.inner.lines);
                if let Some(line) = history
                    .from(cursor)
                    .find(|line| pattern.matches(&line.text))
                {
                    return Ok(line.clone());
                }
                cursor = cursor.max(history.end());
            }
            if let Some(ended) = ended {
                return Err(WaitError::Exited {
                    device: self.inner.device.clone(),
                    pattern: pattern.to_string(),
                    state: ended.state,
                    stderr_tail: ended.stderr_tail,
                    last_lines: self.tail(TAIL_LINES),
                });
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WaitError::Timeout {
                    device: self.inner.device.clone(),
                    pattern: pattern.to_string(),
                    timeout,
                    last_lines: self.tail(TAIL_LINES),
                });
            }
        }
    }

    /// Appends a line and wakes waiters and subscribers.
    pub(crate) fn push(&self, text: String) -> ConsoleLine {
        let line = lock(&self.inner.lines).push(text);
        // No subscriber is not an error.
        let _ = self.inner.sender.send(line.clone());
        self.inner.notify.notify_waiters();
        line
    }

    /// Records that the current run ended (`Some`) or that a new one began
    /// (`None`), and wakes waiters.
    pub(crate) fn set_ended(&self, ended: Option<Ended>) {
        *lock(&self.inner.ended) = ended;
        self.inner.notify.notify_waiters();
    }
}

/// Reads a device's console in order; see [`Console::follow`].
#[derive(Debug)]
pub struct ConsoleFollower {
    console: Console,
    next: usize,
}

impl ConsoleFollower {
    /// The next line, waiting for it if need be.
    pub async fn next(&mut self) -> ConsoleLine {
        loop {
            let notified = self.console.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A follower that fell more than the history behind goes on
            // from the oldest line kept.
            if let Some(line) = lock(&self.console.inner.lines).from(self.next).next() {
                self.next = line.index + 1;
                return line.clone();
            }
            notified.await;
        }
    }

    /// The position of the next line this follower returns.
    pub fn position(&self) -> ConsoleMark {
        ConsoleMark(self.next)
    }
}

/// Splits a byte stream into lines: `\n`-terminated, `\r` stripped, at most
/// [`MAX_LINE`] bytes, invalid UTF-8 replaced; a last unterminated line is
/// delivered at end of stream.
pub(crate) async fn read_lines<R: AsyncRead + Unpin>(reader: R, mut on_line: impl FnMut(String)) {
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::new();
    let mut emit = |line: &mut Vec<u8>| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        on_line(String::from_utf8_lossy(line).into_owned());
        line.clear();
    };
    loop {
        let available = match reader.fill_buf().await {
            Ok(available) => available,
            Err(e) => {
                tracing::debug!(error = %e, "reading emulator output failed");
                break;
            }
        };
        if available.is_empty() {
            if !line.is_empty() {
                emit(&mut line);
            }
            break;
        }
        let room = MAX_LINE - line.len();
        let (taken, complete) = match available.iter().take(room).position(|&b| b == b'\n') {
            Some(newline) => {
                line.extend_from_slice(&available[..newline]);
                (newline + 1, true)
            }
            None => {
                let taken = available.len().min(room);
                line.extend_from_slice(&available[..taken]);
                (taken, line.len() >= MAX_LINE)
            }
        };
        reader.consume(taken);
        if complete {
            emit(&mut line);
        }
    }
}

/// Reads a console stream until it ends: every line goes to `console.log`
/// in `state_dir` (raw text, one per line), to `tracing` at debug level and
/// to the console.
pub(crate) async fn capture<R: AsyncRead + Unpin>(reader: R, console: Console, log_path: &Path) {
    let mut log = match fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
    {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!(device = console.device(), path = %log_path.display(), error = %e,
                "cannot write the console log; lines are kept in memory only");
            None
        }
    };
    read_lines(reader, |text| {
        if let Some(file) = log.as_mut() {
            let written = file
                .write_all(text.as_bytes())
                .and_then(|()| file.write_all(b"\n"));
            if let Err(e) = written {
                tracing::warn!(device = console.device(), path = %log_path.display(), error = %e,
                    "writing the console log failed; lines are kept in memory only");
                log = None;
            }
        }
        tracing::debug!(device = console.device(), "console: {text}");
        console.push(text);
    })
    .await;
}

/// The last lines of a stream (an emulator's standard error), also logged
/// at debug level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl Tail {
    const CAPACITY: usize = 40;

    pub(crate) fn lines(&self) -> Vec<String> {
        lock(&self.lines).iter().cloned().collect()
    }

    pub(crate) async fn capture<R: AsyncRead + Unpin>(&self, reader: R, device: &str) {
        read_lines(reader, |text| {
            tracing::debug!(device, "emulator stderr: {text}");
            let mut lines = lock(&self.lines);
            if lines.len() == Tail::CAPACITY {
                lines.pop_front();
            }
            lines.push_back(text);
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_line_printed_before_the_wait_is_found() {
        let console = Console::new("dev");
        console.push("booting".to_owned());
        console.push("enrolled as 42".to_owned());
        let line = console.wait_for("enrolled", SHORT).await.expect("found");
        assert_eq!(line.text, "enrolled as 42");
        assert_eq!(line.index, 1);
        let line = console
            .wait_for(Pattern::regex(r"as (\d+)$").expect("regex"), SHORT)
            .await
            .expect("found");
        assert_eq!(line.index, 1);
    }

    #[tokio::test]
    async fn a_line_printed_during_the_wait_is_found() {
        let console = Console::new("dev");
        let printer = console.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            printer.push("noise".to_owned());
            tokio::time::sleep(Duration::from_millis(30)).await;
            printer.push("ready".to_owned());
        });
        let line = console
            .wait_for("ready", Duration::from_secs(5))
            .await
            .expect("found");
        assert_eq!(line.index, 1);
        task.await.expect("printer");
    }

    #[tokio::test]
    async fn waiting_after_a_mark_skips_earlier_lines() {
        let console = Console::new("dev");
        console.push("boot".to_owned());
        let mark = console.mark();
        let err = console
            .wait_for_after(mark, "boot", SHORT)
            .await
            .expect_err("must fail");
        assert!(matches!(err, WaitError::Timeout { .. }), "{err}");
        console.push("boot".to_owned());
        let line = console
            .wait_for_after(mark, "boot", SHORT)
            .await
            .expect("second boot");
        assert_eq!(line.index, 1);
        let err = console
            .wait_for_after(line.mark_after(), "boot", SHORT)
            .await
            .expect_err("must fail");
        assert!(matches!(err, WaitError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_timeout_quotes_the_last_twenty_lines() {
        let console = Console::new("dev-3");
        for i in 0..30 {
            console.push(format!("line {i}"));
        }
        let err = console
            .wait_for("never", SHORT)
            .await
            .expect_err("must fail");
        let message = err.to_string();
        assert!(message.contains("dev-3"), "{message}");
        assert!(message.contains("\"never\""), "{message}");
        assert!(message.contains("line 29"), "{message}");
        assert!(message.contains("line 10"), "{message}");
        assert!(!message.contains("line 9\n"), "{message}");
        match err {
            WaitError::Timeout { last_lines, .. } => assert_eq!(last_lines.len(), TAIL_LINES),
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn an_ended_run_fails_the_wait_with_its_stderr() {
        let console = Console::new("dev");
        console.push("last words".to_owned());
        let waiter = console.clone();
        let task =
            tokio::spawn(async move { waiter.wait_for("never", Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        console.set_ended(Some(Ended {
            state: DeviceState::Exited { code: 1 },
            stderr_tail: vec!["qemu: could not load kernel".to_owned()],
        }));
        let err = task.await.expect("waiter").expect_err("must fail");
        let message = err.to_string();
        assert!(matches!(err, WaitError::Exited { .. }), "{message}");
        assert!(message.contains("exited with code 1"), "{message}");
        assert!(message.contains("could not load kernel"), "{message}");
        assert!(message.contains("last words"), "{message}");
        // A line that did arrive is still found after the end.
        assert!(console.wait_for("last", SHORT).await.is_ok());
    }

    #[tokio::test]
    async fn followers_and_subscribers_see_lines_in_order() {
        let console = Console::new("dev");
        console.push("a".to_owned());
        let mut subscriber = console.subscribe();
        let mut follower = console.follow(ConsoleMark::START);
        console.push("b".to_owned());
        assert_eq!(follower.next().await.text, "a");
        assert_eq!(follower.next().await.text, "b");
        assert_eq!(subscriber.recv().await.expect("b").text, "b");
        assert_eq!(follower.position(), ConsoleMark(2));
    }

    #[tokio::test]
    async fn lines_are_split_and_cleaned() {
        let mut input: Vec<u8> = b"one\r\ntwo\n\xffbad\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\nlast");
        let mut lines = Vec::new();
        read_lines(input.as_slice(), |line| lines.push(line)).await;
        assert_eq!(lines[0], "one");
        assert_eq!(lines[1], "two");
        assert_eq!(lines[2], "\u{fffd}bad");
        assert_eq!(lines[3].len(), MAX_LINE);
        assert_eq!(lines[4], "x".repeat(10));
        assert_eq!(lines[5], "last");
        assert_eq!(lines.len(), 6);
    }

    #[tokio::test]
    async fn capture_writes_raw_lines_to_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("console.log");
        fs::write(&path, "earlier run\n").expect("seed");
        let console = Console::new("dev");
        capture(&b"hello\r\nworld\n"[..], console.clone(), &path).await;
        assert_eq!(
            fs::read_to_string(&path).expect("log"),
            "earlier run\nhello\nworld\n"
        );
        assert_eq!(console.tail(5), vec!["hello", "world"]);
    }

    #[tokio::test]
    async fn the_history_keeps_the_last_lines_and_marks_stay_valid() {
        let console = Console::with_history("dev", 3);
        let mut follower = console.follow(ConsoleMark::START);
        for i in 0..5 {
            console.push(format!("line {i}"));
        }
        assert_eq!(console.mark(), ConsoleMark(5));
        let kept: Vec<(usize, String)> = console
            .lines()
            .into_iter()
            .map(|l| (l.index, l.text))
            .collect();
        assert_eq!(
            kept,
            [
                (2, "line 2".into()),
                (3, "line 3".into()),
                (4, "line 4".into())
            ]
        );
        assert_eq!(console.lines_after(ConsoleMark(4)).len(), 1);
        assert_eq!(console.lines_after(ConsoleMark(1)).len(), 3);
        assert_eq!(console.tail(10), ["line 2", "line 3", "line 4"]);
        // A follower that fell behind goes on from the oldest line kept.
        assert_eq!(follower.next().await.index, 2);
        assert_eq!(follower.position(), ConsoleMark(3));
        let found = console
            .wait_for_after(ConsoleMark(1), "line 3", Duration::from_millis(10))
            .await
            .expect("line 3 is kept");
        assert_eq!(found.index, 3);
        assert!(
            console
                .wait_for("line 0", Duration::from_millis(10))
                .await
                .is_err(),
            "line 0 is no longer kept"
        );
        console.push("line 5".into());
        assert_eq!(console.lines()[0].index, 3);
    }
}
