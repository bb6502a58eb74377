//! `App::listen` on async-std shuts down gracefully on Ctrl-C (SIGINT), as
//! on tokio (issue 16): clients get 1001, background tasks are stopped,
//! `listen` returns. Its own test binary: it signals its own process.
#![cfg(unix)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blaze_async_std::{App, Callbacks};

#[async_std::test]
async fn ctrl_c_shuts_a_listening_app_down_gracefully() {
    // A free port: bind, read it, release it for listen.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = App::new();
    app.ws("/chat", Callbacks::new());
    let task_dropped = Arc::new(AtomicBool::new(false));
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Flag(task_dropped.clone());
    app.spawn(async move {
        let _flag = flag;
        std::future::pending::<()>().await;
    });
    let server = {
        let app = app.clone();
        async_std::task::spawn(async move { app.listen(addr).await })
    };
    let url = format!("ws://{addr}/chat");
    let mut client = loop {
        match blaze_async_std::connect(&url).await {
            Ok(client) => break client,
            Err(_) => async_std::task::sleep(Duration::from_millis(20)).await,
        }
    };
    let status = std::process::Command::new("kill").arg("-INT").arg(std::process::id().to_string()).status().unwrap();
    assert!(status.success());
    let end = async_std::future::timeout(Duration::from_secs(10), client.recv()).await.expect("closed on Ctrl-C");
    assert_eq!(end, None);
    assert_eq!(client.close_status().map(|(code, _)| code), Some(1001));
    async_std::future::timeout(Duration::from_secs(10), server).await.expect("listen returns").unwrap();
    assert!(task_dropped.load(Ordering::SeqCst), "background task stopped");
}
