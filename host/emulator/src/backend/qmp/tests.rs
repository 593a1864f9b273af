//! The QMP client against a scripted fake QEMU on the other end of a
//! socket pair.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::*;

/// QEMU 7.2's greeting, as it sends it.
const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#;
/// Long enough for anything that happens; a test waiting this long failed.
const PATIENCE: Duration = Duration::from_secs(10);
/// The command timeout of the client under test.
const TIMEOUT: Duration = Duration::from_millis(300);

/// The QEMU side of the connection, played by the test.
struct FakeQemu {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl FakeQemu {
    /// Sends one line, with QEMU's end of line.
    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("the fake sends");
    }

    /// Reads the next command, which must be `command`: its id and
    /// arguments (`null` without).
    async fn expect(&mut self, command: &str) -> (Value, Value) {
        self.expect_one_of(&[command]).await
    }

    /// Reads the next command, which must be one of `commands`.
    async fn expect_one_of(&mut self, commands: &[&str]) -> (Value, Value) {
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, self.reader.read_line(&mut line))
            .await
            .expect("a command in time")
            .expect("the fake reads");
        let request: Value = serde_json::from_str(&line).expect("the client sends JSON");
        let command = request["execute"].as_str().unwrap_or_default();
        assert!(commands.contains(&command), "expected {commands:?}: {line}");
        assert!(line.ends_with('\n'), "one command a line: {line:?}");
        let id = request.get("id").cloned().expect("every command has an id");
        (id, request.get("arguments").cloned().unwrap_or(Value::Null))
    }

    async fn answer(&mut self, id: &Value, value: Value) {
        self.send(&json!({ "return": value, "id": id }).to_string())
            .await;
    }

    async fn refuse(&mut self, id: &Value, class: &str, desc: &str) {
        self.send(&json!({ "id": id, "error": { "class": class, "desc": desc } }).to_string())
            .await;
    }

    async fn event(&mut self, name: &str, data: Value) {
        let timestamp = json!({ "seconds": 1_796_658_520, "microseconds": 53_709 });
        self.send(&json!({ "timestamp": timestamp, "event": name, "data": data }).to_string())
            .await;
    }

    /// Greets and accepts the capabilities negotiation.
    async fn accept_handshake(&mut self) {
        self.send(GREETING).await;
        let (id, arguments) = self.expect("qmp_capabilities").await;
        assert_eq!(arguments, Value::Null);
        self.answer(&id, json!({})).await;
    }
}

/// The next event, or a failed test.
async fn next_event(events: &mut broadcast::Receiver<QmpEvent>) -> QmpEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event in time")
        .expect("an event")
}

fn pair() -> (UnixStream, FakeQemu) {
    let (client, qemu) = UnixStream::pair().expect("socket pair");
    let (read, writer) = qemu.into_split();
    (
        client,
        FakeQemu {
            reader: BufReader::new(read),
            writer,
        },
    )
}

/// A client past the handshake, and its fake QEMU.
async fn connected() -> (Qmp, FakeQemu) {
    let (client, mut qemu) = pair();
    let (qmp, ()) = tokio::join!(
        Qmp::handshake(client, "qemu-0", PATIENCE, TIMEOUT),
        qemu.accept_handshake()
    );
    (qmp.expect("handshake"), qemu)
}

#[tokio::test]
async fn the_handshake_reads_the_greeting_and_negotiates_capabilities() {
    let (qmp, _qemu) = connected().await;
    assert_eq!(
        qmp.version(),
        QemuVersion {
            major: 7,
            minor: 2,
            micro: 22
        }
    );
    assert_eq!(qmp.version().to_string(), "7.2.22");
}

#[tokio::test]
async fn a_first_line_that_is_no_greeting_is_refused() {
    let (client, mut qemu) = pair();
    qemu.event("RESUME", Value::Null).await;
    let err = Qmp::handshake(client, "qemu-0", PATIENCE, TIMEOUT)
        .await
        .expect_err("no greeting");
    assert!(matches!(err, QmpError::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn a_silent_peer_fails_the_handshake_in_time() {
    let (client, _qemu) = pair();
    let handshake = Qmp::handshake(client, "qemu-0", TIMEOUT, TIMEOUT);
    let err = tokio::time::timeout(PATIENCE, handshake)
        .await
        .expect("the client gives up by itself")
        .expect_err("no greeting");
    assert!(
        matches!(err, QmpError::GreetingTimeout { after } if after == TIMEOUT),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_capabilities_negotiation_fails_the_handshake() {
    let (client, mut qemu) = pair();
    let script = async {
        qemu.send(GREETING).await;
        let (id, _) = qemu.expect("qmp_capabilities").await;
        qemu.refuse(&id, "CommandNotFound", "no").await;
    };
    let (result, ()) = tokio::join!(Qmp::handshake(client, "qemu-0", PATIENCE, TIMEOUT), script);
    let err = result.expect_err("refused");
    assert!(
        matches!(&err, QmpError::Refused { command, .. } if command == "qmp_capabilities"),
        "{err}"
    );
}

#[tokio::test]
async fn answers_are_told_from_events_and_matched_by_id() {
    let (mut qmp, mut qemu) = connected().await;
    let mut events = qmp.events();
    let script = async {
        let (id, arguments) = qemu.expect("query-status").await;
        assert_eq!(arguments, Value::Null);
        qemu.event("STOP", Value::Null).await;
        // An answer to some other command is not this one's.
        qemu.answer(&json!(9_999), json!({ "status": "wrong" }))
            .await;
        qemu.event("RESUME", json!({ "x": 1 })).await;
        qemu.answer(&id, json!({ "status": "running" })).await;
    };
    let (answer, ()) = tokio::join!(qmp.execute("query-status", None), script);
    assert_eq!(answer.expect("answer"), json!({ "status": "running" }));
    let first = next_event(&mut events).await;
    assert_eq!(first.name, "STOP");
    assert_eq!(first.data, Value::Null);
    let second = next_event(&mut events).await;
    assert_eq!(second.name, "RESUME");
    assert_eq!(second.data, json!({ "x": 1 }));
}

#[tokio::test]
async fn commands_carry_their_arguments_and_distinct_ids() {
    let (mut qmp, mut qemu) = connected().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let script = async {
            let (id, arguments) = qemu.expect("human-monitor-command").await;
            assert_eq!(arguments, json!({ "command-line": "info version" }));
            qemu.answer(&id, json!("7.2.22\r\n")).await;
            id
        };
        let arguments = json!({ "command-line": "info version" });
        let (answer, id) = tokio::join!(
            qmp.execute("human-monitor-command", Some(arguments)),
            script
        );
        assert_eq!(answer.expect("answer"), json!("7.2.22\r\n"));
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn an_error_answer_is_a_typed_refusal() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        let (id, _) = qemu.expect("nope").await;
        qemu.refuse(
            &id,
            "CommandNotFound",
            "The command nope has not been found",
        )
        .await;
    };
    let (answer, ()) = tokio::join!(qmp.execute("nope", None), script);
    match answer.expect_err("refused") {
        QmpError::Refused {
            command,
            class,
            desc,
        } => {
            assert_eq!(command, "nope");
            assert_eq!(class, "CommandNotFound");
            assert_eq!(desc, "The command nope has not been found");
        }
        other => panic!("not a refusal: {other}"),
    }
}

#[tokio::test]
async fn a_command_never_answered_times_out_and_its_late_answer_is_dropped() {
    let (mut qmp, mut qemu) = connected().await;
    let started = tokio::time::Instant::now();
    let exchange = async { tokio::join!(qmp.execute("cont", None), qemu.expect("cont")) };
    let (answer, (late_id, _)) = tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("the client gives up by itself");
    let err = answer.expect_err("no answer");
    assert!(
        matches!(&err, QmpError::Timeout { command, after } if command == "cont" && *after == TIMEOUT),
        "{err}"
    );
    assert!(started.elapsed() >= TIMEOUT);
    assert!(started.elapsed() < PATIENCE);

    // The answer comes after all: the next command must not take it.
    let script = async {
        let (id, _) = qemu.expect("query-status").await;
        assert_ne!(id, late_id);
        qemu.answer(&late_id, json!({})).await;
        qemu.answer(&id, json!({ "status": "paused" })).await;
    };
    let (answer, ()) = tokio::join!(qmp.execute("query-status", None), script);
    assert_eq!(answer.expect("answer"), json!({ "status": "paused" }));
}

/// An event with empty data, to pad.
const EMPTY_EVENT: &str = r#"{"event": "X", "data": ""}"#;

/// An event line of exactly `length` bytes, end of line included.
fn event_line_of(length: usize) -> String {
    let padding = "a".repeat(length - EMPTY_EVENT.len() - "\r\n".len());
    format!(r#"{{"event": "X", "data": "{padding}"}}"#)
}

#[tokio::test]
async fn a_line_of_the_longest_length_is_read() {
    let (qmp, mut qemu) = connected().await;
    let mut events = qmp.events();
    qemu.send(&event_line_of(MAX_LINE)).await;
    let event = next_event(&mut events).await;
    assert_eq!(event.name, "X");
    let padding = MAX_LINE - EMPTY_EVENT.len() - 2;
    assert_eq!(event.data.as_str().map(str::len), Some(padding));
}

#[tokio::test]
async fn an_overlong_line_ends_the_connection() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        let (id, _) = qemu.expect("query-status").await;
        qemu.send(&event_line_of(MAX_LINE + 1)).await;
        qemu.answer(&id, json!({})).await;
    };
    let (answer, ()) = tokio::join!(qmp.execute("query-status", None), script);
    let err = answer.expect_err("too long");
    assert!(
        matches!(err, QmpError::LineTooLong { limit } if limit == MAX_LINE),
        "{err}"
    );
    let err = qmp
        .execute("query-status", None)
        .await
        .expect_err("the connection is gone");
    assert!(matches!(err, QmpError::Closed), "{err}");
}

#[tokio::test]
async fn an_endless_line_is_cut_at_the_limit() {
    let (mut qmp, mut qemu) = connected().await;
    // A peer that sends without ever ending its line: the client stops at
    // the limit instead of buffering all of it.
    let flood = async {
        let chunk = vec![b'a'; 4096];
        while qemu.writer.write_all(&chunk).await.is_ok() {}
        std::future::pending::<()>().await;
    };
    let answer = tokio::select! {
        answer = qmp.execute("query-status", None) => answer,
        () = flood => unreachable!("the flood never ends"),
    };
    let err = answer.expect_err("too long");
    assert!(matches!(err, QmpError::LineTooLong { .. }), "{err}");
}

#[tokio::test]
async fn a_line_that_is_not_json_ends_the_connection() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        qemu.expect("query-status").await;
        qemu.send("garbage").await;
    };
    let (answer, ()) = tokio::join!(qmp.execute("query-status", None), script);
    let err = answer.expect_err("malformed");
    assert!(matches!(err, QmpError::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn a_message_of_no_known_kind_ends_the_connection() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        let (id, _) = qemu.expect("query-status").await;
        qemu.send(&json!({ "id": id }).to_string()).await;
    };
    let (answer, ()) = tokio::join!(qmp.execute("query-status", None), script);
    let err = answer.expect_err("malformed");
    assert!(matches!(err, QmpError::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn a_peer_that_goes_away_is_reported() {
    let (mut qmp, qemu) = connected().await;
    let mut events = qmp.events();
    drop(qemu);
    let err = qmp.execute("query-status", None).await.expect_err("closed");
    assert!(matches!(err, QmpError::Closed | QmpError::Io(_)), "{err}");
    let closed = tokio::time::timeout(PATIENCE, events.recv()).await;
    assert!(
        matches!(closed, Ok(Err(broadcast::error::RecvError::Closed))),
        "{closed:?}"
    );
}

#[tokio::test]
async fn the_link_state_is_the_chardev_s_connected_property() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        let (id, arguments) = qemu.expect("qom-get").await;
        assert_eq!(
            arguments,
            json!({ "path": "/chardevs/link", "property": "connected" })
        );
        qemu.answer(&id, json!(true)).await;
    };
    let (connected, ()) = tokio::join!(qmp.chardev_connected("link"), script);
    assert!(connected.expect("answer"));

    let script = async {
        let (id, _) = qemu.expect("qom-get").await;
        qemu.answer(&id, json!("yes")).await;
    };
    let (connected, ()) = tokio::join!(qmp.chardev_connected("link"), script);
    let err = connected.expect_err("not a boolean");
    assert!(matches!(err, QmpError::UnexpectedAnswer { .. }), "{err}");
}

#[tokio::test]
async fn waiting_for_the_link_asks_until_it_is_connected() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        for connected in [false, false, true] {
            let (id, _) = qemu.expect("qom-get").await;
            qemu.answer(&id, json!(connected)).await;
        }
    };
    let (connected, ()) = tokio::join!(qmp.wait_chardev_connected("link", PATIENCE), script);
    assert!(connected.expect("answers"));
}

#[tokio::test]
async fn waiting_for_a_link_that_never_connects_gives_up() {
    let (mut qmp, mut qemu) = connected().await;
    let answering = async {
        loop {
            let (id, _) = qemu.expect("qom-get").await;
            qemu.answer(&id, json!(false)).await;
        }
    };
    let connected = tokio::select! {
        connected = qmp.wait_chardev_connected("link", Duration::from_millis(50)) => connected,
        () = answering => unreachable!("the fake answers forever"),
    };
    assert!(!connected.expect("answers"));
}

#[tokio::test]
async fn the_guest_is_let_run_only_once_the_link_is_connected() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        for connected in [false, true] {
            let (id, arguments) = qemu.expect("qom-get").await;
            assert_eq!(arguments["path"], "/chardevs/link");
            qemu.answer(&id, json!(connected)).await;
        }
        let (id, _) = qemu.expect("cont").await;
        qemu.event("RESUME", Value::Null).await;
        qemu.answer(&id, json!({})).await;
    };
    let (connected, ()) = tokio::join!(qmp.cont_once_connected("link", PATIENCE), script);
    assert!(connected.expect("resumed"));
}

#[tokio::test]
async fn a_link_that_never_connects_does_not_keep_the_guest_paused() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        loop {
            let (id, arguments) = qemu.expect_one_of(&["qom-get", "cont"]).await;
            let cont = arguments.is_null();
            qemu.answer(&id, if cont { json!({}) } else { json!(false) })
                .await;
            if cont {
                break;
            }
        }
    };
    let (connected, ()) = tokio::join!(
        qmp.cont_once_connected("link", Duration::from_millis(50)),
        script
    );
    assert!(!connected.expect("resumed all the same"));
}

#[tokio::test]
async fn a_reset_returns_once_qemu_has_reset_the_machine() {
    let (mut qmp, mut qemu) = connected().await;
    let (mut qmp, mut qemu) = {
        let reset = tokio::spawn(async move {
            let result = qmp.system_reset().await;
            (result, qmp)
        });
        let (id, _) = qemu.expect("system_reset").await;
        qemu.answer(&id, json!({})).await;
        // A reset the guest made is not the one asked for.
        qemu.event("RESET", json!({ "guest": true, "reason": "guest-reset" }))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!reset.is_finished(), "returned before the reset happened");
        qemu.event(
            "RESET",
            json!({ "guest": false, "reason": "host-qmp-system-reset" }),
        )
        .await;
        let (result, qmp) = tokio::time::timeout(PATIENCE, reset)
            .await
            .expect("in time")
            .expect("the task");
        result.expect("reset");
        (qmp, qemu)
    };

    // QEMU 7.2 sends the event before its answer.
    let script = async {
        let (id, _) = qemu.expect("system_reset").await;
        qemu.event(
            "RESET",
            json!({ "guest": false, "reason": "host-qmp-system-reset" }),
        )
        .await;
        qemu.answer(&id, json!({})).await;
    };
    let (result, ()) = tokio::join!(qmp.system_reset(), script);
    result.expect("reset");
}

#[tokio::test]
async fn a_reset_that_never_happens_times_out() {
    let (mut qmp, mut qemu) = connected().await;
    let script = async {
        let (id, _) = qemu.expect("system_reset").await;
        qemu.answer(&id, json!({})).await;
    };
    let exchange = async { tokio::join!(qmp.system_reset(), script) };
    let (result, ()) = tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("the client gives up by itself");
    let err = result.expect_err("no RESET event");
    assert!(
        matches!(&err, QmpError::EventTimeout { event, .. } if event == "RESET"),
        "{err}"
    );
}
