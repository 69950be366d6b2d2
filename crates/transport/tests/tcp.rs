//! Loopback tests of the TCP transport. Waits on channels are bounded by timeouts that only
//! guard against hangs; no test sleeps to synchronise.

use bytes::{Bytes, BytesMut};
use raft::{
    ConfState, Entry, EntryKind, LogIndex, Message, MessageBody, NodeId, Snapshot,
    SnapshotMetadata, Term,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;
use transport::codec::HANDSHAKE_ACCEPT;
use transport::{Encoder, Handshake, SendError, Transport, TransportConfig};

const CLUSTER: u64 = 42;
const GUARD: Duration = Duration::from_secs(20);

fn config(id: u64, peers: &[(u64, SocketAddr)]) -> TransportConfig {
    let mut c = TransportConfig::new(CLUSTER, NodeId(id), "127.0.0.1:0".parse().unwrap());
    c.peers = peers.iter().map(|&(id, a)| (NodeId(id), a)).collect();
    c.reconnect_backoff_min = Duration::from_millis(5);
    c.reconnect_backoff_max = Duration::from_millis(50);
    c
}

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn heartbeat(from: u64, to: u64, round: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(round),
            round,
        },
    }
}

async fn recv(rx: &mut Receiver<Message>) -> Message {
    timeout(GUARD, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

/// Waits until the transport has reported `peer` unreachable.
async fn wait_unreachable(t: &Transport, peer: u64) {
    timeout(GUARD, async {
        loop {
            if t.take_reports().unreachable.contains(&NodeId(peer)) {
                return;
            }
            t.reports_changed().await;
        }
    })
    .await
    .expect("timed out waiting for an unreachable report");
}

async fn pair(
    tweak: impl Fn(&mut TransportConfig),
) -> (
    (Transport, Receiver<Message>),
    (Transport, Receiver<Message>),
) {
    let (la, aa) = bind().await;
    let (lb, ab) = bind().await;
    let mut ca = config(1, &[(2, ab)]);
    let mut cb = config(2, &[(1, aa)]);
    tweak(&mut ca);
    tweak(&mut cb);
    (
        Transport::start_with_listener(ca, la).unwrap(),
        Transport::start_with_listener(cb, lb).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transports_exchange_many_messages_in_order() {
    const N: u64 = 20_000;
    let ((a, mut rx_a), (b, mut rx_b)) = pair(|c| c.outbound_queue_len = N as usize).await;
    for round in 0..N {
        a.send(heartbeat(1, 2, round)).unwrap();
        if round % 10 == 0 {
            b.send(Message {
                body: MessageBody::AppendEntries {
                    prev_log_index: LogIndex(round),
                    prev_log_term: Term(1),
                    entries: vec![Entry {
                        term: Term(1),
                        index: LogIndex(round + 1),
                        kind: EntryKind::Normal,
                        data: Bytes::from(round.to_le_bytes().to_vec()),
                    }],
                    leader_commit: LogIndex(round),
                },
                ..heartbeat(2, 1, 0)
            })
            .unwrap();
        }
    }
    for round in 0..N {
        assert_eq!(recv(&mut rx_b).await, heartbeat(1, 2, round));
    }
    for i in 0..N / 10 {
        let m = recv(&mut rx_a).await;
        let MessageBody::AppendEntries { entries, .. } = m.body else {
            panic!("unexpected {m:?}")
        };
        assert_eq!(entries[0].index, LogIndex(i * 10 + 1));
        assert_eq!(&entries[0].data[..], &(i * 10).to_le_bytes());
    }
    let stats = a.stats();
    assert_eq!(stats.messages_sent, N);
    assert_eq!(stats.dropped_queue_full + stats.dropped_unreachable, 0);
    assert_eq!(b.stats().messages_received, N);
    assert!(a.take_reports().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_snapshot_is_chunked_and_arrives_intact() {
    let ((a, _rx_a), (b, mut rx_b)) = pair(|c| {
        c.max_frame_bytes = 1 << 20;
        c.snapshot_chunk_bytes = 256 << 10;
    })
    .await;
    let data: Bytes = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect::<Vec<u8>>()
        .into();
    let snapshot = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(7),
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot {
                metadata: SnapshotMetadata {
                    index: LogIndex(1000),
                    term: Term(6),
                    conf_state: ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
                },
                data,
            },
        },
    };
    a.send(heartbeat(1, 2, 1)).unwrap();
    a.send(snapshot.clone()).unwrap();
    a.send(heartbeat(1, 2, 2)).unwrap();
    assert_eq!(recv(&mut rx_b).await, heartbeat(1, 2, 1));
    assert_eq!(recv(&mut rx_b).await, snapshot);
    assert_eq!(recv(&mut rx_b).await, heartbeat(1, 2, 2));
    let reports = timeout(GUARD, async {
        loop {
            let r = a.take_reports();
            if !r.snapshots.is_empty() {
                return r;
            }
            a.reports_changed().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(reports.snapshots, BTreeMap::from([(NodeId(2), true)]));
    assert!(reports.unreachable.is_empty());
    assert!(b.stats().bytes_sent == 0 && a.stats().bytes_sent > 6 * 1024 * 1024);
}

/// Dials `addr` with a handshake and reports whether the listener accepted it.
async fn handshake_accepted(addr: SocketAddr, h: Handshake) -> bool {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&h.to_bytes()).await.unwrap();
    let mut answer = [0u8; 1];
    match timeout(GUARD, s.read(&mut answer)).await.unwrap() {
        Ok(1) => answer[0] == HANDSHAKE_ACCEPT,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_unknown_member_or_wrong_target_is_refused() {
    let (l, addr) = bind().await;
    let (a_listener, a_addr) = bind().await;
    let (b, _rx) = Transport::start_with_listener(config(2, &[(1, a_addr)]), l).unwrap();
    let good = Handshake {
        cluster_id: CLUSTER,
        from: NodeId(1),
        to: NodeId(2),
    };
    let wrong_cluster = Handshake {
        cluster_id: CLUSTER + 1,
        ..good
    };
    let unknown = Handshake {
        from: NodeId(99),
        ..good
    };
    let wrong_target = Handshake {
        to: NodeId(3),
        ..good
    };
    assert!(!handshake_accepted(addr, wrong_cluster).await);
    assert!(!handshake_accepted(addr, unknown).await);
    assert!(!handshake_accepted(addr, wrong_target).await);
    assert_eq!(b.stats().connections_refused, 3);
    assert!(handshake_accepted(addr, good).await);

    // A whole transport configured with the wrong cluster id gets refused and reports it.
    let mut wrong = config(1, &[(2, addr)]);
    wrong.cluster_id = CLUSTER + 1;
    let (c, _rx_c) = Transport::start_with_listener(wrong, a_listener).unwrap();
    let _ = c.send(heartbeat(1, 2, 1));
    wait_unreachable(&c, 2).await;
    assert!(c.stats().dial_failures >= 1);
    assert_eq!(c.stats().connections_established, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_peer_is_reported_then_reconnected() {
    // Reserve a port for B, then free it so that dials to it are refused.
    let (l, b_addr) = bind().await;
    drop(l);
    let (la, a_addr) = bind().await;
    let (a, _rx_a) = Transport::start_with_listener(config(1, &[(2, b_addr)]), la).unwrap();
    let _ = a.send(heartbeat(1, 2, 0));
    wait_unreachable(&a, 2).await;
    // While B is down, sends fail fast (or are dropped when the next dial fails).
    let mut refused = 0;
    for round in 1..=20 {
        if let Err(e) = a.send(heartbeat(1, 2, round)) {
            assert_eq!(e, SendError::Unreachable(NodeId(2)));
            refused += 1;
        }
    }
    assert!(refused > 0 || a.stats().dropped_unreachable > 0);
    assert_eq!(a.stats().messages_sent, 0);

    let lb = TcpListener::bind(b_addr).await.unwrap();
    let (_b, mut rx_b) = Transport::start_with_listener(config(2, &[(1, a_addr)]), lb).unwrap();
    // Keep offering messages until one gets through the re-established connection.
    timeout(GUARD, async {
        let mut round = 100;
        loop {
            let _ = a.send(heartbeat(1, 2, round));
            round += 1;
            if let Ok(Some(_)) = timeout(Duration::from_millis(20), rx_b.recv()).await {
                return;
            }
        }
    })
    .await
    .expect("connection never re-established");
    for round in 1_000_000..1_000_100 {
        a.send(heartbeat(1, 2, round)).unwrap();
    }
    let mut expected = 1_000_000;
    while expected < 1_000_100 {
        let m = recv(&mut rx_b).await;
        let MessageBody::Heartbeat { round, .. } = m.body else {
            panic!()
        };
        if round >= 1_000_000 {
            assert_eq!(round, expected, "per-peer FIFO");
            expected += 1;
        }
    }
    assert!(a.stats().connections_established >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_and_counts_instead_of_blocking() {
    // A listener that never answers the handshake: the writer is stuck dialing, the queue fills.
    let (_silent, silent_addr) = bind().await;
    let (la, _) = bind().await;
    let mut c = config(1, &[(2, silent_addr)]);
    c.outbound_queue_len = 4;
    c.connect_timeout = Duration::from_secs(60);
    let (a, _rx) = Transport::start_with_listener(c, la).unwrap();
    for round in 0..4 {
        a.send(heartbeat(1, 2, round)).unwrap();
    }
    assert_eq!(
        a.send(heartbeat(1, 2, 4)),
        Err(SendError::QueueFull(NodeId(2)))
    );
    let snapshot = Message {
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot::default(),
        },
        ..heartbeat(1, 2, 0)
    };
    assert_eq!(a.send(snapshot), Err(SendError::QueueFull(NodeId(2))));
    assert_eq!(
        a.send(heartbeat(1, 9, 0)),
        Err(SendError::UnknownPeer(NodeId(9)))
    );
    let stats = a.stats();
    assert_eq!(stats.dropped_queue_full, 2);
    assert_eq!(stats.dropped_unknown_peer, 1);
    let reports = a.take_reports();
    assert!(reports.unreachable.contains(&NodeId(2)));
    assert_eq!(reports.snapshots.get(&NodeId(2)), Some(&false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_speaking_clients_are_disconnected() {
    let ((a, _rx_a), (b, mut rx_b)) = pair(|_| {}).await;
    let addr = b.local_addr();
    let hello = Handshake {
        cluster_id: CLUSTER,
        from: NodeId(1),
        to: NodeId(2),
    };

    // Garbage instead of a handshake.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0xFF; 64]).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(
        timeout(GUARD, s.read(&mut byte)).await.unwrap(),
        Ok(0) | Err(_)
    ));

    // A valid handshake, then a message from someone else, a good one, then garbage frames.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello.to_bytes()).await.unwrap();
    s.read_exact(&mut byte).await.unwrap();
    assert_eq!(byte[0], HANDSHAKE_ACCEPT);
    let mut frames = BytesMut::new();
    let mut encoder = Encoder::new(CLUSTER, 1 << 20, 1024);
    encoder.encode(&heartbeat(3, 2, 1), &mut frames).unwrap();
    encoder.encode(&heartbeat(1, 2, 2), &mut frames).unwrap();
    s.write_all(&frames).await.unwrap();
    assert_eq!(recv(&mut rx_b).await, heartbeat(1, 2, 2));
    assert_eq!(b.stats().dropped_wrong_sender, 1);
    let mut corrupt = BytesMut::new();
    encoder.encode(&heartbeat(1, 2, 3), &mut corrupt).unwrap();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    s.write_all(&corrupt).await.unwrap();
    assert!(matches!(
        timeout(GUARD, s.read(&mut byte)).await.unwrap(),
        Ok(0) | Err(_)
    ));
    assert_eq!(b.stats().decode_errors, 1);

    // A huge announced frame is refused without reading (or allocating) it.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello.to_bytes()).await.unwrap();
    s.read_exact(&mut byte).await.unwrap();
    s.write_all(&[0xFF; 20]).await.unwrap();
    assert!(matches!(
        timeout(GUARD, s.read(&mut byte)).await.unwrap(),
        Ok(0) | Err(_)
    ));
    assert_eq!(b.stats().decode_errors, 2);

    // The transport still works.
    a.send(heartbeat(1, 2, 9)).unwrap();
    assert_eq!(recv(&mut rx_b).await, heartbeat(1, 2, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_peers_adds_and_removes_members() {
    let (la, a_addr) = bind().await;
    let (lb, b_addr) = bind().await;
    let (a, _rx_a) = Transport::start_with_listener(config(1, &[]), la).unwrap();
    let (b, mut rx_b) = Transport::start_with_listener(config(2, &[]), lb).unwrap();
    assert_eq!(
        a.send(heartbeat(1, 2, 0)),
        Err(SendError::UnknownPeer(NodeId(2)))
    );
    b.set_peers(BTreeMap::from([(NodeId(1), a_addr)]));
    a.set_peers(BTreeMap::from([(NodeId(1), a_addr), (NodeId(2), b_addr)]));
    a.send(heartbeat(1, 2, 1)).unwrap();
    assert_eq!(recv(&mut rx_b).await, heartbeat(1, 2, 1));
    a.set_peers(BTreeMap::new());
    assert_eq!(
        a.send(heartbeat(1, 2, 2)),
        Err(SendError::UnknownPeer(NodeId(2)))
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let base = config(1, &[]);
    assert!(base.validate().is_ok());
    let mut c = base.clone();
    c.snapshot_chunk_bytes = c.max_frame_bytes;
    assert!(c.validate().is_err());
    let mut c = base.clone();
    c.outbound_queue_len = 0;
    assert!(c.validate().is_err());
    let mut c = base.clone();
    c.local_id = NodeId(0);
    assert!(c.validate().is_err());
    let mut c = base;
    c.reconnect_backoff_max = Duration::ZERO;
    assert!(c.validate().is_err());
}
