//! `mom exporter replay`: serves a trace as a Prometheus gauge on `/metrics`, time-compressed,
//! so that a real Prometheus can scrape a known demand curve (end-to-end scaling tests, demos).
//!
//! Input: a trace file (NAB `timestamp,value` CSV or the Azure LLM CSV, see
//! `forecast::trace`). Output: `GET /metrics` in the Prometheus text format with the value of the
//! trace point the replay is at: point `⌊elapsed / step⌋`, where `step` is `--step-seconds`, or
//! the trace's own spacing divided by `--speed`. After the last point the last value stays (or
//! the replay starts over with `--loop`). With `--wait-for-start` the first value is served until
//! `GET /start` (or `POST /start`) starts the clock; later calls change nothing.
//! A small blocking HTTP/1.1 server on std: one request per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replay a trace as a gauge on /metrics.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Trace file (NAB `timestamp,value` CSV or the Azure LLM inference CSV).
    #[arg(long)]
    trace: PathBuf,
    /// Listen address; port 0 picks a free one (printed on stdout as `LISTEN=`).
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Wall-clock seconds per trace point (overrides --speed).
    #[arg(long)]
    step_seconds: Option<f64>,
    /// Trace seconds per wall-clock second (time compression).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Name of the gauge.
    #[arg(long, default_value = "mom_replay_demand")]
    metric: String,
    /// Bin width in seconds for the Azure request log.
    #[arg(long, default_value_t = 60.0)]
    azure_bin_seconds: f64,
    /// Start over after the last point instead of holding it.
    #[arg(long = "loop")]
    looped: bool,
    /// Serve the first point until GET/POST /start.
    #[arg(long)]
    wait_for_start: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Replay(args) => replay(args),
    }
}

/// Where the replay is, computed from the elapsed wall-clock time (CLI code: the clock is fine).
struct Replay {
    values: Vec<f64>,
    step: f64,
    looped: bool,
    started: Option<Instant>,
}

impl Replay {
    fn position(&self) -> usize {
        let Some(t0) = self.started else { return 0 };
        let k = (t0.elapsed().as_secs_f64() / self.step).floor() as usize;
        if self.looped {
            k % self.values.len()
        } else {
            k.min(self.values.len() - 1)
        }
    }
}

fn metric_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let trace = mom::forecast::trace::load_trace(&args.trace, args.azure_bin_seconds)
        .with_context(|| format!("loading --trace {}", args.trace.display()))?;
    if trace.values.is_empty() {
        anyhow::bail!("--trace {} has no points", args.trace.display());
    }
    if !metric_name_ok(&args.metric) {
        anyhow::bail!("--metric {:?} is not a valid Prometheus metric name", args.metric);
    }
    let step = match args.step_seconds {
        Some(s) => s,
        None => trace.step_seconds / args.speed,
    };
    if !(step.is_finite() && step > 0.0) {
        anyhow::bail!(
            "the wall-clock step must be finite and > 0, got {step} (--step-seconds, or the trace step {} / --speed {})",
            trace.step_seconds,
            args.speed
        );
    }
    let listener = TcpListener::bind(args.listen).with_context(|| format!("binding --listen {}", args.listen))?;
    let bound = listener.local_addr()?;
    println!("LISTEN={bound}");
    std::io::stdout().flush()?;
    eprintln!(
        "replaying {} ({} points, {step} s each) as {} on http://{bound}/metrics",
        trace.name,
        trace.values.len(),
        args.metric
    );
    let state = Arc::new(Mutex::new(Replay {
        values: trace.values,
        step,
        looped: args.looped,
        started: (!args.wait_for_start).then(Instant::now),
    }));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let state = state.clone();
        let metric = args.metric.clone();
        let name = trace.name.clone();
        std::thread::spawn(move || {
            if let Err(err) = serve(stream, &state, &metric, &name) {
                eprintln!("request failed: {err}");
            }
        });
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(stream: TcpStream, state: &Mutex<Replay>, metric: &str, trace: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers (no request here has a body we need).
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, body) = match path {
        "/metrics" => {
            let (value, position, total) = {
                let s = state.lock().unwrap_or_else(|p| p.into_inner());
                let k = s.position();
                (s.values[k], k, s.values.len())
            };
            let label = trace.replace('\\', "\\\\").replace('"', "\\\"");
            (
                "200 OK",
                format!(
                    "# HELP {metric} Value of the replayed trace at the current position.\n\
                     # TYPE {metric} gauge\n\
                     {metric}{{trace=\"{label}\"}} {value}\n\
                     # HELP mom_replay_position Index of the trace point being served.\n\
                     # TYPE mom_replay_position gauge\n\
                     mom_replay_position{{trace=\"{label}\"}} {position}\n\
                     # HELP mom_replay_points Number of points in the trace.\n\
                     # TYPE mom_replay_points gauge\n\
                     mom_replay_points{{trace=\"{label}\"}} {total}\n"
                ),
            )
        }
        "/start" => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if s.started.is_none() {
                s.started = Some(Instant::now());
            }
            ("200 OK", "started\n".to_string())
        }
        "/healthz" => ("200 OK", "ok\n".to_string()),
        _ => ("404 Not Found", format!("no such path {path}; try /metrics\n")),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_prometheus_rules() {
        assert!(metric_name_ok("mom_replay_demand"));
        assert!(metric_name_ok("a:b_1"));
        assert!(!metric_name_ok("1abc"));
        assert!(!metric_name_ok("a-b"));
        assert!(!metric_name_ok(""));
    }

    fn args(trace: &str, metric: &str, step: Option<f64>) -> ReplayArgs {
        ReplayArgs {
            trace: PathBuf::from(trace),
            listen: "127.0.0.1:0".parse().unwrap(),
            step_seconds: step,
            speed: 1.0,
            metric: metric.into(),
            azure_bin_seconds: 60.0,
            looped: false,
            wait_for_start: false,
        }
    }

    #[test]
    fn bad_arguments_are_refused_naming_the_flag() {
        let e = replay(args("/nonexistent/trace.csv", "m", None)).unwrap_err();
        assert!(format!("{e:#}").contains("--trace /nonexistent/trace.csv"), "{e:#}");
        let dir = std::env::temp_dir().join(format!("mom-exporter-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trace = dir.join("t.csv");
        std::fs::write(
            &trace,
            "timestamp,value\n2026-01-01 00:00:00,1\n2026-01-01 00:01:00,2\n",
        )
        .unwrap();
        let e = replay(args(trace.to_str().unwrap(), "bad-name", None)).unwrap_err();
        assert!(e.to_string().contains("--metric"), "{e}");
        let e = replay(args(trace.to_str().unwrap(), "m", Some(0.0))).unwrap_err();
        assert!(e.to_string().contains("--step-seconds"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_replay_holds_the_first_point_until_started_and_the_last_point_after_the_end() {
        let mut r = Replay {
            values: vec![1.0, 2.0, 3.0],
            step: 0.001,
            looped: false,
            started: None,
        };
        assert_eq!(r.position(), 0);
        r.started = Some(Instant::now() - Duration::from_secs(1));
        assert_eq!(r.position(), 2);
        r.looped = true;
        assert!(r.position() < 3);
    }
}
