//! The load tool against a real server over loopback: each scenario runs
//! end to end against the benchmark contract (the echo example's routes,
//! built here with Blaze), and a server that breaks the contract is caught.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blaze_tokio::{App, Callbacks};

/// The contract: echo on any path; `/broadcast` and `/room/NAME` send
/// every message to every client on the same path, the sender included.
/// With `drop_every` set, the broadcast routes skip every n-th message
/// (a broken server).
fn contract(drop_every: Option<u64>) -> App {
    let app = App::new();
    let seen = Arc::new(AtomicU64::new(0));
    let broadcast = move || {
        let seen = seen.clone();
        Callbacks::new().on_binary(move |ws, data| {
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            if drop_every.is_some_and(|every| n.is_multiple_of(every)) {
                let _ = ws.broadcast_others(data);
            } else {
                let _ = ws.broadcast(data);
            }
        })
    };
    app.ws("/broadcast", broadcast());
    app.ws("/room/:name", broadcast());
    app.ws("/*path", Callbacks::new().on_binary(|ws, data| {
        let _ = ws.send_binary(data);
    }));
    app
}

/// Serves `app` on a free loopback port in a runtime of its own thread.
fn serve(app: App) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = app.serve(listener).await;
        });
    });
    rx.recv().unwrap()
}

/// Runs blaze-bench; returns (exit success, its JSON line).
fn bench(args: &[&str]) -> (bool, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_blaze-bench")).args(args).output().expect("blaze-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
        panic!("no JSON line; stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), serde_json::from_str(json).expect("JSON"))
}

#[test]
fn every_scenario_runs_clean_against_a_correct_server() {
    let addr = serve(contract(None));
    let url = |path: &str| format!("ws://{addr}{path}");

    let (ok, r) = bench(&["echo", "--url", &url("/echo"), "--conns", "4", "--window", "4", "--secs", "0.5"]);
    assert!(ok && r["messages"].as_u64() > Some(0) && r["mismatched"] == 0, "{r}");
    let (ok, r) = bench(&["echo", "--url", &url("/echo"), "--conns", "4", "--rate", "200", "--secs", "0.5"]);
    assert!(ok && r["messages"].as_u64() > Some(300), "paced echo: {r}");
    assert!(r["rtt"]["p99_us"].as_u64() > Some(0), "{r}");

    let (ok, r) = bench(&["fanout", "--url", &url("/broadcast"), "--subs", "20", "--msgs", "50", "--rate", "500"]);
    assert!(ok && r["deliveries"] == 20 * 50 && r["missing"] == 0, "{r}");
    assert!(r["latency"]["p50_us"].as_u64() > Some(0), "{r}");

    let (ok, r) = bench(&["chat", "--url", &url("/broadcast"), "--clients", "8", "--rounds", "20"]);
    assert!(ok && r["deliveries"] == 8 * 8 * 20 && r["missing"] == 0 && r["reordered"] == 0, "{r}");
    let (ok, r) = bench(&["chat", "--url", &url("/room"), "--clients", "12", "--rooms", "3", "--rate", "20", "--secs", "0.5"]);
    // 3 rooms of 4: each message reaches its room's 4 clients, and no other.
    assert!(ok && r["deliveries"].as_u64() == r["sent"].as_u64().map(|s| s * 4), "{r}");
    assert!(r["foreign"] == 0 && r["missing"] == 0, "{r}");

    let (ok, r) = bench(&["connect-rate", "--url", &url("/echo"), "--concurrency", "4", "--secs", "0.5"]);
    assert!(ok && r["handshakes"].as_u64() > Some(0) && r["failed"] == 0, "{r}");
}

#[test]
fn a_server_that_drops_broadcasts_fails_the_run() {
    // Every 7th broadcast skips its sender: the sender misses its own copy.
    let addr = serve(contract(Some(7)));
    let (ok, r) = bench(&["chat", "--url", &format!("ws://{addr}/broadcast"), "--clients", "4", "--rounds", "10", "--timeout", "1"]);
    assert!(!ok, "a lost delivery must fail the run: {r}");
    assert!(r["missing"].as_u64() > Some(0), "{r}");
}
