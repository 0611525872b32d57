//! `make chaos` and `make soak`: the services as real processes on 127.0.0.1, driven with seeded
//! generation streams while processes are killed, frozen and restarted, clients cancel and flood,
//! and attackers speak broken HTTP/2 — then checked for what a client and an operator would see.
//!
//! Every scenario gives rows: a goal and what was measured. Correctness rows (identical text,
//! zero errors, nothing left behind, every refusal saying when to retry) fail the run; timing
//! rows are reported, met or not, since this machine is shared and noisy.

#![forbid(unsafe_code)]

mod attack;
mod auth;
mod drive;
mod faults;
mod fleet;
mod pressure;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::json;

/// Runs chaos scenarios against the services started as processes.
#[derive(Parser)]
struct Args {
    /// Directory holding the service binaries (`oneword-decoder`, …).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The checkpoint the services load; written with `oneword-model random` when missing.
    #[arg(long, default_value = "models/demo")]
    model: PathBuf,
    /// Where `chaos.json` and `report.md` go.
    #[arg(long, default_value = "bench/results/chaos")]
    out: PathBuf,
    /// Where each service process writes its log.
    #[arg(long, default_value = "target/chaos/logs")]
    logs: PathBuf,
    /// `short` for CI (seconds per scenario), `full` for the figures of the issue.
    #[arg(long, value_enum, default_value_t = Size::Full)]
    size: Size,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,stop,rolling,storm,overload,worst,attacks"
    )]
    scenarios: Vec<Scenario>,
    /// Minutes of the soak (`soak` scenario).
    #[arg(long, default_value_t = 30.0)]
    soak_minutes: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Size {
    Short,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Kill,
    Stop,
    Rolling,
    Age,
    Storm,
    Overload,
    Worst,
    Attacks,
    Auth,
    Soak,
}

/// The sizes of every scenario.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Concurrent seeded streams of the kill and stop scenarios.
    pub streams: usize,
    pub tokens: u32,
    /// How long a frozen decoder stays frozen.
    pub freeze: Duration,
    /// How long restarts roll.
    pub rolling: Duration,
    /// How long connections are recycled every second.
    pub age: Duration,
    /// Cancellations, expired deadlines and client resets, each.
    pub storm_each: usize,
    pub overload: Duration,
    /// Concurrent worst-case requests.
    pub worst: usize,
    /// Rapid-reset streams per port, CONTINUATION frames per port, slow connections.
    pub resets: u64,
    pub continuation_frames: u64,
    pub slow_connections: usize,
    /// Ports the protocol attacks hit: the gateway's two, or every service's too.
    pub attack_internal_ports: bool,
    pub soak: Duration,
}

impl Scale {
    fn of(size: Size, soak_minutes: f64) -> Scale {
        let soak = Duration::from_secs_f64(soak_minutes * 60.0);
        match size {
            Size::Full => Scale {
                streams: 32,
                tokens: 128,
                freeze: Duration::from_secs(60),
                rolling: Duration::from_secs(300),
                age: Duration::from_secs(120),
                storm_each: 1000,
                overload: Duration::from_secs(60),
                worst: 128,
                resets: 100_000,
                continuation_frames: 10_000,
                slow_connections: 1000,
                attack_internal_ports: true,
                soak,
            },
            Size::Short => Scale {
                streams: 16,
                tokens: 48,
                freeze: Duration::from_secs(6),
                rolling: Duration::ZERO,
                age: Duration::from_secs(10),
                storm_each: 100,
                overload: Duration::from_secs(8),
                worst: 16,
                resets: 20_000,
                continuation_frames: 10_000,
                slow_connections: 100,
                attack_internal_ports: false,
                soak,
            },
        }
    }
}

/// Whether a row's goal was met, and whether a miss fails the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A correctness check: a miss fails the run.
    Pass,
    Fail,
    /// A timing goal: reported, met or not.
    Met,
    Missed,
}

impl Verdict {
    pub fn check(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    pub fn timing(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Met => "met",
            Verdict::Missed => "missed",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: &'static str,
    pub goal: String,
    pub measured: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(
        scenario: &'static str,
        goal: impl Into<String>,
        measured: impl Into<String>,
        verdict: Verdict,
    ) -> Row {
        let row = Row {
            scenario,
            goal: goal.into(),
            measured: measured.into(),
            verdict,
        };
        eprintln!(
            "  [{}] {}: {} — {}",
            row.verdict.word(),
            row.scenario,
            row.goal,
            row.measured
        );
        row
    }
}

impl Row {
    /// A timing row: `p99` (ms) against `baseline` (ms, described by `against`), met when within
    /// `bound` times it.
    pub fn p99_ratio(
        scenario: &'static str,
        goal: impl Into<String>,
        p99: f64,
        baseline: f64,
        against: &str,
        bound: f64,
    ) -> Row {
        Row::new(
            scenario,
            goal,
            format!(
                "{p99:.1} ms vs {baseline:.1} ms {against} ({:.2}×)",
                p99 / baseline.max(1e-9)
            ),
            Verdict::timing(p99 <= bound * baseline),
        )
    }
}

/// A small deterministic generator (SplitMix64) for kill points, delays and lengths.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (near enough for bounds far below 2^64).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    std::fs::create_dir_all(&args.logs)?;
    let repo = std::env::current_dir()?;
    fleet::ensure_model(
        &args.bin_dir,
        &args.model,
        &repo.join("tests/fixtures/gpt2-tokenizer"),
    )?;
    let setup = fleet::Setup {
        bin_dir: args.bin_dir.clone(),
        model: args.model.clone(),
        logs: args.logs.clone(),
    };
    let scale = Scale::of(args.size, args.soak_minutes);
    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        eprintln!("chaos: {scenario:?}");
        let result = match scenario {
            Scenario::Kill => faults::kill(&setup, &scale).await,
            Scenario::Stop => faults::freeze(&setup, &scale).await,
            Scenario::Rolling => faults::rolling(&setup, &scale).await,
            Scenario::Age => faults::connection_age(&setup, &scale).await,
            Scenario::Storm => faults::storm(&setup, &scale).await,
            Scenario::Overload => pressure::overload(&setup, &scale).await,
            Scenario::Worst => pressure::worst(&setup, &scale).await,
            Scenario::Attacks => pressure::attacks(&setup, &scale).await,
            Scenario::Auth => auth::matrix(&setup, &scale).await,
            Scenario::Soak => pressure::soak(&setup, &scale).await,
        };
        match result {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => rows.push(Row::new(
                "harness",
                format!("{scenario:?} runs to its end"),
                format!("{e:#}"),
                Verdict::Fail,
            )),
        }
    }
    write_report(&args, &rows)?;
    let failed: Vec<&Row> = rows.iter().filter(|r| r.verdict == Verdict::Fail).collect();
    if !failed.is_empty() {
        // Said last and without a backtrace, so that a log's tail names what failed.
        eprintln!("chaos: {} check(s) failed:", failed.len());
        for r in failed {
            eprintln!("  [FAIL] {}: {} — {}", r.scenario, r.goal, r.measured);
        }
        std::process::exit(1);
    }
    Ok(())
}

fn write_report(args: &Args, rows: &[Row]) -> anyhow::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|i| {
            let line = i.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_default();
    let json = json!({
        "size": format!("{:?}", args.size),
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "rows": rows.iter().map(|r| json!({
            "scenario": r.scenario, "goal": r.goal, "measured": r.measured, "verdict": r.verdict.word(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        args.out.join("chaos.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    let mut md = format!(
        "# Chaos run ({:?})\n\nCPU: {cpu}, {} cores. Correctness rows (pass/FAIL) fail the run; timing rows are reported (met/missed).\n\n| scenario | goal | measured | verdict |\n|---|---|---|---|\n",
        args.size, json["cores"]
    );
    for r in rows {
        md += &format!(
            "| {} | {} | {} | {} |\n",
            r.scenario,
            r.goal,
            r.measured.replace('|', "/"),
            r.verdict.word()
        );
    }
    std::fs::write(args.out.join("report.md"), md)?;
    eprintln!("chaos: report in {}", args.out.join("report.md").display());
    Ok(())
}
