//! `rediss://`: TLS to a real `redis-server` (its `--tls-port`) with a
//! throwaway CA made by the `openssl` CLI; two nodes share a topic over it.
//! Needs the `tls` feature: `cargo test -p blaze-redis --features tls --test rediss_tls`.
#![cfg(feature = "tls")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blaze_redis::RedisBackplane;
use common::*;

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl").args(args).current_dir(dir).stderr(Stdio::null()).status().expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_rediss() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=blaze test CA"],
        ]
        .concat(),
    );
    openssl(
        d,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
        ]
        .iter()
        .chain(&["-days", "1", "-extfile", "san.ext"])
        .copied()
        .collect::<Vec<_>>(),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _redis = Killed(
        Command::new("/usr/bin/redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt"])
            .args(["--tls-auth-clients", "no", "--dir", "."])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server (TLS) did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("rediss://127.0.0.1:{port}");
    // Not trusted by the system roots: refused.
    assert!(RedisBackplane::connect(&url).await.is_err(), "a certificate from an unknown CA is refused");

    let ca = std::fs::read(d.join("ca.crt")).unwrap();
    let client = || {
        let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) };
        redis::Client::build_with_tls(url.as_str(), certs).unwrap()
    };
    let mut apps = Vec::new();
    let mut backplanes = Vec::new();
    for _ in 0..2 {
        let backplane = RedisBackplane::connect_client(client(), quick_config()).await.expect("TLS connect");
        let app = test_app();
        app.cluster(backplane.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = app.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        apps.push((app, addr));
        backplanes.push(backplane);
    }
    let on_a = blaze_tokio::connect(&format!("ws://{}/room/t", apps[0].1)).await.unwrap();
    let mut on_b = blaze_tokio::connect(&format!("ws://{}/room/t", apps[1].1)).await.unwrap();
    for backplane in &backplanes {
        assert!(eventually(Duration::from_secs(10), || backplane.subscriptions() == 2).await);
    }
    on_a.send("over TLS").unwrap();
    assert_eq!(next_text(&mut on_b, Duration::from_secs(10)).await, "over TLS");
    // Presence is written asynchronously (within a round trip or two).
    let app = apps[1].0.clone();
    assert!(
        eventually_async(Duration::from_secs(10), || {
            let app = app.clone();
            async move { app.cluster_topic_count("t").await == Ok(2) }
        })
        .await
    );
}
