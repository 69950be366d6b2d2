use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

const CLUSTER: u64 = 0xC0FFEE;
const MAX_FRAME: usize = 1 << 20;

fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![
            Just(EntryKind::Normal),
            Just(EntryKind::Empty),
            Just(EntryKind::ConfChange)
        ],
        bytes_strategy(64),
    )
        .prop_map(|(term, index, kind, data)| Entry {
            term: Term(term),
            index: LogIndex(index),
            kind,
            data,
        })
}

fn ids() -> impl Strategy<Value = Vec<NodeId>> {
    vec(any::<u64>().prop_map(NodeId), 0..5)
}

fn metadata() -> impl Strategy<Value = SnapshotMetadata> {
    (
        any::<u64>(),
        any::<u64>(),
        ids(),
        ids(),
        ids(),
        ids(),
        any::<bool>(),
    )
        .prop_map(
            |(index, term, voters, learners, voters_outgoing, learners_next, auto_leave)| {
                SnapshotMetadata {
                    index: LogIndex(index),
                    term: Term(term),
                    conf_state: ConfState {
                        voters,
                        learners,
                        voters_outgoing,
                        learners_next,
                        auto_leave,
                    },
                }
            },
        )
}

fn body() -> impl Strategy<Value = MessageBody> {
    let u = any::<u64>;
    prop_oneof![
        (any::<bool>(), u(), u(), any::<bool>()).prop_map(|(pre_vote, i, t, transfer)| {
            MessageBody::RequestVote {
                pre_vote,
                last_log_index: LogIndex(i),
                last_log_term: Term(t),
                transfer,
            }
        }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre_vote, granted)| MessageBody::RequestVoteResponse { pre_vote, granted }),
        (u(), u(), vec(entry(), 0..8), u()).prop_map(|(i, t, entries, c)| {
            MessageBody::AppendEntries {
                prev_log_index: LogIndex(i),
                prev_log_term: Term(t),
                entries,
                leader_commit: LogIndex(c),
            }
        }),
        u().prop_map(
            |m| MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
                match_index: LogIndex(m)
            })
        ),
        (u(), u(), u()).prop_map(|(r, h, t)| MessageBody::AppendEntriesResponse(
            AppendResponse::Rejected {
                rejected_index: LogIndex(r),
                hint_index: LogIndex(h),
                hint_term: Term(t),
            }
        )),
        (u(), u()).prop_map(|(c, round)| MessageBody::Heartbeat {
            commit: LogIndex(c),
            round
        }),
        u().prop_map(|round| MessageBody::HeartbeatResponse { round }),
        u().prop_map(|context| MessageBody::ReadIndex { context }),
        (u(), proptest::option::of(u())).prop_map(|(context, index)| {
            MessageBody::ReadIndexResponse {
                context,
                index: index.map(LogIndex),
            }
        }),
        Just(MessageBody::TimeoutNow),
        vec(bytes_strategy(300), 0..5).prop_map(|entries| MessageBody::Propose { entries }),
        (metadata(), bytes_strategy(2000)).prop_map(|(metadata, data)| {
            MessageBody::InstallSnapshot {
                snapshot: Snapshot { metadata, data },
            }
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(from, to, term, body)| Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    })
}

fn encoder(chunk: usize) -> Encoder {
    Encoder::new(CLUSTER, MAX_FRAME, chunk)
}

fn decoder() -> Decoder {
    Decoder::new(CLUSTER, MAX_FRAME, 1 << 24)
}

/// Feeds `bytes` to a fresh decoder `step` bytes at a time, collecting messages until an error.
fn decode_all(bytes: &[u8], step: usize) -> (Vec<Message>, Option<CodecError>, usize) {
    let mut d = decoder();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e), buf.len()),
            }
        }
    }
    (out, None, buf.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_any_messages(messages in vec(message(), 0..6), chunk in 1usize..700, step in 1usize..300) {
        let mut e = encoder(chunk);
        let mut wire = BytesMut::new();
        for m in &messages {
            e.encode(m, &mut wire).unwrap();
        }
        let (decoded, error, left) = decode_all(&wire, step);
        prop_assert_eq!(error, None);
        prop_assert_eq!(left, 0);
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..2048), step in 1usize..512) {
        let _ = decode_all(&bytes, step);
    }

    #[test]
    fn garbage_after_valid_header_never_panics(len in 0u32..4096, kind in 0u8..4, payload in vec(any::<u8>(), 0..4096)) {
        // Random payloads with a *valid* header and checksum exercise the payload parser itself.
        let mut wire = BytesMut::new();
        let len = (len as usize).min(payload.len());
        put_header_placeholder(&mut wire, len, kind, CLUSTER);
        wire.extend_from_slice(&payload[..len]);
        finish_frame(&mut wire, 0);
        let _ = decode_all(&wire, 4096);
    }

    #[test]
    fn corruption_is_detected_or_harmless(m in message(), flip in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        encoder(512).encode(&m, &mut wire).unwrap();
        // A single bit flip anywhere: never a panic, and never a different message accepted.
        let mut flipped = wire.to_vec();
        let at = flip.index(flipped.len());
        flipped[at] ^= 1 << bit;
        let (decoded, _, _) = decode_all(&flipped, 97);
        prop_assert!(decoded.is_empty(), "bit flip at {} accepted: {:?}", at, decoded);
        // Truncation: need-more, never a message or a panic.
        let cut_at = cut.index(wire.len());
        let (decoded, error, _) = decode_all(&wire[..cut_at], 64);
        prop_assert!(decoded.is_empty());
        prop_assert_eq!(error, None);
    }

    #[test]
    fn chunked_snapshot_round_trip(len in 0usize..20_000, chunk in 1usize..5000, meta in metadata()) {
        let data: Bytes = (0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>().into();
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::InstallSnapshot { snapshot: Snapshot { metadata: meta, data } },
        };
        let mut e = encoder(chunk);
        let chunks: Vec<SnapshotChunk> = e.snapshot_chunks(&m).collect();
        prop_assert_eq!(chunks.len(), len.div_ceil(chunk).max(1));
        let mut a = SnapshotAssembler::new(len as u64);
        let mut out = None;
        for (i, c) in chunks.into_iter().enumerate() {
            prop_assert!(out.is_none());
            out = a.push(c).unwrap();
            prop_assert_eq!(a.in_progress(), out.is_none(), "after chunk {}", i);
        }
        prop_assert_eq!(out, Some(m));
    }

    #[test]
    fn missing_or_reordered_chunk_is_refused(len in 3usize..5000, skip in any::<prop::sample::Index>(), swap in any::<bool>()) {
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::InstallSnapshot {
                snapshot: Snapshot { metadata: SnapshotMetadata::default(), data: vec![7u8; len].into() },
            },
        };
        let mut chunks: Vec<SnapshotChunk> = encoder(len.div_ceil(3)).snapshot_chunks(&m).collect();
        prop_assert!(chunks.len() >= 2);
        let i = skip.index(chunks.len() - 1);
        if swap { chunks.swap(i, i + 1) } else { chunks.remove(i); }
        let mut a = SnapshotAssembler::new(1 << 20);
        let mut results = Vec::new();
        for c in chunks {
            results.push(a.push(c));
        }
        prop_assert!(results.iter().any(|r| r.is_err()), "{:?}", results);
        prop_assert!(results.iter().all(|r| !matches!(r, Ok(Some(_)))));
    }
}

fn heartbeat() -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(5),
        body: MessageBody::Heartbeat {
            commit: LogIndex(9),
            round: 4,
        },
    }
}

#[test]
fn oversized_frame_is_refused_before_reading_it() {
    let mut wire = BytesMut::new();
    wire.put_u32_le(u32::MAX);
    wire.extend_from_slice(&[WIRE_VERSION, FRAME_KIND_MESSAGE, 0, 0]);
    wire.put_u64_le(CLUSTER);
    wire.put_u32_le(0);
    let err = decoder().decode(&mut wire).unwrap_err();
    assert_eq!(
        err,
        CodecError::FrameTooLarge {
            len: u32::MAX as usize,
            max: MAX_FRAME
        }
    );
    assert!(err.to_string().contains("exceeds the maximum"));
    assert!(
        wire.capacity() < 1 << 16,
        "no allocation for the announced size"
    );
}

#[test]
fn oversized_message_is_not_encoded() {
    let mut e = Encoder::new(CLUSTER, MIN_MAX_FRAME_BYTES, 512);
    let mut m = heartbeat();
    m.body = MessageBody::AppendEntries {
        prev_log_index: LogIndex(0),
        prev_log_term: Term(0),
        entries: vec![Entry {
            data: vec![0u8; 2000].into(),
            ..Entry::default()
        }],
        leader_commit: LogIndex(0),
    };
    let mut wire = BytesMut::from(&b"prefix"[..]);
    assert!(matches!(
        e.encode(&m, &mut wire),
        Err(CodecError::FrameTooLarge { .. })
    ));
    assert_eq!(&wire[..], b"prefix", "nothing appended on error");
}

#[test]
fn other_cluster_and_version_are_refused() {
    let mut wire = BytesMut::new();
    Encoder::new(CLUSTER + 1, MAX_FRAME, 1024)
        .encode(&heartbeat(), &mut wire)
        .unwrap();
    assert!(matches!(
        decoder().decode(&mut wire.clone()),
        Err(CodecError::ClusterMismatch { .. })
    ));
    wire[4] = 9;
    assert_eq!(
        decoder().decode(&mut wire),
        Err(CodecError::UnsupportedVersion(9))
    );
}

#[test]
fn entry_payloads_share_the_frame_buffer() {
    let mut m = heartbeat();
    m.body = MessageBody::AppendEntries {
        prev_log_index: LogIndex(1),
        prev_log_term: Term(1),
        entries: vec![Entry {
            term: Term(1),
            index: LogIndex(2),
            kind: EntryKind::Normal,
            data: Bytes::from_static(b"hello world"),
        }],
        leader_commit: LogIndex(1),
    };
    let mut wire = BytesMut::new();
    encoder(64).encode(&m, &mut wire).unwrap();
    let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
    let decoded = decoder().decode(&mut wire).unwrap().unwrap();
    let MessageBody::AppendEntries { entries, .. } = &decoded.body else {
        panic!("wrong body")
    };
    assert!(range.contains(&(entries[0].data.as_ptr() as usize)));
    assert_eq!(decoded, m);
}

#[test]
fn snapshot_over_the_limit_is_refused() {
    let m = Message {
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot {
                metadata: SnapshotMetadata::default(),
                data: vec![1u8; 100].into(),
            },
        },
        ..heartbeat()
    };
    let mut a = SnapshotAssembler::new(99);
    let first = encoder(10).snapshot_chunks(&m).next().unwrap();
    assert_eq!(
        a.push(first),
        Err(AssemblyError::TooLarge {
            total_len: 100,
            max: 99
        })
    );
    assert!(!a.in_progress());
}

#[test]
fn handshake_round_trip_and_refusals() {
    let h = Handshake {
        cluster_id: CLUSTER,
        from: NodeId(1),
        to: NodeId(2),
    };
    assert_eq!(Handshake::from_bytes(&h.to_bytes()), Ok(h));
    let mut bad = h.to_bytes();
    bad[0] = b'X';
    assert!(Handshake::from_bytes(&bad).is_err());
    let mut bad = h.to_bytes();
    bad[4] = 2;
    assert_eq!(
        Handshake::from_bytes(&bad),
        Err(CodecError::UnsupportedVersion(2))
    );
}
