//! The `frontdoor` command: `run`, `check`, `schedule`, `status`, `deploy`, `pause`, `resume`,
//! `maintenance`, `simulate`, `dev-cert`, `demo`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use frontdoor::config::{file::ConfigFile, Config};

/// mimalloc instead of glibc's malloc: the proxy path allocates small, short-lived buffers
/// per request, and glibc's allocator was ~11% of frontdoor's CPU under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use frontdoor::simulator::{self, SimulatorOptions};

#[derive(Parser)]
#[command(
    name = "frontdoor",
    version,
    about = "The front door of a Rails/Passenger app: TLS, HTTP/2, queue-time headers, routing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file (SIGHUP or a file change reloads it; SIGTERM drains).
    Run {
        /// The TOML config.
        config: PathBuf,
    },
    /// Print each admission pool's capacity view (from a running frontdoor's admin listener).
    Status {
        /// The admin listener's address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
    /// Deploy: health-check the new target(s), move POOL's traffic to them, drain the old
    /// backends until their requests finish. Remembered across restarts.
    Deploy {
        /// The pool.
        pool: String,
        /// The new app server, host:port (repeat for several).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// How long the targets get to pass their health checks (then nothing changes).
        #[arg(long, default_value = "30s")]
        timeout: String,
        /// How long the old backends get to finish their requests.
        #[arg(long, default_value = "30s")]
        drain_timeout: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Hold POOL's new requests in its admission queue (each up to `queue-timeout`) while the
    /// app restarts.
    Pause {
        /// The pool.
        pool: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Let POOL's held requests through.
    Resume {
        /// The pool.
        pool: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Answer POOL's requests (every pool's without one) with the maintenance page, or stop.
    Maintenance {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// The pool; every pool when left out.
        pool: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Validate a config like `nginx -t`: print the route table, or every error as file:line:col.
    Check {
        /// The TOML config.
        config: PathBuf,
    },
    /// Print a schedule's plan: each key's offset into the interval and next fire (key,
    /// seconds, RFC 3339), in fire order, then the fires per part of the interval (`slots`
    /// parts). Keys from `keys-url` are fetched, as the scheduler does.
    Schedule {
        /// The TOML config.
        config: PathBuf,
        /// The schedule's name.
        name: String,
    },
    /// Run the Dashboard simulator alone.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Worker slots (Passenger pool size).
        #[arg(long, default_value_t = NonZeroUsize::MIN.saturating_add(3))]
        workers: NonZeroUsize,
        /// Service time of a page, JSON or asset request, in milliseconds.
        #[arg(long, default_value_t = 20)]
        service_ms: u64,
        /// Duration of a manual update, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        manual_update_ms: u64,
    },
    /// Write a self-signed certificate for localhost/127.0.0.1/::1 (what `demo` does on first use).
    DevCert {
        /// PEM certificate to write.
        cert: PathBuf,
        /// PEM private key to write.
        key: PathBuf,
    },
    /// The simulator behind frontdoor with the bundled demo config; makes a dev certificate.
    Demo {
        /// The demo config.
        #[arg(long, default_value = "config/demo.toml")]
        config: PathBuf,
        /// Where the simulator listens (the demo config's pool points here).
        #[arg(long, default_value = "127.0.0.1:3000")]
        simulator: SocketAddr,
    },
}

/// Where the actions go.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener's address.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// The `[admin] token`, needed unless the admin listener is reached over loopback
    /// (default: the FRONTDOOR_ADMIN_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
}

fn main() -> ExitCode {
    // Transparent huge pages under mimalloc's arenas held resident memory at ~1.7× the bytes
    // the asset cache holds; without them ~1.2× (BENCHMARKS.md, assets_memory.sh). The flag
    // is inherited by every thread created after this line.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("frontdoor: could not opt out of transparent huge pages: {e}");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => return check(&config),
        Command::Schedule { config, name } => schedule(&config, &name),
        Command::Status { admin } => status(admin),
        Command::Deploy {
            pool,
            targets,
            timeout,
            drain_timeout,
            admin,
        } => deploy(&pool, &targets, &timeout, &drain_timeout, &admin),
        Command::Pause { pool, admin } => act(&admin, &format!("/pools/{}/pause", encode(&pool))),
        Command::Resume { pool, admin } => act(&admin, &format!("/pools/{}/resume", encode(&pool))),
        Command::Maintenance { state, pool, admin } => match pool {
            Some(pool) => act(
                &admin,
                &format!("/pools/{}/maintenance/{state}", encode(&pool)),
            ),
            None => act(&admin, &format!("/maintenance/{state}")),
        },
        Command::Simulate {
            listen,
            workers,
            service_ms,
            manual_update_ms,
        } => simulator::run_blocking(
            listen,
            SimulatorOptions {
                workers,
                service_time: Duration::from_millis(service_ms),
                manual_update_time: Duration::from_millis(manual_update_ms),
            },
        ),
        Command::DevCert { cert, key } => frontdoor::tls::ensure_dev_certificate(&cert, &key)
            .map(|made| {
                let verb = if made { "wrote" } else { "kept the existing" };
                println!("{verb} {} and {}", cert.display(), key.display());
            })
            .map_err(Into::into),
        Command::Demo { config, simulator } => demo(&config, simulator),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("frontdoor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// GET /status.json from the admin listener (plain HTTP/1.0, loopback) and print the table.
fn status(admin: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /status.json HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("a malformed answer from the admin listener")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    let rows: Vec<frontdoor::admission::status::PoolStatus> =
        serde_json::from_str(body).context("status.json")?;
    print!("{}", frontdoor::admission::status::table(&rows));
    Ok(())
}

use frontdoor::operate::client::{self, encode};

/// Sends an action to the admin listener and prints its outcome.
fn act(admin: &AdminArgs, path_and_query: &str) -> anyhow::Result<()> {
    post(admin, path_and_query, Duration::from_secs(10)).map(|body| println!("{body}"))
}

/// POSTs an action; the answer's JSON on success, its error otherwise.
fn post(admin: &AdminArgs, path_and_query: &str, wait: Duration) -> anyhow::Result<String> {
    let token = admin
        .token
        .clone()
        .or_else(|| std::env::var("FRONTDOOR_ADMIN_TOKEN").ok());
    let answer = client::post(admin.admin, path_and_query, token.as_deref(), wait)?;
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    if (200..300).contains(&answer.status) {
        Ok(answer.body.trim().to_string())
    } else {
        let message = body["error"].as_str().unwrap_or(answer.body.trim());
        anyhow::bail!("{message} ({})", answer.status)
    }
}

/// `frontdoor deploy`: waits for the whole deploy (checks, switch, drain).
fn deploy(
    pool: &str,
    targets: &[String],
    timeout: &str,
    drain_timeout: &str,
    admin: &AdminArgs,
) -> anyhow::Result<()> {
    let parse = |name: &str, text: &str| {
        frontdoor::config::units::parse_duration(text).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
    };
    let (timeout, drain_timeout) = (
        parse("timeout", timeout)?,
        parse("drain-timeout", drain_timeout)?,
    );
    let mut query = format!(
        "timeout-ms={}&drain-timeout-ms={}",
        timeout.as_millis(),
        drain_timeout.as_millis()
    );
    for target in targets {
        query.push_str(&format!("&target={}", encode(target)));
    }
    let wait = timeout + drain_timeout + Duration::from_secs(10);
    let body = post(
        admin,
        &format!("/pools/{}/deploy?{query}", encode(pool)),
        wait,
    )?;
    let report: serde_json::Value = serde_json::from_str(&body)?;
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    println!(
        "pool {pool}: {} serve(s) (was {}), in {} ms",
        list(&report["targets"]),
        list(&report["previous"]),
        report["took_ms"]
    );
    if report["drained"] == false {
        println!(
            "  {} request(s) were still on the old backends after {drain_timeout:?}: they finish on their own",
            report["left_in_flight"]
        );
    }
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|errors| anyhow::anyhow!("invalid config:\n{errors}"))
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", config.route_table());
            println!(
                "{}: ok ({} routes, {} pools, {} certificates)",
                path.display(),
                config.routes.len(),
                config.pools.len(),
                config.certificates.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

/// Prints the plan of the schedule `name` of the config at `path`, as of now.
fn schedule(path: &Path, name: &str) -> anyhow::Result<()> {
    use frontdoor::jobs::schedule::Plan;
    let config = load(path)?;
    let schedules = &config.jobs.schedules;
    let Some(schedule) = schedules.iter().find(|s| s.name == name) else {
        let names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "{}: no schedule named `{name}` (schedules: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let connector = pingora::connectors::http::Connector::new(None);
    let keys = runtime
        .block_on(schedule.fetch_keys(&connector))
        .map_err(|e| anyhow::anyhow!("schedule `{name}`: {e}"))?;
    let plan = Plan::new(schedule, keys.iter().map(String::as_str));
    let now = frontdoor::jobs::store::now_ms();
    print!("{}", plan.report(now, schedule.slots));
    Ok(())
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let log =
        frontdoor::accesslog::init(&config.server.access_log, config.server.access_log_format)
            .context("cannot open the access log")?;
    let built = frontdoor::server::build(config, path)?;
    frontdoor::shutdown::exit_when_idle(&built.server, built.shared.clone(), log);
    built.server.run_forever()
}

/// Makes a dev certificate for each certificate the demo config names that does not exist.
fn ensure_demo_certificates(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for certificate in &file.tls.certificates {
        let (cert, key) = (
            base.join(certificate.cert.get_ref()),
            base.join(certificate.key.get_ref()),
        );
        if frontdoor::tls::ensure_dev_certificate(&cert, &key)? {
            println!(
                "generated a self-signed dev certificate: {}",
                cert.display()
            );
        }
    }
    Ok(())
}

fn demo(path: &Path, simulator_addr: SocketAddr) -> anyhow::Result<()> {
    ensure_demo_certificates(path)?;
    let config = load(path)?;
    let listen = config.listen.clone();
    std::thread::spawn(move || {
        if let Err(e) = simulator::run_blocking(simulator_addr, SimulatorOptions::default()) {
            eprintln!("frontdoor demo: simulator stopped: {e:#}");
            std::process::exit(1);
        }
    });
    println!("frontdoor demo");
    println!(
        "  https://{}/  (h2 + http/1.1; self-signed certificate)",
        listen.https
    );
    if let Some(http) = listen.http {
        println!("  http://{http}/  (redirects to https)");
    }
    println!(
        "  http://{}/metrics  (admin: /healthz /readyz /metrics)",
        listen.admin
    );
    println!("  http://{simulator_addr}/  (the Dashboard simulator, direct)");
    println!(
        "  deploy: frontdoor simulate --listen 127.0.0.1:3001 & frontdoor deploy dashboard --target 127.0.0.1:3001"
    );
    println!(
        "  try: curl -k https://{}/echo -H 'X-Request-Start: t=1' -H 'X-Forwarded-For: 6.6.6.6'",
        listen.https
    );
    run(path)
}
