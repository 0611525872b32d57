//! The `oneword` command run through its library as `main` runs it, capturing what it writes.

use clap::Parser;
use oneword_cli::{run, Cli, Error, Output, Style};
use serde_json::Value;

/// What one `oneword` run wrote, and how it ended.
pub struct Run {
    pub out: String,
    pub err: String,
    pub result: Result<(), Error>,
}

impl Run {
    /// stdout and stderr of a run that must have succeeded.
    pub fn ok(self) -> (String, String) {
        if let Err(err) = self.result {
            panic!("oneword failed: {err}\nstderr: {}", self.err);
        }
        (self.out, self.err)
    }

    /// The error of a run that must have failed, after checking it wrote nothing to stdout.
    pub fn failed(self) -> Error {
        assert_eq!(self.out, "", "a failed command prints no answer");
        self.result.expect_err("the command should fail")
    }

    /// Each stdout line of a `--json` run, parsed.
    pub fn json_lines(self) -> Vec<Value> {
        let (out, _) = self.ok();
        out.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

/// Runs `oneword --gateway GATEWAY ARGS…` without colour, capturing its output.
pub async fn oneword(gateway: &str, args: &[&str]) -> Run {
    let argv = [&["oneword", "--gateway", gateway], args].concat();
    let cli = Cli::try_parse_from(argv).expect("the arguments parse");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Output {
        out: &mut out,
        err: &mut err,
        out_style: Style::default(),
        err_style: Style::default(),
    };
    let result = run(cli, &mut io).await;
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8 output");
    Run {
        out: text(out),
        err: text(err),
        result,
    }
}
