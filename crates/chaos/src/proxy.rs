//! A fault-injecting TCP proxy for one directed link between two members.
//!
//! Member A reaches member B only through the proxy `P_AB` (A is started with
//! `--peer-dial-overrides B=<P_AB's address>`), and raftkv's peer connections are one-way (the
//! dialer writes frames, the listener only answers the handshake byte), so `P_AB` carries exactly
//! the A → B half of their traffic. Setting a [`LinkMode`] on it therefore cuts, slows or loses
//! A → B without touching B → A, which is what asymmetric partitions need, and without root or
//! firewall rules.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What a proxy does to the traffic of its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward everything as fast as possible.
    Pass,
    /// A partition: close every open connection and refuse new ones (accept, then close at once),
    /// so the dialer sees its connections fail, like a route that went away.
    Drop,
    /// Forward everything, but hold each chunk for this long first (in order), like a slow or
    /// congested network.
    Delay(Duration),
    /// One-way loss: accept connections and keep them open, but silently discard every byte the
    /// dialer sends, so the sender believes its messages leave while none arrive. A connection
    /// that lost bytes is closed when the mode changes again, so that when the link heals the
    /// receiver never sees a stream with a hole in it (TCP never delivers that either); the dialer
    /// simply reconnects.
    Blackhole,
}

/// A running proxy; dropping it stops the listener and closes all its connections.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<LinkMode>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on an ephemeral loopback port that forwards to `target`, in
    /// [`LinkMode::Pass`].
    pub async fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Proxy::from_listener(listener, target))
    }

    /// Starts a proxy on an already bound listener.
    pub fn from_listener(listener: TcpListener, target: SocketAddr) -> Proxy {
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let (mode, mode_rx) = watch::channel(LinkMode::Pass);
        let task = tokio::spawn(accept_loop(listener, target, mode_rx));
        Proxy {
            addr,
            target,
            mode,
            task,
        }
    }

    /// Where the dialer should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Changes what happens to the link's traffic, for open connections too.
    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if *mode.borrow() == LinkMode::Drop {
                    drop(inbound);
                    continue;
                }
                connections.spawn(relay(inbound, target, mode.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Carries one connection until either side closes or the link is cut.
async fn relay(inbound: TcpStream, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    let outbound =
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            _ => return,
        };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Either direction ending ends both: dropping the halves closes the two sockets.
    tokio::select! {
        _ = pump(in_read, out_write, mode.clone(), true) => {}
        _ = pump(out_read, in_write, mode, false) => {}
    }
}

/// Resolves once the link is cut, so a blocked write can be abandoned.
async fn until_dropped(mode: &mut watch::Receiver<LinkMode>) {
    loop {
        if *mode.borrow_and_update() == LinkMode::Drop {
            return;
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
}

/// Copies one direction; `forward` is the dialer → listener direction, the only one that
/// one-way loss affects.
async fn pump(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
    forward: bool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut lost_bytes = false;
    loop {
        let current = *mode.borrow_and_update();
        if current == LinkMode::Drop || (lost_bytes && current != LinkMode::Blackhole) {
            return;
        }
        let read = tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            read = reader.read(&mut buffer) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = *mode.borrow();
        match now {
            LinkMode::Drop => return,
            LinkMode::Blackhole if forward => {
                lost_bytes = true;
                continue;
            }
            LinkMode::Delay(delay) => tokio::time::sleep(delay).await,
            LinkMode::Pass | LinkMode::Blackhole => {}
        }
        let mut watcher = mode.clone();
        tokio::select! {
            written = writer.write_all(&buffer[..n]) => {
                if written.is_err() {
                    return;
                }
            }
            _ = until_dropped(&mut watcher) => return,
        }
    }
}
