//! A client of QMP, the QEMU Machine Protocol: how the manager resumes a
//! paused QEMU once its link UART is connected and presses its reset
//! button.
//!
//! QMP is one JSON object per line. QEMU greets (`{"QMP": {...}}`), the
//! client leaves negotiation mode with `qmp_capabilities`, then each
//! command carries an `id` that QEMU puts in its answer, `{"return": ...}`
//! or `{"error": {"class": ..., "desc": ...}}`. Events (`{"event": ...}`)
//! come at any time, before an answer as well as between commands.
//!
//! A task reads everything QEMU sends: answers go to the command waiting
//! for them (an answer with another id, the late answer to a command that
//! timed out, is dropped), events to whoever subscribed. Reading never
//! stops, so events do not pile up in QEMU while no command is sent (a
//! firmware stuck in a reset loop makes hundreds of `RESET`s a second).
//! Every wait has a timeout, and a line longer than [`MAX_LINE`] ends the
//! connection.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// The longest line accepted from QEMU, end of line included. The answers
/// to the commands sent here take less than 1 KiB.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Events kept for a subscriber that has not read them yet; older ones are
/// dropped.
const EVENT_BACKLOG: usize = 64;

/// Answers (and the error that ended the connection) waiting to be read.
/// There is at most one per command sent, so this only fills if commands
/// time out one after another.
const ANSWER_BACKLOG: usize = 8;

/// How often [`Qmp::wait_chardev_connected`] asks.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Why talking to QEMU over QMP failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Reading or writing the socket failed.
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU closed the connection (it exited, most likely).
    #[error("QEMU closed its QMP connection")]
    Closed,
    /// QEMU sent a line longer than the limit (64 KiB); the connection is
    /// closed.
    #[error("QEMU sent a QMP line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// QEMU sent something that is not a QMP message, or a message out of
    /// place; the connection is closed.
    #[error("QEMU sent an invalid QMP message: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// QEMU did not greet in time.
    #[error("QEMU sent no QMP greeting within {after:?}")]
    GreetingTimeout {
        /// How long the client waited.
        after: Duration,
    },
    /// QEMU did not answer a command in time.
    #[error("QEMU did not answer {command} within {after:?}")]
    Timeout {
        /// The command.
        command: String,
        /// How long the client waited.
        after: Duration,
    },
    /// An awaited event did not come in time.
    #[error("QEMU sent no {event} event within {after:?}")]
    EventTimeout {
        /// The event.
        event: String,
        /// How long the client waited.
        after: Duration,
    },
    /// QEMU answered a command with an error.
    #[error("QEMU refused {command}: {class}: {desc}")]
    Refused {
        /// The command.
        command: String,
        /// QMP's error class (`GenericError`, `CommandNotFound`, …).
        class: String,
        /// QEMU's explanation.
        desc: String,
    },
    /// QEMU answered a command with a value of an unexpected type.
    #[error("unexpected answer to {command}: {answer}")]
    UnexpectedAnswer {
        /// The command.
        command: String,
        /// The answer, as QEMU sent it.
        answer: String,
    },
}

fn malformed(reason: impl Into<String>) -> QmpError {
    QmpError::Malformed {
        reason: reason.into(),
    }
}

/// An event QEMU sent: `RESET`, `STOP`, `RESUME`, `SHUTDOWN`, …
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QmpEvent {
    /// The event's name.
    pub(crate) name: String,
    /// Its `data` member (`null` when it has none).
    pub(crate) data: Value,
}

impl QmpEvent {
    /// A `RESET` the host asked for (`system_reset`), not one the guest
    /// made (a watchdog, a fault, `SYSRESETREQ`).
    fn is_host_reset(&self) -> bool {
        self.name == "RESET" && self.data.get("guest") == Some(&Value::Bool(false))
    }
}

/// QEMU's version, from its greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct QemuVersion {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) micro: u32,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Any line QEMU sends; which members are present tells what it is.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "QMP")]
    greeting: Option<Greeting>,
    event: Option<String>,
    #[serde(default)]
    data: Value,
    #[serde(rename = "return")]
    answer: Option<Value>,
    error: Option<ErrorBody>,
    id: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Greeting {
    version: GreetingVersion,
}

#[derive(Debug, Deserialize)]
struct GreetingVersion {
    qemu: QemuVersion,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    class: String,
    desc: String,
}

/// The answer to one command.
#[derive(Debug)]
struct Answer {
    id: Option<Value>,
    outcome: Result<Value, ErrorBody>,
}

#[derive(Debug)]
enum Incoming {
    Greeting(Greeting),
    Event(QmpEvent),
    Answer(Answer),
}

fn parse(line: &[u8]) -> Result<Incoming, QmpError> {
    let message: Message = serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
    if let Some(greeting) = message.greeting {
        return Ok(Incoming::Greeting(greeting));
    }
    if let Some(name) = message.event {
        return Ok(Incoming::Event(QmpEvent {
            name,
            data: message.data,
        }));
    }
    let outcome = match (message.answer, message.error) {
        (Some(value), None) => Ok(value),
        (None, Some(error)) => Err(error),
        _ => return Err(malformed("neither a greeting, an event nor an answer")),
    };
    Ok(Incoming::Answer(Answer {
        id: message.id,
        outcome,
    }))
}

/// Reads one line of at most [`MAX_LINE`] bytes into `line`; `false` at
/// the end of the stream.
async fn read_line(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> Result<bool, QmpError> {
    line.clear();
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
    // One byte more than allowed tells an overlong line from one that
    // fits exactly.
    let read = (&mut *reader)
        .take(limit + 1)
        .read_until(b'\n', line)
        .await?;
    if read == 0 {
        return Ok(false);
    }
    if line.len() > MAX_LINE {
        return Err(QmpError::LineTooLong { limit: MAX_LINE });
    }
    if !line.ends_with(b"\n") {
        // The stream ended in the middle of a line.
        return Err(QmpError::Closed);
    }
    Ok(true)
}

/// A QMP connection out of negotiation mode, ready for commands.
#[derive(Debug)]
pub(crate) struct Qmp {
    /// For log lines: the device this QEMU runs.
    device: String,
    version: QemuVersion,
    writer: OwnedWriteHalf,
    answers: mpsc::Receiver<Result<Answer, QmpError>>,
    /// Kept to subscribe more receivers; it does not hold the channel
    /// open, so subscribers see it close with the connection.
    events: broadcast::Receiver<QmpEvent>,
    next_id: u64,
    timeout: Duration,
    reader: JoinHandle<()>,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Qmp {
    /// Takes over a connection to QEMU's QMP monitor: waits up to
    /// `greeting_timeout` for the greeting, then leaves negotiation mode.
    /// Every command afterwards gets `timeout` to be answered.
    pub(crate) async fn handshake(
        stream: UnixStream,
        device: &str,
        greeting_timeout: Duration,
        timeout: Duration,
    ) -> Result<Qmp, QmpError> {
        let (read, writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        let greeted = tokio::time::timeout(greeting_timeout, read_line(&mut reader, &mut line))
            .await
            .map_err(|_| QmpError::GreetingTimeout {
                after: greeting_timeout,
            })??;
        if !greeted {
            return Err(QmpError::Closed);
        }
        let version = match parse(&line)? {
            Incoming::Greeting(greeting) => greeting.version.qemu,
            _ => return Err(malformed("the first message is not QMP's greeting")),
        };
        let (answer_sender, answers) = mpsc::channel(ANSWER_BACKLOG);
        let (event_sender, events) = broadcast::channel(EVENT_BACKLOG);
        let reader = tokio::spawn(read_messages(
            reader,
            answer_sender,
            event_sender,
            device.to_owned(),
        ));
        let mut qmp = Qmp {
            device: device.to_owned(),
            version,
            writer,
            answers,
            events,
            next_id: 0,
            timeout,
            reader,
        };
        qmp.execute("qmp_capabilities", None).await?;
        tracing::debug!(device, qemu = %version, "QMP connected");
        Ok(qmp)
    }

    /// The QEMU version the greeting gave.
    pub(crate) fn version(&self) -> QemuVersion {
        self.version
    }

    /// A receiver of the events QEMU sends from now on.
    pub(crate) fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.resubscribe()
    }

    /// Runs a command; what it returned, or why not.
    pub(crate) async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let request = format!("{request}\n");
        let expected = Some(Value::from(id));
        let device = self.device.as_str();
        let writer = &mut self.writer;
        let answers = &mut self.answers;
        let exchange = async {
            writer.write_all(request.as_bytes()).await?;
            loop {
                let answer = answers.recv().await.ok_or(QmpError::Closed)??;
                if answer.id == expected {
                    return answer.outcome.map_err(|error| QmpError::Refused {
                        command: command.to_owned(),
                        class: error.class,
                        desc: error.desc,
                    });
                }
                tracing::debug!(device, id = ?answer.id, "dropping a QMP answer to an earlier command");
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| QmpError::Timeout {
                command: command.to_owned(),
                after: self.timeout,
            })?
    }

    /// Lets a paused guest run (`cont`).
    pub(crate) async fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).await.map(drop)
    }

    /// Lets a paused guest run once socket chardev `id` is connected, or
    /// after `timeout` without it; whether it was connected.
    pub(crate) async fn cont_once_connected(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<bool, QmpError> {
        let connected = self.wait_chardev_connected(id, timeout).await?;
        self.cont().await?;
        Ok(connected)
    }

    /// Resets the machine as its reset button would (`system_reset`), and
    /// returns once QEMU has done it (its `RESET` event), not merely
    /// accepted the request.
    pub(crate) async fn system_reset(&mut self) -> Result<(), QmpError> {
        // QEMU may send the event before its answer: subscribe first.
        let mut events = self.events();
        self.execute("system_reset", None).await?;
        let timeout = self.timeout;
        let waiting = async {
            loop {
                match events.recv().await {
                    Ok(event) if event.is_host_reset() => return Ok(()),
                    Ok(_) => {}
                    // Guest resets crowded it out: it may still come.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(QmpError::Closed),
                }
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .map_err(|_| QmpError::EventTimeout {
                event: "RESET".to_owned(),
                after: timeout,
            })?
    }

    /// Whether socket chardev `id` is connected: its QOM property
    /// `connected`. (`query-chardev` does not say: its `frontend-open` is
    /// about the guest side and is true while the socket is not connected.)
    pub(crate) async fn chardev_connected(&mut self, id: &str) -> Result<bool, QmpError> {
        let arguments = json!({ "path": format!("/chardevs/{id}"), "property": "connected" });
        let answer = self.execute("qom-get", Some(arguments)).await?;
        answer.as_bool().ok_or_else(|| QmpError::UnexpectedAnswer {
            command: "qom-get".to_owned(),
            answer: answer.to_string(),
        })
    }

    /// Asks until socket chardev `id` is connected or `timeout` passes;
    /// whether it connected.
    pub(crate) async fn wait_chardev_connected(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<bool, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.chardev_connected(id).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Reads QEMU's messages until the connection ends or breaks: answers to
/// `answers`, events to `events`. The error that ended it, if any, is the
/// last thing sent to `answers`.
async fn read_messages(
    mut reader: BufReader<OwnedReadHalf>,
    answers: mpsc::Sender<Result<Answer, QmpError>>,
    events: broadcast::Sender<QmpEvent>,
    device: String,
) {
    let mut line = Vec::new();
    let ended = loop {
        let message = match read_line(&mut reader, &mut line).await {
            Ok(true) => parse(&line),
            Ok(false) => break QmpError::Closed,
            Err(e) => break e,
        };
        match message {
            Ok(Incoming::Answer(answer)) => {
                if answers.try_send(Ok(answer)).is_err() {
                    tracing::debug!(device = %device, "no command waits for this QMP answer: dropped");
                }
            }
            Ok(Incoming::Event(event)) => {
                tracing::debug!(device = %device, event = %event.name, data = %event.data, "QMP event");
                // No subscriber is fine: nobody waits for an event now.
                let _ = events.send(event);
            }
            Ok(Incoming::Greeting(_)) => break malformed("a second greeting"),
            Err(e) => break e,
        }
    };
    match &ended {
        QmpError::Closed => tracing::debug!(device = %device, "QMP connection closed"),
        e => tracing::warn!(device = %device, error = %e, "QMP connection broken"),
    }
    // The error goes to the next command; if the backlog is full, that
    // command gets `Closed` instead.
    let _ = answers.try_send(Err(ended));
}

#[cfg(test)]
mod tests;
