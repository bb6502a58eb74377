//! Out of file descriptors (issue 10): the accept loop backs off on
//! EMFILE and recovers, it never exits. A binary of its own: it lowers
//! this process's soft RLIMIT_NOFILE, which would starve other tests.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks};
use common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
fn set_soft_limit(soft: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    let old = limit.rlim_cur as u64;
    let lowered = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: limit.rlim_max };
    // SAFETY: `lowered` is a valid rlimit (lowering the soft limit is always allowed).
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0, "{}", std::io::Error::last_os_error());
    old
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_loop_survives_running_out_of_file_descriptors() {
    let log = Capture::default();
    let writer = log.clone();
    let _ = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).try_init();

    let app = App::new();
    app.ws(
        "/echo",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(text);
        }),
    );
    let (addr, _server) = serve(&app).await;
    // Warm up (the runtime's blocking pool, the client's code paths).
    blocking(move || {
        let mut c = connect(addr, "/echo");
        c.send(tungstenite::Message::text("warm")).unwrap();
        assert_eq!(next_text(&mut c), "warm");
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || app.total_connections() == 0).await);

    let headroom = 40;
    let old = set_soft_limit((open_fds() + headroom) as u64);
    // Open connections that start a request and go quiet, until this
    // process (clients and server together) has no descriptor left.
    let (held, error) = blocking(move || {
        let mut held = Vec::new();
        loop {
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    let _ = s.write_all(b"GET /echo HTTP/1.1\r\n");
                    held.push(s);
                }
                Err(err) => return (held, err),
                // (no other way out: connect fails once descriptors run out)
            }
            assert!(held.len() < 1000, "the descriptor limit did not bite");
        }
    })
    .await;
    assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
    // Let the server hit the limit on accept too (the kernel completed the
    // last handshakes; the server had nothing to accept them with).
    let failed_accepts = |log: &Capture| {
        String::from_utf8_lossy(&log.0.lock().unwrap()).matches("accept failed").count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while failed_accepts(&log) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed_accepts(&log) > 0, "the server never ran out of descriptors on accept ({} held)", held.len());
    let during = failed_accepts(&log);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Backing off, not spinning: a handful of warnings, not thousands.
    assert!(failed_accepts(&log) - during < 50, "{} accept failures in 300 ms", failed_accepts(&log) - during);

    // Free them: the server is back, under the same limit.
    drop(held);
    let served = blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut served = 0;
        while served < 5 {
            match tungstenite::connect(format!("ws://{addr}/echo")) {
                Ok((mut c, _)) => {
                    set_timeout(&c, Duration::from_secs(5));
                    c.send(tungstenite::Message::text("back")).unwrap();
                    assert_eq!(next_text(&mut c), "back");
                    served += 1;
                }
                Err(err) => {
                    assert!(Instant::now() < deadline, "not served again within 15 s: {err}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        served
    })
    .await;
    assert_eq!(served, 5);
    set_soft_limit(old);
}
