//! Shared bits of the peer servers: the `--addr` flag and the runtime.
//!
//! Every peer follows Blaze's echo benchmark contract
//! (`examples/src/bin/echo.rs`): `--addr HOST:PORT`; on any path, echo every
//! message with its opcode; on `/broadcast`, send every message to every
//! client connected on `/broadcast`, the sender included. Each runs a tokio
//! current-thread runtime: one thread, like Blaze's one worker, and the
//! benchmark pins the process to one core.

/// The value of `--addr`, or 127.0.0.1:9001.
pub fn addr() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "127.0.0.1:9001".into())
}

/// Runs `fut` on a single-threaded tokio runtime.
pub fn run<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// Is this request path the broadcast endpoint? (The query string is ignored.)
pub fn is_broadcast(path: &str) -> bool {
    path.split('?').next() == Some("/broadcast")
}
