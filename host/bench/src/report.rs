//! Medians, progress lines and the final table.

use std::time::Instant;

use crate::GatewayArgs;
use crate::sut::Env;

/// One line of the final table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) value: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
    /// `None`: no target, for information.
    pub(crate) pass: Option<bool>,
}

impl Row {
    pub(crate) fn new(figure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            value: value.into(),
            baseline: "-".to_owned(),
            ratio: "-".to_owned(),
            target: "-".to_owned(),
            pass: None,
        }
    }

    pub(crate) fn baseline(mut self, baseline: impl Into<String>, ratio: f64) -> Row {
        self.baseline = baseline.into();
        self.ratio = format!("{ratio:.2}");
        self
    }

    pub(crate) fn target(mut self, target: impl Into<String>, pass: bool) -> Row {
        self.target = target.into();
        self.pass = Some(pass);
        self
    }
}

/// The median (the mean of the middle two for an even count); NaN when
/// empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `12,345` for people.
pub(crate) fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return format!("{value}");
    }
    let rounded = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in rounded.chars().enumerate() {
        if i > 0 && (rounded.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && rounded != "0" {
        out.insert(0, '-');
    }
    out
}

/// The values of a series, for the detail lines.
pub(crate) fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| thousands(*v))
        .collect::<Vec<_>>()
        .join(" ")
}

fn start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// A progress line, with the seconds since the run started.
pub(crate) fn progress(text: &str) {
    println!("[{:>6.1}s] {text}", start().elapsed().as_secs_f64());
}

pub(crate) fn header(env: &Env, args: &GatewayArgs) {
    start();
    let argv: Vec<String> = std::env::args().collect();
    println!("wasmbed gateway benchmark");
    println!("  command:  {}", xtask_command(&argv));
    println!("  runs:     {}", argv.join(" "));
    println!("  gateway:  {} (child process)", env.wasmbed.display());
    println!(
        "  machine:  {} cores, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::proc::load_average()
    );
    println!(
        "  phases:   {:?}; handshakes {} rounds x {} s x 2 sides, {} clients; {} idle sessions; \
         heartbeats {} rounds x {} s; deploy {} bytes to {} devices",
        args.phases,
        args.handshake_rounds,
        args.handshake_secs,
        args.concurrency,
        args.idle_devices,
        args.heartbeat_rounds,
        args.heartbeat_secs,
        args.module_size,
        args.deploy_devices
    );
}

/// The `cargo xtask` line that runs the benchmark as `argv` does.
fn xtask_command(argv: &[String]) -> String {
    let mut user = Vec::new();
    let mut args = argv.iter().skip(2);
    while let Some(arg) = args.next() {
        if arg == "--wasmbed" {
            args.next();
        } else if !arg.starts_with("--wasmbed=") {
            user.push(arg.as_str());
        }
    }
    let mut command = "cargo xtask bench gateway".to_owned();
    if !user.is_empty() {
        command.push_str(" -- ");
        command.push_str(&user.join(" "));
    }
    command
}

pub(crate) fn table(rows: &[Row]) {
    let headers = ["figure", "value", "baseline", "ratio", "target", "result"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                row.figure.clone(),
                row.value.clone(),
                row.baseline.clone(),
                row.ratio.clone(),
                row.target.clone(),
                match row.pass {
                    Some(true) => "PASS".to_owned(),
                    Some(false) => "MISS".to_owned(),
                    None => "info".to_owned(),
                },
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            // Text left, numbers right.
            if i == 0 || i == 4 || i == 5 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned()
    };
    println!();
    println!("{}", line(&headers.map(str::to_owned)));
    println!(
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    );
    for row in &cells {
        println!("{}", line(row));
    }
}

pub(crate) fn footer(_env: &Env) {
    println!();
    println!(
        "load average {} at the end; total {:.0} s",
        crate::proc::load_average(),
        start().elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_xtask_command_leaves_out_the_binary() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            xtask_command(&argv(&["b", "gateway", "--wasmbed", "/x/wasmbed"])),
            "cargo xtask bench gateway"
        );
        assert_eq!(
            xtask_command(&argv(&[
                "b",
                "gateway",
                "--wasmbed=/x",
                "--idle-devices",
                "10"
            ])),
            "cargo xtask bench gateway -- --idle-devices 10"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(-1500.0), "-1,500");
    }
}
