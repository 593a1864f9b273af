//! Decodes a capture of Wasmbed frames: for each frame, its length, its
//! CBOR in diagnostic notation (RFC 8949 §8) and the decoded message.
//!
//! ```text
//! cargo run -p wasmbed-protocol --features std --example decode -- --help
//! ```

use std::fmt::Write as _;
use std::io::{Cursor, Read as _, Write as _};
use std::process::ExitCode;

use wasmbed_protocol::codec;
use wasmbed_protocol::frame::{self, FrameError, HEADER_LEN, MAX_FRAME_LEN};

const USAGE: &str = "\
Decode a capture of Wasmbed protocol frames.

USAGE:
    decode [OPTIONS] [--hex HEX | FILE | -]

INPUT (one of; standard input when none is given):
    --hex HEX          The capture as hexadecimal text. Whitespace, ':' and a
                       leading 0x are ignored. `--hex -` reads the hex text
                       from standard input.
    FILE               A binary capture file.
    -                  A binary capture from standard input.

OPTIONS:
    -d, --direction D  How to decode each message: `up` (device -> gateway),
                       `down` (gateway -> device) or `auto` (try both; the
                       default). The direction is not on the wire, and some
                       bodies are valid both ways with different meanings.
    --body             The input is one bare CBOR frame body (an envelope),
                       without the 4-byte length prefix.
    -p, --pretty       Print decoded messages over several lines.
    -h, --help         Print this help.

A capture is a stream of frames as sent over TLS: each a 4-byte big-endian
body length (1..=4096) followed by the body, one CBOR envelope. For each
frame the tool prints its offset and length, the body in CBOR diagnostic
notation, then the decoded message or the decode error. A frame header
announcing more than 4096 bytes, an empty frame or a truncated last frame
stops the run.

EXIT STATUS:
    0  every frame decoded
    1  a frame did not decode, or the stream is broken
    2  bad usage or unreadable input

EXAMPLES:
    decode --direction up --hex 0000001ca300010105028202a3001a0001e2400119a0000281a3000701030201
    decode --body --hex a300010105028202a3001a0001e2400119a0000281a3000701030201
    decode -d down capture.bin
    xxd -p capture.bin | decode --hex -
";

/// `println!`, except that a closed standard output (as when piped into
/// `head`) ends the program quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))
    };
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("decode: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
    Auto,
}

#[derive(Debug, PartialEq, Eq)]
enum Input {
    Hex(String),
    File(String),
    Stdin,
}

#[derive(Debug)]
struct Options {
    direction: Direction,
    body_only: bool,
    pretty: bool,
    input: Input,
}

/// What `main` does after parsing the arguments.
#[derive(Debug)]
enum Command {
    Help,
    Decode(Options),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(Command::Help) => {
            out!("{}", USAGE.trim_end());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Decode(options)) => options,
        Err(message) => {
            eprintln!("decode: {message}");
            eprintln!("Try `decode --help`.");
            return ExitCode::from(2);
        }
    };
    let data = match read_input(&options.input) {
        Ok(data) => data,
        Err(message) => {
            eprintln!("decode: {message}");
            return ExitCode::from(2);
        }
    };
    let ok = if options.body_only {
        print_body(&data, &options)
    } else {
        print_frames(&data, &options)
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut direction = Direction::Auto;
    let mut body_only = false;
    let mut pretty = false;
    let mut input = None;
    let mut set_input = |new: Input| {
        if input.is_some() {
            return Err("give only one input: --hex HEX, FILE or -".to_string());
        }
        input = Some(new);
        Ok(())
    };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        // `--option=value` is the same as `--option value`.
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| match inline_value.clone() {
            Some(value) => Ok(value),
            None => {
                i += 1;
                args.get(i - 1)
                    .cloned()
                    .ok_or_else(|| format!("{name} needs {what}"))
            }
        };
        match name {
            "-h" | "--help" => return Ok(Command::Help),
            "-d" | "--direction" => {
                direction = match value("a direction (up, down or auto)")?.as_str() {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    "auto" => Direction::Auto,
                    other => {
                        return Err(format!(
                            "unknown direction `{other}`: expected up, down or auto"
                        ));
                    }
                }
            }
            "--body" => body_only = true,
            "-p" | "--pretty" => pretty = true,
            "--hex" => set_input(Input::Hex(value("hexadecimal text or -")?))?,
            "-" => set_input(Input::Stdin)?,
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            file => set_input(Input::File(file.to_string()))?,
        }
    }
    Ok(Command::Decode(Options {
        direction,
        body_only,
        pretty,
        input: input.unwrap_or(Input::Stdin),
    }))
}

fn read_input(input: &Input) -> Result<Vec<u8>, String> {
    match input {
        Input::Hex(text) if text == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read hex from standard input: {e}"))?;
            parse_hex(&text)
        }
        Input::Hex(text) => parse_hex(text),
        Input::File(path) => std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}")),
        Input::Stdin => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(data)
        }
    }
}

/// Hex text to bytes, ignoring whitespace, `:` separators and a leading `0x`.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let trimmed = text.trim_start();
    let text = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let mut digits = Vec::with_capacity(text.len());
    for (at, c) in text.char_indices() {
        if c.is_whitespace() || c == ':' {
            continue;
        }
        let digit = c
            .to_digit(16)
            .ok_or_else(|| format!("bad hex: `{c}` at character {at} is not a hex digit"))?;
        // A hex digit is below 16.
        digits.push(u8::try_from(digit).unwrap_or(0));
    }
    if digits.len() % 2 != 0 {
        return Err(format!(
            "bad hex: {} digits is an odd number; every byte takes two",
            digits.len()
        ));
    }
    Ok(digits
        .chunks_exact(2)
        .map(|pair| (pair[0] << 4) | pair[1])
        .collect())
}

/// Prints every frame of `stream`; false if anything failed.
fn print_frames(stream: &[u8], options: &Options) -> bool {
    if stream.is_empty() {
        out!("(no frames: the input is empty)");
        return true;
    }
    let mut all_ok = true;
    let mut offset = 0;
    let mut number = 0;
    while offset < stream.len() {
        let rest = &stream[offset..];
        let body = match frame::find_frame(rest, MAX_FRAME_LEN) {
            Ok(Some(body)) => body,
            Ok(None) => {
                let declared = rest
                    .first_chunk::<HEADER_LEN>()
                    .map(|header| u32::from_be_bytes(*header));
                match declared {
                    Some(declared) => eprintln!(
                        "error: truncated frame at offset {offset}: the header announces \
                         {declared} bytes but only {} follow",
                        rest.len() - HEADER_LEN
                    ),
                    None => eprintln!(
                        "error: {} trailing byte(s) at offset {offset} are not a whole \
                         {HEADER_LEN}-byte frame header",
                        rest.len()
                    ),
                }
                return false;
            }
            Err(FrameError::TooLarge { declared, max }) => {
                eprintln!(
                    "error: frame header at offset {offset} announces {declared} bytes, more \
                     than the limit of {max}; a receiver answers Error{{FrameTooLarge}} and \
                     closes without reading the body"
                );
                if declared > 0x00ff_ffff {
                    eprintln!(
                        "       (is this a bare frame body? then pass --body; a body starts \
                         with 0xa3 or 0xa4)"
                    );
                }
                return false;
            }
            Err(FrameError::Empty) => {
                eprintln!(
                    "error: frame header at offset {offset} announces an empty frame, which \
                     carries no message"
                );
                return false;
            }
        };
        number += 1;
        out!("frame {number} at offset {offset}: {} bytes", body.len());
        all_ok &= print_message(&rest[body.clone()], options);
        offset += body.end;
        out!("");
    }
    all_ok
}

/// Prints one bare frame body; false if it failed to decode.
fn print_body(body: &[u8], options: &Options) -> bool {
    out!("body: {} bytes", body.len());
    if body.len() > MAX_FRAME_LEN {
        out!(
            "  note: longer than the frame limit of {MAX_FRAME_LEN} bytes; a peer would refuse it"
        );
    }
    print_message(body, options)
}

/// Prints a body's diagnostic notation and decoded message.
fn print_message(body: &[u8], options: &Options) -> bool {
    match to_value(body) {
        Ok((value, used)) => {
            out!("  cbor: {}", diagnostic(&value, 2, 8));
            if used < body.len() {
                out!(
                    "  note: {} byte(s) follow the first CBOR item, from offset {used}",
                    body.len() - used
                );
            }
        }
        Err(message) => out!("  cbor: not valid CBOR: {message}"),
    }
    let show = |m: &dyn std::fmt::Debug| {
        if options.pretty {
            format!("{m:#?}")
        } else {
            format!("{m:?}")
        }
    };
    let up = || codec::decode_uplink(body).map(|m| show(&m));
    let down = || codec::decode_downlink(body).map(|m| show(&m));
    match options.direction {
        Direction::Up => print_decoded("uplink", up()),
        Direction::Down => print_decoded("downlink", down()),
        Direction::Auto => {
            let (up, down) = (up(), down());
            match (up.is_ok(), down.is_ok()) {
                (true, true) => {
                    out!("  (valid in both directions; pass --direction to choose)");
                    print_decoded("uplink", up) & print_decoded("downlink", down)
                }
                (true, false) => print_decoded("uplink", up),
                (false, true) => print_decoded("downlink", down),
                (false, false) => {
                    print_decoded("uplink", up);
                    print_decoded("downlink", down);
                    false
                }
            }
        }
    }
}

fn print_decoded(label: &str, decoded: Result<String, codec::DecodeError>) -> bool {
    match decoded {
        Ok(message) => {
            out!("  {label}: {}", indent(&message, "  "));
            true
        }
        Err(error) => {
            out!("  {label}: decode error: {error} ({error:?})");
            false
        }
    }
}

fn indent(text: &str, by: &str) -> String {
    text.replace('\n', &format!("\n{by}"))
}

/// Reads the first CBOR item of `bytes`; returns it and its length.
fn to_value(bytes: &[u8]) -> Result<(ciborium::Value, usize), String> {
    let mut cursor = Cursor::new(bytes);
    let value: ciborium::Value = ciborium::from_reader(&mut cursor).map_err(|e| match e {
        ciborium::de::Error::Io(_) => "the bytes end in the middle of an item".to_string(),
        ciborium::de::Error::Syntax(at) => format!("syntax error at byte {at}"),
        ciborium::de::Error::Semantic(at, what) => match at {
            Some(at) => format!("{what} at byte {at}"),
            None => what,
        },
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_string(),
    })?;
    let used = usize::try_from(cursor.position()).unwrap_or(bytes.len());
    Ok((value, used))
}

/// Longest line a value is printed on before its items go on their own lines.
const LINE_WIDTH: usize = 96;

/// `value` in CBOR diagnostic notation (RFC 8949 §8). It starts at
/// `column` of a line indented by `indent` spaces; an array or map that does
/// not fit in [`LINE_WIDTH`] columns gets one item per line.
fn diagnostic(value: &ciborium::Value, indent: usize, column: usize) -> String {
    let mut out = String::new();
    write_diagnostic(&mut out, value, indent, column);
    out
}

fn write_diagnostic(out: &mut String, value: &ciborium::Value, indent: usize, column: usize) {
    use ciborium::Value;
    let flat = flat_diagnostic(value);
    if column + flat.len() <= LINE_WIDTH {
        out.push_str(&flat);
        return;
    }
    let inner = indent + 2;
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                let _ = write!(out, "\n{:inner$}", "");
                write_diagnostic(out, item, inner, inner);
                if i + 1 < items.len() {
                    out.push(',');
                }
            }
            let _ = write!(out, "\n{:indent$}]", "");
        }
        Value::Map(entries) if !entries.is_empty() => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                let key = flat_diagnostic(key);
                let _ = write!(out, "\n{:inner$}{key}: ", "");
                write_diagnostic(out, item, inner, inner + key.len() + 2);
                if i + 1 < entries.len() {
                    out.push(',');
                }
            }
            let _ = write!(out, "\n{:indent$}}}", "");
        }
        Value::Tag(tag, tagged) => {
            let _ = write!(out, "{tag}(");
            write_diagnostic(out, tagged, indent, column + tag.to_string().len() + 1);
            out.push(')');
        }
        _ => out.push_str(&flat),
    }
}

/// `value` in diagnostic notation on one line.
fn flat_diagnostic(value: &ciborium::Value) -> String {
    use ciborium::Value;
    match value {
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Bytes(bytes) => {
            let mut out = String::with_capacity(3 + 2 * bytes.len());
            out.push_str("h'");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
            out.push('\'');
            out
        }
        Value::Float(f) => float_diagnostic(*f),
        Value::Text(text) => text_diagnostic(text),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Tag(tag, inner) => format!("{tag}({})", flat_diagnostic(inner)),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(flat_diagnostic).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", flat_diagnostic(k), flat_diagnostic(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        // `ciborium::Value` is non-exhaustive; no other variant exists today.
        other => format!("<{other:?}>"),
    }
}

fn float_diagnostic(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        // Debug always shows a fraction or an exponent (`1.0`, `1e300`), as
        // diagnostic notation requires to tell a float from an integer.
        format!("{f:?}")
    }
}

/// A text string in diagnostic notation: JSON string syntax.
fn text_diagnostic(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
