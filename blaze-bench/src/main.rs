//! blaze-bench: a WebSocket load tool for any server.
//!
//! ```text
//! blaze-bench echo         --url ws://HOST:PORT/path --conns N --size BYTES --window W --secs D [--pid PID]
//! blaze-bench fanout       --url ws://HOST:PORT/broadcast --subs N --msgs M --size BYTES [--timeout S] [--pid PID] [--also-url URL] [--rate R] [--broker-pid PID]
//! blaze-bench idle         --url ws://HOST:PORT/path --conns N --hold SECS --pid PID [--messages K --size BYTES]
//! blaze-bench chat         --url ws://HOST:PORT/room --clients N --rooms R --size BYTES (--rounds K | --rate M --secs D) [--pid PID]
//! blaze-bench connect-rate --url ws://HOST:PORT/path --concurrency C --secs D [--pid PID]
//!
//! Every URL may be `wss://` (`--ca FILE` trusts a private CA).
//! ```
//!
//! `echo`, `fanout` and `idle` take `--deflate off|shared|dedicated` (offer
//! permessage-deflate; fail if the server declines) and `--payload
//! fill|json|random` (default `fill`, or `json` with `--deflate`).
//!
//! Every run prints a human summary and one JSON line; with `--pid` it
//! reports the server's CPU per operation from /proc (`--pid A,B`: the sum
//! over several processes, e.g. two cluster nodes). It measures its own
//! CPU and says when it saturates (then throughput is a lower bound).

mod args;
mod chat;
mod conn;
mod connect_rate;
mod echo;
mod fanout;
mod idle;
mod payload;
mod proc;
mod report;
mod tls;

use args::Args;
use conn::Target;

const USAGE: &str = "usage: blaze-bench <echo|fanout|chat|idle|connect-rate> --url ws://HOST:PORT/PATH [options]
  echo         --conns N (100) --size BYTES (32) --window W (16) --secs D (10) [--pid PID]
               [--rate R: R msgs/s on each connection instead of a window; rtt p50/p99 at that load]
  fanout       --subs N (1000) --msgs M (1000) --size BYTES (32) --timeout S (120) [--pid PID]
               [--also-url ws://HOST2:PORT/broadcast: every other subscriber there, e.g. a second cluster node]
               [--rate R: the publisher sends R msgs/s (default: as fast as it can); latency p50/p99 is reported either way]
               [--broker-pid PID: report that process's (Redis's) CPU per broadcast]
  idle         --conns N (10000) --hold SECS (5) --pid PID [--messages K (0) --size BYTES (256)]
  chat         --clients N (32) --rooms R (1) --size BYTES (32) [--pid PID]
               --rounds K (100): each round every client sends one message and waits for its whole room's
                 [--timeout S (30): a round with no progress for S seconds fails the run]
               or --rate M --secs D: every client sends M msgs/s for D s; latency p50/p99 reported
               rooms > 1: client i joins PATH/{i % R} (the contract's /room/NAME)
  connect-rate --concurrency C (32) --secs D (5) [--pid PID]
  all: --url wss://... [--ca FILE]: over TLS, trusting the PEM roots in FILE (Mozilla's without it)
  echo, fanout, idle: --deflate off|shared|dedicated (off): offer permessage-deflate (RFC 7692), fail if declined
                      --payload fill|json|random (fill; json with --deflate): message contents";

fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let fd_limit = conn::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(proc::cpus())
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(args, fd_limit));
    if let Err(e) = result {
        eprintln!("blaze-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args, fd_limit: u64) -> Result<(), String> {
    let ca: Option<String> = args.optional("ca")?;
    let target = Target::parse(&args.required("url")?, ca.as_deref())?;
    let pid: Option<String> = args.optional("pid")?;
    let needed = |conns: usize| {
        if conns as u64 + 64 > fd_limit {
            eprintln!("warning: {conns} connections need more than the open-file limit of {fd_limit}");
        }
    };
    let deflate_flag: String = args.get("deflate", "off".to_owned())?;
    let deflate = conn::deflate_config(&deflate_flag)?;
    let payload: payload::Payload =
        args.get("payload", if deflate.is_some() { payload::Payload::Json } else { payload::Payload::Fill })?;
    if deflate.is_some() && payload == payload::Payload::Fill {
        eprintln!("warning: --payload fill is one byte repeated: it compresses to almost nothing; use json");
    }
    match args.command.as_str() {
        "echo" => {
            let conns = args.get("conns", 100)?;
            needed(conns);
            echo::run(echo::EchoParams {
                target,
                conns,
                size: args.get("size", 32)?,
                window: args.get("window", 16)?,
                secs: args.get("secs", 10.0)?,
                server_pid: pid,
                deflate,
                deflate_flag,
                payload,
                rate: args.optional("rate")?,
            })
            .await
        }
        "fanout" => {
            let subs = args.get("subs", 1000)?;
            needed(subs);
            let also = args.optional::<String>("also-url")?.map(|u| Target::parse(&u, ca.as_deref())).transpose()?;
            fanout::run(fanout::FanoutParams {
                target,
                also,
                subs,
                msgs: args.get("msgs", 1000)?,
                size: args.get("size", 32)?,
                timeout_secs: args.get("timeout", 120.0)?,
                server_pid: pid,
                deflate,
                deflate_flag,
                payload,
                rate: args.optional("rate")?,
                broker_pid: args.optional("broker-pid")?,
            })
            .await
        }
        "idle" => {
            let conns = args.get("conns", 10_000)?;
            needed(conns);
            let pid = pid.ok_or("idle needs --pid of the server")?;
            idle::run(idle::IdleParams {
                target,
                conns,
                hold: args.get("hold", 5.0)?,
                pid,
                messages: args.get("messages", 0)?,
                size: args.get("size", 256)?,
                payload,
                deflate,
                deflate_flag,
            })
            .await
        }
        "chat" => {
            let clients = args.get("clients", 32)?;
            needed(clients);
            let drive = match args.optional::<f64>("rate")? {
                Some(per_client) => chat::Drive::Rate { per_client, secs: args.get("secs", 10.0)? },
                None => chat::Drive::Rounds {
                    rounds: args.get("rounds", 100)?,
                    stall: std::time::Duration::from_secs_f64(args.get("timeout", 30.0)?),
                },
            };
            chat::run(chat::ChatParams {
                target,
                clients,
                rooms: args.get("rooms", 1)?,
                size: args.get("size", 32)?,
                drive,
                server_pid: pid,
            })
            .await
        }
        "connect-rate" => connect_rate::run(target, args.get("concurrency", 32)?, args.get("secs", 5.0)?, pid).await,
        other => Err(format!("unknown subcommand {other:?}\n{USAGE}")),
    }
}
