//! The `oneword` command: see `oneword --help`.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use oneword_cli::{run, Cli, Output, Style};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let mut io = Output {
        out_style: Style {
            color: cli.color.enabled(stdout.is_terminal()),
        },
        err_style: Style {
            color: cli.color.enabled(stderr.is_terminal()),
        },
        out: &mut stdout,
        err: &mut stderr,
    };
    match run(cli, &mut io).await {
        Ok(()) => ExitCode::SUCCESS,
        // `oneword generate … | head`: the reader has what it wanted.
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(err.exit_code())
        }
    }
}
