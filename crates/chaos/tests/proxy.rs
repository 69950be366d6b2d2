//! The fault proxy against plain TCP echo servers: pass forwards, drop cuts and refuses,
//! blackhole loses one direction without closing, and healing restores service.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaos::proxy::{LinkMode, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server: every byte received is sent back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Sends `message` and waits up to `wait` for the echo; `Ok(false)` if nothing came back in
/// time, `Err` if the connection failed or closed.
async fn round_trip(stream: &mut TcpStream, message: &[u8], wait: Duration) -> Result<bool, ()> {
    stream.write_all(message).await.map_err(|_| ())?;
    let mut received = vec![0u8; message.len()];
    match tokio::time::timeout(wait, stream.read_exact(&mut received)).await {
        Ok(Ok(_)) => {
            assert_eq!(received, message);
            Ok(true)
        }
        Ok(Err(_)) => Err(()),
        Err(_) => Ok(false),
    }
}

/// Polls `connect + round trip` until it works or the deadline passes.
async fn eventually_echoes(addr: SocketAddr, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(addr).await
            && round_trip(&mut stream, b"ping", Duration::from_millis(500)).await == Ok(true)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn pass_forwards_both_ways() {
    let proxy = Proxy::start(echo_server().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    for i in 0..10 {
        let message = format!("message {i}");
        assert_eq!(
            round_trip(&mut stream, message.as_bytes(), Duration::from_secs(5)).await,
            Ok(true)
        );
    }
}

#[tokio::test]
async fn drop_closes_open_connections_and_refuses_new_ones_until_healed() {
    let proxy = Proxy::start(echo_server().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut open, b"before", Duration::from_secs(5)).await,
        Ok(true)
    );

    proxy.set(LinkMode::Drop);
    // The open connection is closed by the proxy: reading reaches EOF (or an error).
    let mut buffer = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "open connection not closed: {read:?}"
    );
    // A new connection is accepted and closed at once, never echoing.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_ne!(
        round_trip(&mut fresh, b"during", Duration::from_secs(1)).await,
        Ok(true)
    );

    proxy.set(LinkMode::Pass);
    assert!(eventually_echoes(proxy.addr(), Instant::now() + Duration::from_secs(5)).await);
}

#[tokio::test]
async fn blackhole_loses_one_direction_without_closing() {
    let proxy = Proxy::start(echo_server().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut stream, b"before", Duration::from_secs(5)).await,
        Ok(true)
    );

    proxy.set(LinkMode::Blackhole);
    // Writes still succeed (the connection stays open) but nothing reaches the server, so no
    // echo comes back.
    for _ in 0..3 {
        assert_eq!(
            round_trip(&mut stream, b"lost", Duration::from_millis(300)).await,
            Ok(false)
        );
    }

    // Healing closes the connection that lost bytes (no holes in a TCP stream), and a new
    // connection works again.
    proxy.set(LinkMode::Pass);
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "lossy connection not closed: {read:?}"
    );
    assert!(eventually_echoes(proxy.addr(), Instant::now() + Duration::from_secs(5)).await);
}

#[tokio::test]
async fn delay_adds_latency_but_delivers_in_order() {
    let proxy = Proxy::start(echo_server().await).await.unwrap();
    proxy.set(LinkMode::Delay(Duration::from_millis(100)));
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        round_trip(&mut stream, b"slow", Duration::from_secs(5)).await,
        Ok(true)
    );
    // Both directions are delayed.
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(proxy.mode(), LinkMode::Delay(Duration::from_millis(100)));
}
