//! The result of running a module.

use minicbor::{Decode, Encode};

use super::{DeploymentId, Value};
use crate::wire_enum::wire_enum;

/// Most values a function returns in a result.
pub const MAX_RESULTS: usize = 4;
/// Most log lines a result carries.
pub const MAX_LOG_LINES: usize = 8;
/// Longest log line, in bytes; longer lines are cut by the device.
pub const LOG_LINE_LEN: usize = 96;

/// A log line a module wrote through the host API, borrowed from the
/// device's log buffer or from the received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogLine<'a>(&'a str);

impl<'a> LogLine<'a> {
    /// The line, cut at a character boundary to fit [`LOG_LINE_LEN`].
    pub fn truncated(line: &'a str) -> LogLine<'a> {
        let mut end = line.len().min(LOG_LINE_LEN);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        LogLine(&line[..end])
    }

    /// The line if it fits [`LOG_LINE_LEN`].
    pub fn new(line: &'a str) -> Option<LogLine<'a>> {
        (line.len() <= LOG_LINE_LEN).then_some(LogLine(line))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl<C> minicbor::Encode<C> for LogLine<'_> {
    fn encode<W: minicbor::encode::Write>(
        &self,
        e: &mut minicbor::Encoder<W>,
        _: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.str(self.0)?;
        Ok(())
    }
}

impl<'b, C> minicbor::Decode<'b, C> for LogLine<'b> {
    fn decode(d: &mut minicbor::Decoder<'b>, _: &mut C) -> Result<Self, minicbor::decode::Error> {
        let at = d.position();
        LogLine::new(d.str()?).ok_or_else(|| {
            minicbor::decode::Error::message("log line longer than its bound").at(at)
        })
    }
}

/// Device → gateway: one invocation finished.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct ExecutionResult<'a> {
    #[n(0)]
    pub deployment: DeploymentId,
    /// Counts invocations of this deployment from 1.
    #[n(1)]
    pub invocation: u32,
    #[n(2)]
    pub outcome: Outcome,
    #[n(3)]
    pub fuel_used: u64,
    #[n(4)]
    pub duration_us: u64,
    #[cbor(b(5), with = "crate::bounded::list")]
    pub logs: heapless::Vec<LogLine<'a>, MAX_LOG_LINES>,
    /// Log lines were dropped because there were more than fit.
    #[n(6)]
    pub logs_truncated: bool,
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(flat)]
pub enum Outcome {
    #[n(0)]
    Returned(#[cbor(n(0), with = "crate::bounded::list")] heapless::Vec<Value, MAX_RESULTS>),
    #[n(1)]
    Trapped(#[n(0)] TrapCode),
}

wire_enum! {
    /// Why a module trapped.
    pub enum TrapCode {
        Unreachable = 0,
        MemoryOutOfBounds = 1,
        TableOutOfBounds = 2,
        IndirectCallToNull = 3,
        BadSignature = 4,
        IntegerOverflow = 5,
        IntegerDivisionByZero = 6,
        BadConversionToInteger = 7,
        StackOverflow = 8,
        /// The invocation used up its fuel.
        OutOfFuel = 9,
        /// A host function refused the call.
        HostError = 10,
        /// Memory growth beyond the deployment's limit.
        MemoryLimit = 11,
        /// The device reset during the run: a fault, running out of memory,
        /// a watchdog or power loss; the run did not finish.
        DeviceReset = 12,
    }
}
