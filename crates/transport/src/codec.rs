//! The peer wire format: framed, versioned, checksummed, little-endian, hand-written.
//!
//! This module is pure (no tokio, no I/O) so that it can be property-tested exhaustively and
//! reused by any byte pipe. See the crate documentation for the byte layout.
//!
//! Decoding never trusts a length read from the wire before checking it against a configured
//! bound, and never reserves memory for a count it has not yet seen the bytes for: a hostile or
//! corrupted peer can make us reject a frame, never make us allocate.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft::{
    AppendResponse, ConfState, Entry, EntryKind, LogIndex, Message, MessageBody, NodeId, Snapshot,
    SnapshotMetadata, Term,
};
use std::fmt;

/// The wire format version written in every frame header and handshake. A receiver refuses any
/// other version rather than guessing, so that a format change can never be misread silently.
pub const WIRE_VERSION: u8 = 1;

/// Bytes of the fixed frame header: `len u32 | version u8 | kind u8 | reserved u16 |
/// cluster_id u64 | crc32c u32`.
pub const FRAME_HEADER_BYTES: usize = 20;

/// The four bytes a dialer sends first (`"RKVT"`), so that a listener can refuse a stray client
/// (an HTTP probe, a port scanner) before reading anything else.
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"RKVT";

/// Bytes of the connection handshake: `magic [4] | version u8 | reserved [3] | cluster_id u64 |
/// from u64 | to u64`.
pub const HANDSHAKE_BYTES: usize = 32;

/// The byte a listener answers a valid handshake with. A refused handshake gets no answer: the
/// listener closes the connection, so the dialer sees end-of-stream instead.
pub const HANDSHAKE_ACCEPT: u8 = 0xA5;

/// The smallest `max_frame_bytes` accepted: room for a header, a message header and a small
/// snapshot chunk. Anything smaller could not carry a vote request with its metadata.
pub const MIN_MAX_FRAME_BYTES: usize = 1024;

/// Upper bound on the encoded size of a snapshot chunk besides its data, used to check that the
/// configured chunk size fits in a frame. The metadata's member lists are the variable part;
/// this bound assumes at most `MAX_CONF_MEMBERS` ids in total.
pub const fn snapshot_chunk_overhead_bytes() -> usize {
    FRAME_HEADER_BYTES + 6 * 8 + 1 + 8 + 8 + 4 * 4 + MAX_CONF_MEMBERS * 8 + 1
}

/// The most member ids one configuration may list on the wire (all four lists together). Bounds
/// the metadata part of a snapshot chunk; real clusters have a handful of members.
pub const MAX_CONF_MEMBERS: usize = 64;

const FRAME_KIND_MESSAGE: u8 = 1;
const FRAME_KIND_SNAPSHOT_CHUNK: u8 = 2;

/// Bytes of an entry on the wire besides its data (`term, index, kind, data_len`). Used to bound
/// how many entries a payload can possibly hold before reserving a vector for them.
const ENTRY_HEADER_BYTES: usize = 8 + 8 + 1 + 4;

/// Why bytes could not be decoded, or a message could not be encoded. Any decode error means the
/// stream can no longer be trusted to be frame-aligned: the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// A frame (announced or to be written) exceeds the configured maximum. Checked before any
    /// allocation, so a hostile length cannot exhaust memory.
    FrameTooLarge {
        /// The frame's payload length.
        len: usize,
        /// The configured maximum payload length.
        max: usize,
    },
    /// The frame was written by an incompatible version of the wire format.
    UnsupportedVersion(u8),
    /// The frame belongs to another cluster: a misconfigured peer address.
    ClusterMismatch {
        /// The cluster id in the frame.
        got: u64,
        /// Our cluster id.
        expected: u64,
    },
    /// The payload does not match its checksum: corruption on the wire or a desynchronised stream.
    ChecksumMismatch,
    /// The header names a frame kind this version does not know.
    UnknownFrameKind(u8),
    /// The payload is structurally invalid (unknown tag, truncated field, trailing bytes, bad
    /// flag). The string names what was wrong, for logs.
    Malformed(&'static str),
    /// A snapshot chunk did not continue the snapshot being assembled.
    Assembly(AssemblyError),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            CodecError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported wire version {v} (this build speaks {WIRE_VERSION})"
                )
            }
            CodecError::ClusterMismatch { got, expected } => {
                write!(
                    f,
                    "frame for cluster {got:#x}, expected cluster {expected:#x}"
                )
            }
            CodecError::ChecksumMismatch => f.write_str("frame checksum mismatch"),
            CodecError::UnknownFrameKind(k) => write!(f, "unknown frame kind {k}"),
            CodecError::Malformed(what) => write!(f, "malformed frame: {what}"),
            CodecError::Assembly(e) => write!(f, "snapshot assembly failed: {e}"),
        }
    }
}

impl std::error::Error for CodecError {}

impl From<AssemblyError> for CodecError {
    fn from(e: AssemblyError) -> Self {
        CodecError::Assembly(e)
    }
}

/// One piece of an `InstallSnapshot` message. Snapshots can be far larger than a frame, so they
/// travel as consecutive chunks on one connection and are reassembled by [`SnapshotAssembler`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The sender of the snapshot message.
    pub from: NodeId,
    /// The receiver of the snapshot message.
    pub to: NodeId,
    /// The sender's term, as in the original message.
    pub term: Term,
    /// Identifies one snapshot transfer on one connection, so that chunks of an abandoned transfer
    /// are never glued onto a new one.
    pub snapshot_id: u64,
    /// Position of `data` in the snapshot data; chunks arrive in order, so this equals the sum
    /// of the previous chunks' lengths.
    pub offset: u64,
    /// Length of the whole snapshot data; the same in every chunk of a transfer.
    pub total_len: u64,
    /// The snapshot's position and configuration: present in the first chunk (offset 0) only.
    pub metadata: Option<SnapshotMetadata>,
    /// This chunk's slice of the snapshot data; non-empty unless the whole snapshot is empty.
    pub data: Bytes,
}

/// What one frame carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message (any kind except `InstallSnapshot`).
    Message(Message),
    /// A piece of an `InstallSnapshot` message.
    SnapshotChunk(SnapshotChunk),
}

/// Encodes messages into frames. Cheap to create; holds the cluster id, the size limits and the
/// counter that gives each snapshot transfer its id.
#[derive(Clone, Debug)]
pub struct Encoder {
    cluster_id: u64,
    max_frame_bytes: usize,
    snapshot_chunk_bytes: usize,
    next_snapshot_id: u64,
}

impl Encoder {
    /// An encoder for `cluster_id` writing payloads of at most `max_frame_bytes` and snapshot
    /// chunks carrying at most `snapshot_chunk_bytes` of data each (clamped so a chunk always
    /// fits in a frame, and to at least one byte so a transfer always makes progress).
    pub fn new(cluster_id: u64, max_frame_bytes: usize, snapshot_chunk_bytes: usize) -> Encoder {
        let room = max_frame_bytes.saturating_sub(snapshot_chunk_overhead_bytes());
        Encoder {
            cluster_id,
            max_frame_bytes,
            snapshot_chunk_bytes: snapshot_chunk_bytes.min(room).max(1),
            next_snapshot_id: 1,
        }
    }

    /// Appends `message` to `dst` as one frame, or as a sequence of chunk frames for
    /// `InstallSnapshot`. On error nothing is appended, so `dst` stays frame-aligned.
    pub fn encode(&mut self, message: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        if let MessageBody::InstallSnapshot { .. } = message.body {
            let start = dst.len();
            for chunk in self.snapshot_chunks(message) {
                if let Err(e) = self.encode_chunk(&chunk, dst) {
                    dst.truncate(start);
                    return Err(e);
                }
            }
            return Ok(());
        }
        let len = message_payload_len(message);
        self.check_len(len)?;
        dst.reserve(FRAME_HEADER_BYTES + len);
        let header_at = dst.len();
        put_header_placeholder(dst, len, FRAME_KIND_MESSAGE, self.cluster_id);
        put_message(message, dst);
        finish_frame(dst, header_at);
        Ok(())
    }

    /// Splits an `InstallSnapshot` message into chunks without copying its data (each chunk's
    /// data is a slice of the snapshot's `Bytes`). Returns no chunks for other message kinds.
    /// The transport streams these one at a time so a large snapshot is never copied whole.
    pub fn snapshot_chunks(&mut self, message: &Message) -> SnapshotChunks {
        let MessageBody::InstallSnapshot { snapshot } = &message.body else {
            return SnapshotChunks { next: None };
        };
        let snapshot_id = self.next_snapshot_id;
        self.next_snapshot_id = self.next_snapshot_id.wrapping_add(1);
        SnapshotChunks {
            next: Some(ChunkCursor {
                from: message.from,
                to: message.to,
                term: message.term,
                snapshot_id,
                metadata: snapshot.metadata.clone(),
                data: snapshot.data.clone(),
                offset: 0,
                chunk_bytes: self.snapshot_chunk_bytes,
            }),
        }
    }

    /// Appends one snapshot chunk to `dst` as a frame. On error nothing is appended.
    pub fn encode_chunk(
        &self,
        chunk: &SnapshotChunk,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        if let Some(m) = &chunk.metadata
            && conf_lists(&m.conf_state)
                .iter()
                .map(|l| l.len())
                .sum::<usize>()
                > MAX_CONF_MEMBERS
        {
            return Err(CodecError::Malformed("too many members"));
        }
        let len = chunk_payload_len(chunk);
        self.check_len(len)?;
        dst.reserve(FRAME_HEADER_BYTES + len);
        let header_at = dst.len();
        put_header_placeholder(dst, len, FRAME_KIND_SNAPSHOT_CHUNK, self.cluster_id);
        put_chunk(chunk, dst);
        finish_frame(dst, header_at);
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<(), CodecError> {
        if len > self.max_frame_bytes {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(())
    }
}

struct ChunkCursor {
    from: NodeId,
    to: NodeId,
    term: Term,
    snapshot_id: u64,
    metadata: SnapshotMetadata,
    data: Bytes,
    offset: usize,
    chunk_bytes: usize,
}

/// The chunks of one snapshot transfer, in order (see [`Encoder::snapshot_chunks`]).
pub struct SnapshotChunks {
    next: Option<ChunkCursor>,
}

impl Iterator for SnapshotChunks {
    type Item = SnapshotChunk;

    fn next(&mut self) -> Option<SnapshotChunk> {
        let cursor = self.next.as_mut()?;
        let total = cursor.data.len();
        let end = (cursor.offset + cursor.chunk_bytes).min(total);
        let chunk = SnapshotChunk {
            from: cursor.from,
            to: cursor.to,
            term: cursor.term,
            snapshot_id: cursor.snapshot_id,
            offset: cursor.offset as u64,
            total_len: total as u64,
            metadata: (cursor.offset == 0).then(|| cursor.metadata.clone()),
            data: cursor.data.slice(cursor.offset..end),
        };
        cursor.offset = end;
        if end >= total {
            self.next = None;
        }
        Some(chunk)
    }
}

/// Decodes a byte stream into messages, reassembling snapshot chunks on the way. One per
/// connection: the stream position and the snapshot being assembled belong to that connection.
#[derive(Debug)]
pub struct Decoder {
    cluster_id: u64,
    max_frame_bytes: usize,
    assembler: SnapshotAssembler,
}

impl Decoder {
    /// A decoder accepting frames of `cluster_id` with payloads of at most `max_frame_bytes`, and
    /// snapshots of at most `max_snapshot_bytes` of data.
    pub fn new(cluster_id: u64, max_frame_bytes: usize, max_snapshot_bytes: u64) -> Decoder {
        Decoder {
            cluster_id,
            max_frame_bytes,
            assembler: SnapshotAssembler::new(max_snapshot_bytes),
        }
    }

    /// Takes the next whole message off the front of `src`. Returns `Ok(None)` when `src` holds
    /// no complete message yet (snapshot chunks are consumed and held meanwhile). Entry and
    /// snapshot payloads are slices of `src`'s buffer, not copies (except multi-chunk snapshots,
    /// which are concatenated once).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        loop {
            match self.decode_frame(src)? {
                None => return Ok(None),
                Some(Frame::Message(m)) => return Ok(Some(m)),
                Some(Frame::SnapshotChunk(chunk)) => {
                    if let Some(m) = self.assembler.push(chunk)? {
                        return Ok(Some(m));
                    }
                }
            }
        }
    }

    /// Takes the next frame off the front of `src` without reassembling snapshots; `Ok(None)`
    /// when more bytes are needed. The header is validated (size, version, cluster, checksum)
    /// before the payload is parsed.
    pub fn decode_frame(&self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let header = &src[..FRAME_HEADER_BYTES];
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        if len > self.max_frame_bytes {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let version = header[4];
        if version != WIRE_VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        let kind = header[5];
        let cluster_id = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if cluster_id != self.cluster_id {
            return Err(CodecError::ClusterMismatch {
                got: cluster_id,
                expected: self.cluster_id,
            });
        }
        let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
        if src.len() < FRAME_HEADER_BYTES + len {
            // Reserve only up to the checked bound; `len` is at most `max_frame_bytes` here.
            src.reserve(FRAME_HEADER_BYTES + len - src.len());
            return Ok(None);
        }
        if frame_crc(
            &src[..FRAME_HEADER_BYTES],
            &src[FRAME_HEADER_BYTES..][..len],
        ) != crc
        {
            return Err(CodecError::ChecksumMismatch);
        }
        if header[6] != 0 || header[7] != 0 {
            return Err(CodecError::Malformed("reserved header bits set"));
        }
        src.advance(FRAME_HEADER_BYTES);
        let payload = src.split_to(len).freeze();
        let mut reader = Reader { buf: payload };
        let frame = match kind {
            FRAME_KIND_MESSAGE => Frame::Message(read_message(&mut reader)?),
            FRAME_KIND_SNAPSHOT_CHUNK => Frame::SnapshotChunk(read_chunk(&mut reader)?),
            other => return Err(CodecError::UnknownFrameKind(other)),
        };
        if reader.buf.has_remaining() {
            return Err(CodecError::Malformed("trailing bytes after payload"));
        }
        Ok(Some(frame))
    }
}

/// Why a snapshot chunk was refused. The partial snapshot is discarded in every case: the sender
/// reports the transfer failed (or never hears back) and Raft retries with a fresh snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssemblyError {
    /// The snapshot is larger than the configured limit.
    TooLarge {
        /// The announced snapshot size.
        total_len: u64,
        /// The configured limit.
        max: u64,
    },
    /// A chunk arrived that does not continue the current transfer (wrong id, offset, sender,
    /// total length, or a continuation with no transfer in progress): a chunk went missing.
    OutOfOrder,
    /// The first chunk lacks metadata, a later one carries it, or a non-final chunk is empty.
    BadChunk,
}

impl fmt::Display for AssemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssemblyError::TooLarge { total_len, max } => {
                write!(
                    f,
                    "snapshot of {total_len} bytes exceeds the limit of {max} bytes"
                )
            }
            AssemblyError::OutOfOrder => f.write_str("snapshot chunk out of order or missing"),
            AssemblyError::BadChunk => f.write_str("malformed snapshot chunk sequence"),
        }
    }
}

impl std::error::Error for AssemblyError {}

#[derive(Debug)]
struct Assembly {
    from: NodeId,
    to: NodeId,
    term: Term,
    snapshot_id: u64,
    total_len: u64,
    metadata: SnapshotMetadata,
    /// The chunks received so far; concatenated once at the end, so memory grows only with data
    /// actually received and never with the announced total.
    parts: Vec<Bytes>,
    received: u64,
}

/// Reassembles snapshot chunks into one `InstallSnapshot` message, holding at most one transfer
/// and at most `max_snapshot_bytes` of data.
#[derive(Debug)]
pub struct SnapshotAssembler {
    max_snapshot_bytes: u64,
    current: Option<Assembly>,
}

impl SnapshotAssembler {
    /// An assembler refusing snapshots larger than `max_snapshot_bytes`.
    pub fn new(max_snapshot_bytes: u64) -> SnapshotAssembler {
        SnapshotAssembler {
            max_snapshot_bytes,
            current: None,
        }
    }

    /// Whether a transfer is partly received.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// Adds the next chunk. Returns the whole message when `chunk` completes it. Any error
    /// discards the transfer in progress.
    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<Option<Message>, AssemblyError> {
        let result = self.push_inner(chunk);
        if result.is_err() {
            self.current = None;
        }
        result
    }

    fn push_inner(&mut self, chunk: SnapshotChunk) -> Result<Option<Message>, AssemblyError> {
        if chunk.total_len > self.max_snapshot_bytes {
            return Err(AssemblyError::TooLarge {
                total_len: chunk.total_len,
                max: self.max_snapshot_bytes,
            });
        }
        let end = chunk
            .offset
            .checked_add(chunk.data.len() as u64)
            .filter(|end| *end <= chunk.total_len)
            .ok_or(AssemblyError::BadChunk)?;
        let last = end == chunk.total_len;
        if chunk.data.is_empty() && !last {
            return Err(AssemblyError::BadChunk);
        }
        if chunk.offset == 0 {
            if self.current.is_some() {
                // A new transfer started before the previous one finished: chunks were lost.
                return Err(AssemblyError::OutOfOrder);
            }
            let metadata = chunk.metadata.ok_or(AssemblyError::BadChunk)?;
            if last {
                return Ok(Some(snapshot_message(
                    chunk.from, chunk.to, chunk.term, metadata, chunk.data,
                )));
            }
            self.current = Some(Assembly {
                from: chunk.from,
                to: chunk.to,
                term: chunk.term,
                snapshot_id: chunk.snapshot_id,
                total_len: chunk.total_len,
                metadata,
                received: chunk.data.len() as u64,
                parts: vec![chunk.data],
            });
            return Ok(None);
        }
        if chunk.metadata.is_some() {
            return Err(AssemblyError::BadChunk);
        }
        let current = self.current.as_mut().ok_or(AssemblyError::OutOfOrder)?;
        if chunk.snapshot_id != current.snapshot_id
            || chunk.offset != current.received
            || chunk.total_len != current.total_len
            || chunk.from != current.from
            || chunk.to != current.to
            || chunk.term != current.term
        {
            return Err(AssemblyError::OutOfOrder);
        }
        current.received = end;
        current.parts.push(chunk.data);
        if !last {
            return Ok(None);
        }
        let done = self.current.take().expect("checked above");
        let mut data = BytesMut::with_capacity(done.total_len as usize);
        for part in &done.parts {
            data.extend_from_slice(part);
        }
        Ok(Some(snapshot_message(
            done.from,
            done.to,
            done.term,
            done.metadata,
            data.freeze(),
        )))
    }
}

fn snapshot_message(
    from: NodeId,
    to: NodeId,
    term: Term,
    metadata: SnapshotMetadata,
    data: Bytes,
) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot { metadata, data },
        },
    }
}

/// The 32-byte greeting a dialer sends before any frame. It names both ends so that a listener
/// can refuse a connection meant for another member, cluster or wire version before trusting a
/// single frame from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The cluster the dialer belongs to.
    pub cluster_id: u64,
    /// The dialer's member id; every message on the connection must come from it.
    pub from: NodeId,
    /// The member the dialer believes it is talking to.
    pub to: NodeId,
}

impl Handshake {
    /// The handshake's wire bytes.
    pub fn to_bytes(&self) -> [u8; HANDSHAKE_BYTES] {
        let mut out = [0u8; HANDSHAKE_BYTES];
        out[0..4].copy_from_slice(&HANDSHAKE_MAGIC);
        out[4] = WIRE_VERSION;
        out[8..16].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.from.0.to_le_bytes());
        out[24..32].copy_from_slice(&self.to.0.to_le_bytes());
        out
    }

    /// Parses a handshake, refusing a wrong magic, version or non-zero reserved bytes.
    pub fn from_bytes(bytes: &[u8; HANDSHAKE_BYTES]) -> Result<Handshake, CodecError> {
        if bytes[0..4] != HANDSHAKE_MAGIC {
            return Err(CodecError::Malformed("bad handshake magic"));
        }
        if bytes[4] != WIRE_VERSION {
            return Err(CodecError::UnsupportedVersion(bytes[4]));
        }
        if bytes[5..8] != [0, 0, 0] {
            return Err(CodecError::Malformed("reserved handshake bytes set"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        Ok(Handshake {
            cluster_id: u64_at(8),
            from: NodeId(u64_at(16)),
            to: NodeId(u64_at(24)),
        })
    }
}

// ---- encoding ----

fn put_header_placeholder(dst: &mut BytesMut, len: usize, kind: u8, cluster_id: u64) {
    dst.put_u32_le(u32::try_from(len).expect("length checked against max_frame_bytes"));
    dst.put_u8(WIRE_VERSION);
    dst.put_u8(kind);
    dst.put_u16_le(0);
    dst.put_u64_le(cluster_id);
    dst.put_u32_le(0); // checksum, filled in by finish_frame
}

fn finish_frame(dst: &mut BytesMut, header_at: usize) {
    let (header, payload) = dst[header_at..].split_at(FRAME_HEADER_BYTES);
    let crc = frame_crc(header, payload);
    dst[header_at + 16..header_at + 20].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum covers the header fields before it (so a flipped kind or cluster id is caught
/// too, not only payload corruption) and then the payload.
fn frame_crc(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..16]), payload)
}

fn message_payload_len(m: &Message) -> usize {
    8 * 3
        + 1
        + match &m.body {
            MessageBody::RequestVote { .. } => 1 + 16,
            MessageBody::RequestVoteResponse { .. } => 1,
            MessageBody::AppendEntries { entries, .. } => {
                24 + 4
                    + entries
                        .iter()
                        .map(|e| ENTRY_HEADER_BYTES + e.data.len())
                        .sum::<usize>()
            }
            MessageBody::AppendEntriesResponse(AppendResponse::Accepted { .. }) => 1 + 8,
            MessageBody::AppendEntriesResponse(AppendResponse::Rejected { .. }) => 1 + 24,
            MessageBody::Heartbeat { .. } => 16,
            MessageBody::HeartbeatResponse { .. } => 8,
            MessageBody::ReadIndex { .. } => 8,
            MessageBody::Propose { entries } => {
                4 + entries.iter().map(|data| 4 + data.len()).sum::<usize>()
            }
            MessageBody::ReadIndexResponse { index, .. } => {
                8 + 1 + if index.is_some() { 8 } else { 0 }
            }
            MessageBody::TimeoutNow => 0,
            MessageBody::InstallSnapshot { .. } => unreachable!("snapshots travel as chunks"),
        }
}

const TAG_REQUEST_VOTE: u8 = 1;
const TAG_REQUEST_VOTE_RESPONSE: u8 = 2;
const TAG_APPEND_ENTRIES: u8 = 3;
const TAG_APPEND_RESPONSE: u8 = 4;
const TAG_HEARTBEAT: u8 = 5;
const TAG_HEARTBEAT_RESPONSE: u8 = 6;
const TAG_READ_INDEX: u8 = 7;
const TAG_READ_INDEX_RESPONSE: u8 = 8;
const TAG_TIMEOUT_NOW: u8 = 9;
const TAG_PROPOSE: u8 = 10;

fn put_message(m: &Message, dst: &mut BytesMut) {
    dst.put_u64_le(m.from.0);
    dst.put_u64_le(m.to.0);
    dst.put_u64_le(m.term.0);
    match &m.body {
        MessageBody::RequestVote {
            pre_vote,
            last_log_index,
            last_log_term,
            transfer,
        } => {
            dst.put_u8(TAG_REQUEST_VOTE);
            dst.put_u8(u8::from(*pre_vote) | (u8::from(*transfer) << 1));
            dst.put_u64_le(last_log_index.0);
            dst.put_u64_le(last_log_term.0);
        }
        MessageBody::RequestVoteResponse { pre_vote, granted } => {
            dst.put_u8(TAG_REQUEST_VOTE_RESPONSE);
            dst.put_u8(u8::from(*pre_vote) | (u8::from(*granted) << 1));
        }
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => {
            dst.put_u8(TAG_APPEND_ENTRIES);
            dst.put_u64_le(prev_log_index.0);
            dst.put_u64_le(prev_log_term.0);
            dst.put_u64_le(leader_commit.0);
            dst.put_u32_le(u32::try_from(entries.len()).expect("bounded by frame size"));
            for e in entries {
                dst.put_u64_le(e.term.0);
                dst.put_u64_le(e.index.0);
                dst.put_u8(match e.kind {
                    EntryKind::Normal => 0,
                    EntryKind::Empty => 1,
                    EntryKind::ConfChange => 2,
                });
                dst.put_u32_le(u32::try_from(e.data.len()).expect("bounded by frame size"));
                dst.put_slice(&e.data);
            }
        }
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => {
            dst.put_u8(TAG_APPEND_RESPONSE);
            dst.put_u8(0);
            dst.put_u64_le(match_index.0);
        }
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        }) => {
            dst.put_u8(TAG_APPEND_RESPONSE);
            dst.put_u8(1);
            dst.put_u64_le(rejected_index.0);
            dst.put_u64_le(hint_index.0);
            dst.put_u64_le(hint_term.0);
        }
        MessageBody::Heartbeat { commit, round } => {
            dst.put_u8(TAG_HEARTBEAT);
            dst.put_u64_le(commit.0);
            dst.put_u64_le(*round);
        }
        MessageBody::HeartbeatResponse { round } => {
            dst.put_u8(TAG_HEARTBEAT_RESPONSE);
            dst.put_u64_le(*round);
        }
        MessageBody::ReadIndex { context } => {
            dst.put_u8(TAG_READ_INDEX);
            dst.put_u64_le(*context);
        }
        MessageBody::ReadIndexResponse { context, index } => {
            dst.put_u8(TAG_READ_INDEX_RESPONSE);
            dst.put_u64_le(*context);
            match index {
                None => dst.put_u8(0),
                Some(i) => {
                    dst.put_u8(1);
                    dst.put_u64_le(i.0);
                }
            }
        }
        MessageBody::TimeoutNow => dst.put_u8(TAG_TIMEOUT_NOW),
        MessageBody::Propose { entries } => {
            dst.put_u8(TAG_PROPOSE);
            dst.put_u32_le(u32::try_from(entries.len()).expect("bounded by frame size"));
            for data in entries {
                dst.put_u32_le(u32::try_from(data.len()).expect("bounded by frame size"));
                dst.put_slice(data);
            }
        }
        MessageBody::InstallSnapshot { .. } => unreachable!("snapshots travel as chunks"),
    }
}

fn conf_lists(c: &ConfState) -> [&Vec<NodeId>; 4] {
    [&c.voters, &c.learners, &c.voters_outgoing, &c.learners_next]
}

fn chunk_payload_len(c: &SnapshotChunk) -> usize {
    let metadata = c.metadata.as_ref().map_or(0, |m| {
        16 + conf_lists(&m.conf_state)
            .iter()
            .map(|l| 4 + 8 * l.len())
            .sum::<usize>()
            + 1
    });
    8 * 6 + 1 + metadata + c.data.len()
}

fn put_chunk(c: &SnapshotChunk, dst: &mut BytesMut) {
    dst.put_u64_le(c.from.0);
    dst.put_u64_le(c.to.0);
    dst.put_u64_le(c.term.0);
    dst.put_u64_le(c.snapshot_id);
    dst.put_u64_le(c.offset);
    dst.put_u64_le(c.total_len);
    match &c.metadata {
        None => dst.put_u8(0),
        Some(m) => {
            dst.put_u8(1);
            dst.put_u64_le(m.index.0);
            dst.put_u64_le(m.term.0);
            for list in conf_lists(&m.conf_state) {
                dst.put_u32_le(u32::try_from(list.len()).expect("bounded by frame size"));
                for id in list {
                    dst.put_u64_le(id.0);
                }
            }
            dst.put_u8(u8::from(m.conf_state.auto_leave));
        }
    }
    // The data runs to the end of the payload: its length is implied by the frame length.
    dst.put_slice(&c.data);
}

// ---- decoding ----

/// A cursor over a frozen payload. Reads are bounds-checked and return `Malformed` instead of
/// panicking; byte slices are taken with `split_to`, sharing the frame's buffer.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), CodecError> {
        if self.buf.remaining() < n {
            return Err(CodecError::Malformed(what));
        }
        Ok(())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32_le())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64_le())
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Malformed(what)),
        }
    }

    /// Two booleans packed in the low bits of one byte; other bits must be clear so that every
    /// value has exactly one encoding.
    fn flags2(&mut self, what: &'static str) -> Result<(bool, bool), CodecError> {
        let b = self.u8(what)?;
        if b & !0b11 != 0 {
            return Err(CodecError::Malformed(what));
        }
        Ok((b & 1 != 0, b & 2 != 0))
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, CodecError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    fn ids(&mut self, budget: &mut usize) -> Result<Vec<NodeId>, CodecError> {
        let n = self.u32("member count")? as usize;
        if n > *budget {
            return Err(CodecError::Malformed("too many members"));
        }
        *budget -= n;
        self.need(n * 8, "member ids")?;
        Ok((0..n).map(|_| NodeId(self.buf.get_u64_le())).collect())
    }
}

fn read_message(r: &mut Reader) -> Result<Message, CodecError> {
    let from = NodeId(r.u64("from")?);
    let to = NodeId(r.u64("to")?);
    let term = Term(r.u64("term")?);
    let body = match r.u8("body tag")? {
        TAG_REQUEST_VOTE => {
            let (pre_vote, transfer) = r.flags2("vote flags")?;
            MessageBody::RequestVote {
                pre_vote,
                last_log_index: LogIndex(r.u64("last_log_index")?),
                last_log_term: Term(r.u64("last_log_term")?),
                transfer,
            }
        }
        TAG_REQUEST_VOTE_RESPONSE => {
            let (pre_vote, granted) = r.flags2("vote response flags")?;
            MessageBody::RequestVoteResponse { pre_vote, granted }
        }
        TAG_APPEND_ENTRIES => {
            let prev_log_index = LogIndex(r.u64("prev_log_index")?);
            let prev_log_term = Term(r.u64("prev_log_term")?);
            let leader_commit = LogIndex(r.u64("leader_commit")?);
            let count = r.u32("entry count")? as usize;
            // Never trust the count for the allocation: at most as many entries as could fit.
            if count > r.buf.remaining() / ENTRY_HEADER_BYTES {
                return Err(CodecError::Malformed("entry count exceeds payload"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let term = Term(r.u64("entry term")?);
                let index = LogIndex(r.u64("entry index")?);
                let kind = match r.u8("entry kind")? {
                    0 => EntryKind::Normal,
                    1 => EntryKind::Empty,
                    2 => EntryKind::ConfChange,
                    _ => return Err(CodecError::Malformed("entry kind")),
                };
                let len = r.u32("entry data length")? as usize;
                let data = r.bytes(len, "entry data")?;
                entries.push(Entry {
                    term,
                    index,
                    kind,
                    data,
                });
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            }
        }
        TAG_APPEND_RESPONSE => match r.u8("append response kind")? {
            0 => MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
                match_index: LogIndex(r.u64("match_index")?),
            }),
            1 => MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                rejected_index: LogIndex(r.u64("rejected_index")?),
                hint_index: LogIndex(r.u64("hint_index")?),
                hint_term: Term(r.u64("hint_term")?),
            }),
            _ => return Err(CodecError::Malformed("append response kind")),
        },
        TAG_HEARTBEAT => MessageBody::Heartbeat {
            commit: LogIndex(r.u64("commit")?),
            round: r.u64("round")?,
        },
        TAG_HEARTBEAT_RESPONSE => MessageBody::HeartbeatResponse {
            round: r.u64("round")?,
        },
        TAG_READ_INDEX => MessageBody::ReadIndex {
            context: r.u64("context")?,
        },
        TAG_READ_INDEX_RESPONSE => {
            let context = r.u64("context")?;
            let index = if r.bool("read index presence")? {
                Some(LogIndex(r.u64("read index")?))
            } else {
                None
            };
            MessageBody::ReadIndexResponse { context, index }
        }
        TAG_TIMEOUT_NOW => MessageBody::TimeoutNow,
        TAG_PROPOSE => {
            let count = r.u32("proposal count")? as usize;
            // Never trust the count for the allocation: at most as many as could fit.
            if count > r.buf.remaining() / 4 {
                return Err(CodecError::Malformed("proposal count exceeds payload"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let len = r.u32("proposal length")? as usize;
                // A copy of its own: the command may live long in the leader's log, and a
                // slice would keep the whole received frame alive with it.
                entries.push(bytes::Bytes::copy_from_slice(&r.bytes(len, "proposal")?));
            }
            MessageBody::Propose { entries }
        }
        _ => return Err(CodecError::Malformed("unknown message body tag")),
    };
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

fn read_chunk(r: &mut Reader) -> Result<SnapshotChunk, CodecError> {
    let from = NodeId(r.u64("from")?);
    let to = NodeId(r.u64("to")?);
    let term = Term(r.u64("term")?);
    let snapshot_id = r.u64("snapshot id")?;
    let offset = r.u64("chunk offset")?;
    let total_len = r.u64("snapshot length")?;
    let metadata = if r.bool("metadata presence")? {
        let index = LogIndex(r.u64("snapshot index")?);
        let term = Term(r.u64("snapshot term")?);
        let mut budget = MAX_CONF_MEMBERS;
        let voters = r.ids(&mut budget)?;
        let learners = r.ids(&mut budget)?;
        let voters_outgoing = r.ids(&mut budget)?;
        let learners_next = r.ids(&mut budget)?;
        let auto_leave = r.bool("auto_leave")?;
        Some(SnapshotMetadata {
            index,
            term,
            conf_state: ConfState {
                voters,
                learners,
                voters_outgoing,
                learners_next,
                auto_leave,
            },
        })
    } else {
        None
    };
    let data = r.bytes(r.buf.remaining(), "chunk data")?;
    Ok(SnapshotChunk {
        from,
        to,
        term,
        snapshot_id,
        offset,
        total_len,
        metadata,
        data,
    })
}

#[cfg(test)]
mod tests;
