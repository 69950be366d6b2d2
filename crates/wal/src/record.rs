//! Record framing and payload codecs of the segment files (the layout is documented in the crate
//! docs, "File format"), and the scan of one segment that applies the torn-tail rule.

use bytes::Bytes;
use raft::{ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Term};
use std::ops::Range;

/// Bytes of the record header: length, type, reserved, payload CRC, header CRC.
pub(crate) const HEADER_LEN: usize = 16;
/// Records start at multiples of this, so that the torn-tail scan only probes aligned offsets.
pub(crate) const RECORD_ALIGN: usize = 8;
/// The largest payload the format accepts (a sanity bound, well below `u32::MAX`).
pub(crate) const MAX_PAYLOAD: u64 = 1 << 30;
/// The version written in every checkpoint; a reader rejects versions it does not know.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The kinds of records in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// First record of every segment: the whole state needed to replay from this segment on.
    Checkpoint = 1,
    /// One `Wal::write`: an optional hard state and zero or more entries.
    Batch = 2,
    /// A snapshot was saved; the log before it is gone.
    Snapshot = 3,
}

impl RecordType {
    fn from_tag(tag: u8) -> Option<RecordType> {
        match tag {
            1 => Some(RecordType::Checkpoint),
            2 => Some(RecordType::Batch),
            3 => Some(RecordType::Snapshot),
            _ => None,
        }
    }
}

/// A problem found at a byte offset of a file; the caller adds the file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Corruption {
    pub offset: u64,
    pub reason: String,
}

impl Corruption {
    pub(crate) fn new(offset: u64, reason: impl Into<String>) -> Corruption {
        Corruption {
            offset,
            reason: reason.into(),
        }
    }
}

/// Total on-disk size of a record whose payload has `payload_len` bytes.
pub(crate) fn record_len(payload_len: usize) -> usize {
    (HEADER_LEN + payload_len).next_multiple_of(RECORD_ALIGN)
}

/// The tag of an entry kind on disk. The match is exhaustive on purpose: a new `EntryKind` must
/// get a new tag here before the crate compiles.
fn kind_tag(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => 1,
        EntryKind::Empty => 2,
        EntryKind::ConfChange => 3,
    }
}

fn kind_from_tag(tag: u8) -> Result<EntryKind, String> {
    match tag {
        1 => Ok(EntryKind::Normal),
        2 => Ok(EntryKind::Empty),
        3 => Ok(EntryKind::ConfChange),
        other => Err(format!(
            "unknown entry kind tag {other} (written by a newer version, or corrupted)"
        )),
    }
}

/// Builds one record: reserves the header, collects the payload, then fills header and padding.
pub(crate) struct RecordBuilder {
    buf: Vec<u8>,
    kind: RecordType,
}

impl RecordBuilder {
    pub(crate) fn new(kind: RecordType, capacity: usize) -> RecordBuilder {
        let mut buf = Vec::with_capacity(record_len(capacity));
        buf.resize(HEADER_LEN, 0);
        RecordBuilder { buf, kind }
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }

    /// The payload bytes alone, for formats that reuse the field encoders without the framing.
    pub(crate) fn into_payload(mut self) -> Vec<u8> {
        self.buf.drain(..HEADER_LEN);
        self.buf
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let payload_len = self.payload_len();
        assert!(
            payload_len as u64 <= MAX_PAYLOAD,
            "record payload of {payload_len} bytes exceeds the format limit"
        );
        let payload_crc = crc32c::crc32c(&self.buf[HEADER_LEN..]);
        self.buf[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.buf[4] = self.kind as u8;
        self.buf[5..8].fill(0);
        self.buf[8..12].copy_from_slice(&payload_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&self.buf[0..12]);
        self.buf[12..16].copy_from_slice(&header_crc.to_le_bytes());
        let total = record_len(payload_len);
        self.buf.resize(total, 0);
        self.buf
    }
}

/// A validated record header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub kind: RecordType,
    pub payload_len: usize,
    pub payload_crc: u32,
}

impl Header {
    pub(crate) fn total_len(&self) -> usize {
        record_len(self.payload_len)
    }
}

/// Checks a 16-byte header: its own checksum, the type, the reserved bytes and the length bound.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    debug_assert_eq!(bytes.len(), HEADER_LEN);
    if bytes.iter().all(|&b| b == 0) {
        return Err("zero-filled header (end of written data)".into());
    }
    let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[0..12]);
    if stored != computed {
        return Err(format!(
            "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let kind = RecordType::from_tag(bytes[4])
        .ok_or_else(|| format!("unknown record type {}", bytes[4]))?;
    if bytes[5..8] != [0, 0, 0] {
        return Err("reserved header bytes are not zero".into());
    }
    let payload_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as u64;
    if payload_len > MAX_PAYLOAD {
        return Err(format!(
            "record length {payload_len} exceeds the format limit"
        ));
    }
    Ok(Header {
        kind,
        payload_len: payload_len as usize,
        payload_crc: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
    })
}

/// Verifies a payload against its header.
pub(crate) fn check_payload(header: &Header, payload: &[u8]) -> Result<(), String> {
    let computed = crc32c::crc32c(payload);
    if computed != header.payload_crc {
        return Err(format!(
            "payload checksum mismatch (stored {:#010x}, computed {computed:#010x})",
            header.payload_crc
        ));
    }
    Ok(())
}

/// Tries to read a complete, checksum-valid record at `pos` of `buf`.
fn record_at(buf: &[u8], pos: usize) -> Result<(Header, Range<usize>), String> {
    let Some(header_bytes) = buf.get(pos..pos + HEADER_LEN) else {
        return Err("incomplete record header".into());
    };
    let header = parse_header(header_bytes)?;
    let payload = pos + HEADER_LEN..pos + HEADER_LEN + header.payload_len;
    if pos + header.total_len() > buf.len() {
        return Err(format!(
            "record of {} bytes extends past the end of the file",
            header.total_len()
        ));
    }
    check_payload(&header, &buf[payload.clone()])?;
    Ok((header, payload))
}

/// Where the valid data of a segment ends, and whether a torn tail follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentEnd {
    /// Offset just past the last valid record.
    pub end: u64,
    /// `Some(reason)` if non-zero bytes that are not a valid record follow `end` in the last
    /// segment (a torn write, to be cut).
    pub torn: Option<String>,
    /// Offset just past the last non-zero byte after `end` (equal to `end` if only zeros
    /// follow): the extent of the torn bytes to overwrite with zeros.
    pub dirty_end: u64,
}

/// Scans the records of one segment held in `buf`, calling `visit(offset, type, payload)` for
/// each valid one in order, and applies the torn-tail rule. The first position that does not
/// hold a valid record ends the data; then:
///
/// - if only zeros follow, the end is clean (preallocated space);
/// - otherwise, in a segment that is not the last one, it is corruption;
/// - in the last segment, if a valid record starts at any aligned offset after it, the damage
///   is in the middle of acknowledged data: corruption;
/// - else the rest is the torn write of the last batch, reported for cutting.
pub(crate) fn scan_segment(
    buf: &[u8],
    is_last: bool,
    mut visit: impl FnMut(u64, RecordType, &[u8]) -> Result<(), Corruption>,
) -> Result<SegmentEnd, Corruption> {
    let mut pos = 0usize;
    loop {
        if pos == buf.len() {
            return Ok(SegmentEnd {
                end: pos as u64,
                torn: None,
                dirty_end: pos as u64,
            });
        }
        match record_at(buf, pos) {
            Ok((header, payload)) => {
                visit(pos as u64, header.kind, &buf[payload])?;
                pos += header.total_len();
            }
            Err(reason) => {
                let dirty_end = buf
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(pos, |last| (last + 1).max(pos));
                if dirty_end == pos {
                    return Ok(SegmentEnd {
                        end: pos as u64,
                        torn: None,
                        dirty_end: pos as u64,
                    });
                }
                if !is_last {
                    return Err(Corruption::new(
                        pos as u64,
                        format!("{reason} (in a segment that is not the last one)"),
                    ));
                }
                if let Some(next) = find_valid_record(buf, pos + RECORD_ALIGN) {
                    return Err(Corruption::new(
                        pos as u64,
                        format!(
                            "{reason}; a valid record follows at byte {next}, so this is damaged \
                             acknowledged data, not a torn write"
                        ),
                    ));
                }
                return Ok(SegmentEnd {
                    end: pos as u64,
                    torn: Some(reason),
                    dirty_end: dirty_end as u64,
                });
            }
        }
    }
}

/// The first aligned offset at or after `from` holding a valid record, if any. Zero runs are
/// skipped quickly, and the header checksum keeps the cost of probing garbage low.
fn find_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    let mut pos = from.next_multiple_of(RECORD_ALIGN);
    while pos + HEADER_LEN <= buf.len() {
        if buf[pos..pos + HEADER_LEN].iter().all(|&b| b == 0) {
            // A valid header has a non-zero type byte, so it must contain the next non-zero
            // byte: jump to the first aligned offset that could.
            let rest = &buf[pos + HEADER_LEN..];
            let nonzero = rest.iter().position(|&b| b != 0)? + pos + HEADER_LEN;
            let candidate = (nonzero + 1)
                .saturating_sub(HEADER_LEN)
                .next_multiple_of(RECORD_ALIGN);
            pos = candidate.max(pos + RECORD_ALIGN);
            continue;
        }
        if record_at(buf, pos).is_ok() {
            return Some(pos);
        }
        pos += RECORD_ALIGN;
    }
    None
}

/// Reads little-endian fields from a payload, failing (not panicking) when it is too short.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "payload too short: wanted {n} bytes at {} of {}",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// `n` bytes, as a range of the underlying buffer.
    pub(crate) fn range(&mut self, n: usize) -> Result<Range<usize>, String> {
        let start = self.pos;
        self.take(n)?;
        Ok(start..self.pos)
    }

    pub(crate) fn finish(&self) -> Result<(), String> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes after the payload",
                self.buf.len() - self.pos
            ))
        }
    }

    /// A count of items of at least `min_item_bytes` each, checked against what is left, so a
    /// corrupt count cannot make us allocate wildly.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, String> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item_bytes) > self.buf.len() - self.pos {
            return Err(format!("count {count} does not fit the payload"));
        }
        Ok(count)
    }
}

pub(crate) fn put_conf_state(out: &mut RecordBuilder, conf: &ConfState) {
    out.u32(conf.voters.len() as u32);
    for id in &conf.voters {
        out.u64(id.get());
    }
    out.u32(conf.learners.len() as u32);
    for id in &conf.learners {
        out.u64(id.get());
    }
    // The joint-configuration part (membership changes in progress).
    out.u32(conf.voters_outgoing.len() as u32);
    for id in &conf.voters_outgoing {
        out.u64(id.get());
    }
    out.u32(conf.learners_next.len() as u32);
    for id in &conf.learners_next {
        out.u64(id.get());
    }
    out.u32(u32::from(conf.auto_leave));
}

pub(crate) fn get_conf_state(input: &mut Reader<'_>) -> Result<ConfState, String> {
    let mut conf = ConfState::default();
    let voters = input.count(8)?;
    for _ in 0..voters {
        conf.voters.push(NodeId(input.u64()?));
    }
    let learners = input.count(8)?;
    for _ in 0..learners {
        conf.learners.push(NodeId(input.u64()?));
    }
    let outgoing = input.count(8)?;
    for _ in 0..outgoing {
        conf.voters_outgoing.push(NodeId(input.u64()?));
    }
    let learners_next = input.count(8)?;
    for _ in 0..learners_next {
        conf.learners_next.push(NodeId(input.u64()?));
    }
    conf.auto_leave = match input.u32()? {
        0 => false,
        1 => true,
        other => return Err(format!("bad auto-leave flag {other}")),
    };
    Ok(conf)
}

fn put_hard_state(out: &mut RecordBuilder, hard_state: &HardState) {
    out.u64(hard_state.term.get());
    out.u64(hard_state.vote.get());
    out.u64(hard_state.commit.get());
}

fn get_hard_state(input: &mut Reader<'_>) -> Result<HardState, String> {
    Ok(HardState {
        term: Term(input.u64()?),
        vote: NodeId(input.u64()?),
        commit: LogIndex(input.u64()?),
    })
}

/// The first record of a segment: everything needed to replay the log from this segment on,
/// without the segments before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The segment's own sequence number, so a renamed or copied file is detected.
    pub segment_seq: u64,
    /// The length the segment was preallocated to before its name became durable (0 without
    /// preallocation). A crash never makes the file shorter, so a shorter file was truncated.
    pub preallocated_bytes: u64,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    /// The configuration of the snapshot (or the initial one if there is none yet).
    pub conf_state: ConfState,
    pub hard_state: HardState,
    pub last_index: u64,
    /// Terms of the entries `snapshot_index + 1 ..= last_index`, as (first index, term) runs.
    pub term_runs: Vec<(u64, u64)>,
}

impl Checkpoint {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = RecordBuilder::new(RecordType::Checkpoint, 128);
        out.u32(FORMAT_VERSION);
        out.u64(self.segment_seq);
        out.u64(self.preallocated_bytes);
        out.u64(self.snapshot_index);
        out.u64(self.snapshot_term);
        put_conf_state(&mut out, &self.conf_state);
        put_hard_state(&mut out, &self.hard_state);
        out.u64(self.last_index);
        out.u32(self.term_runs.len() as u32);
        for &(first, term) in &self.term_runs {
            out.u64(first);
            out.u64(term);
        }
        out.finish()
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Checkpoint, String> {
        let mut input = Reader::new(payload);
        let version = input.u32()?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "unsupported format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        let segment_seq = input.u64()?;
        let preallocated_bytes = input.u64()?;
        let snapshot_index = input.u64()?;
        let snapshot_term = input.u64()?;
        let conf_state = get_conf_state(&mut input)?;
        let hard_state = get_hard_state(&mut input)?;
        let last_index = input.u64()?;
        let runs = input.count(16)?;
        let mut term_runs = Vec::with_capacity(runs);
        for _ in 0..runs {
            term_runs.push((input.u64()?, input.u64()?));
        }
        input.finish()?;
        Ok(Checkpoint {
            segment_seq,
            preallocated_bytes,
            snapshot_index,
            snapshot_term,
            conf_state,
            hard_state,
            last_index,
            term_runs,
        })
    }
}

const BATCH_HAS_HARD_STATE: u8 = 1;

/// Encodes one write: the optional hard state and the entries (consecutive, first index stored
/// once).
pub(crate) fn encode_batch(hard_state: Option<&HardState>, entries: &[Entry]) -> Vec<u8> {
    let data: usize = entries.iter().map(|entry| entry.data.len() + 13).sum();
    let mut out = RecordBuilder::new(RecordType::Batch, 1 + 24 + 12 + data);
    out.u8(if hard_state.is_some() {
        BATCH_HAS_HARD_STATE
    } else {
        0
    });
    if let Some(hard_state) = hard_state {
        put_hard_state(&mut out, hard_state);
    }
    out.u64(entries.first().map_or(0, |entry| entry.index.get()));
    out.u32(entries.len() as u32);
    for entry in entries {
        out.u64(entry.term.get());
        out.u8(kind_tag(entry.kind));
        out.u32(entry.data.len() as u32);
        out.bytes(&entry.data);
    }
    out.finish()
}

/// One entry of a decoded batch, with its data as a range of the payload.
#[derive(Clone, Debug)]
pub(crate) struct BatchEntry {
    pub term: u64,
    pub kind: EntryKind,
    pub data: Range<usize>,
}

/// A decoded batch record.
#[derive(Clone, Debug)]
pub(crate) struct Batch {
    pub hard_state: Option<HardState>,
    /// Index of the first entry; meaningless when `entries` is empty.
    pub first_index: u64,
    pub entries: Vec<BatchEntry>,
}

impl Batch {
    pub(crate) fn decode(payload: &[u8]) -> Result<Batch, String> {
        let mut input = Reader::new(payload);
        let flags = input.u8()?;
        if flags & !BATCH_HAS_HARD_STATE != 0 {
            return Err(format!("unknown batch flags {flags:#04x}"));
        }
        let hard_state = if flags & BATCH_HAS_HARD_STATE != 0 {
            Some(get_hard_state(&mut input)?)
        } else {
            None
        };
        let first_index = input.u64()?;
        let count = input.count(13)?;
        if count > 0 && (first_index == 0 || first_index.checked_add(count as u64).is_none()) {
            return Err(format!(
                "invalid first index {first_index} for {count} entries"
            ));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let term = input.u64()?;
            let kind = kind_from_tag(input.u8()?)?;
            let len = input.u32()? as usize;
            let data = input.range(len)?;
            entries.push(BatchEntry { term, kind, data });
        }
        input.finish()?;
        Ok(Batch {
            hard_state,
            first_index,
            entries,
        })
    }

    /// The entries as `raft::Entry`s sharing `payload`'s buffer.
    pub(crate) fn to_entries(&self, payload: &Bytes) -> Vec<Entry> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, entry)| Entry {
                term: Term(entry.term),
                index: LogIndex(self.first_index + i as u64),
                kind: entry.kind,
                data: payload.slice(entry.data.clone()),
            })
            .collect()
    }
}

/// A snapshot marker: the log before `index` is replaced by the snapshot `(index, term)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotMarker {
    pub index: u64,
    pub term: u64,
    /// Whether the entries after `index` were kept (the log held `(index, term)`) or the whole
    /// log was discarded. Decided at write time, so replay never has to guess.
    pub kept_suffix: bool,
    pub conf_state: ConfState,
}

impl SnapshotMarker {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = RecordBuilder::new(RecordType::Snapshot, 64);
        out.u64(self.index);
        out.u64(self.term);
        out.u8(u8::from(self.kept_suffix));
        put_conf_state(&mut out, &self.conf_state);
        out.finish()
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<SnapshotMarker, String> {
        let mut input = Reader::new(payload);
        let index = input.u64()?;
        let term = input.u64()?;
        let kept_suffix = match input.u8()? {
            0 => false,
            1 => true,
            other => return Err(format!("invalid kept-suffix flag {other}")),
        };
        let conf_state = get_conf_state(&mut input)?;
        input.finish()?;
        Ok(SnapshotMarker {
            index,
            term,
            kept_suffix,
            conf_state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &'static [u8]) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            data: Bytes::from_static(data),
        }
    }

    fn payload_of(record: &[u8]) -> &[u8] {
        let header = parse_header(&record[..HEADER_LEN]).unwrap();
        &record[HEADER_LEN..HEADER_LEN + header.payload_len]
    }

    #[test]
    fn batch_roundtrip_with_hard_state() {
        let hard_state = HardState {
            term: Term(3),
            vote: NodeId(2),
            commit: LogIndex(7),
        };
        let mut empty = entry(6, 3, b"");
        empty.kind = EntryKind::Empty;
        let entries = vec![entry(5, 2, b"hello"), empty];
        let record = encode_batch(Some(&hard_state), &entries);
        assert_eq!(record.len() % RECORD_ALIGN, 0);
        let payload = Bytes::copy_from_slice(payload_of(&record));
        let batch = Batch::decode(&payload).unwrap();
        assert_eq!(batch.hard_state, Some(hard_state));
        assert_eq!(batch.to_entries(&payload), entries);
    }

    #[test]
    fn unknown_entry_kind_is_rejected_with_a_clear_reason() {
        let record = encode_batch(None, &[entry(1, 1, b"x")]);
        let mut payload = payload_of(&record).to_vec();
        // flags(1) first_index(8) count(4) term(8) -> kind tag
        payload[1 + 8 + 4 + 8] = 9;
        let error = Batch::decode(&payload).unwrap_err();
        assert!(error.contains("unknown entry kind tag 9"), "{error}");
    }

    #[test]
    fn header_checks_catch_damage() {
        let record = encode_batch(None, &[entry(1, 1, b"abc")]);
        assert!(parse_header(&record[..HEADER_LEN]).is_ok());
        for byte in 0..HEADER_LEN {
            let mut damaged = record.clone();
            damaged[byte] ^= 0x10;
            assert!(parse_header(&damaged[..HEADER_LEN]).is_err(), "byte {byte}");
        }
        assert!(
            parse_header(&[0u8; HEADER_LEN])
                .unwrap_err()
                .contains("zero")
        );
    }

    #[test]
    fn checkpoint_and_marker_roundtrip() {
        let checkpoint = Checkpoint {
            segment_seq: 4,
            preallocated_bytes: 4096,
            snapshot_index: 10,
            snapshot_term: 2,
            conf_state: ConfState::with_voters([NodeId(1), NodeId(2)]),
            hard_state: HardState::default(),
            last_index: 20,
            term_runs: vec![(11, 2), (15, 3)],
        };
        let record = checkpoint.encode();
        assert_eq!(Checkpoint::decode(payload_of(&record)).unwrap(), checkpoint);
        let marker = SnapshotMarker {
            index: 9,
            term: 1,
            kept_suffix: true,
            conf_state: ConfState::with_voters([NodeId(3)]),
        };
        assert_eq!(
            SnapshotMarker::decode(payload_of(&marker.encode())).unwrap(),
            marker
        );
    }

    fn segment(records: &[Vec<u8>], zeros: usize) -> Vec<u8> {
        let mut buf: Vec<u8> = records.concat();
        buf.resize(buf.len() + zeros, 0);
        buf
    }

    fn count_records(buf: &[u8], is_last: bool) -> Result<(usize, SegmentEnd), Corruption> {
        let mut count = 0;
        let end = scan_segment(buf, is_last, |_, _, _| {
            count += 1;
            Ok(())
        })?;
        Ok((count, end))
    }

    #[test]
    fn scan_distinguishes_clean_end_torn_tail_and_corruption() {
        let a = encode_batch(None, &[entry(1, 1, b"first")]);
        let b = encode_batch(None, &[entry(2, 1, b"second")]);
        let clean = segment(&[a.clone(), b.clone()], 64);
        let (count, end) = count_records(&clean, true).unwrap();
        assert_eq!((count, end.torn), (2, None));
        assert_eq!(end.end as usize, a.len() + b.len());

        // Damage in the last record: torn.
        let mut torn = clean.clone();
        torn[a.len() + HEADER_LEN + 2] ^= 1;
        let (count, end) = count_records(&torn, true).unwrap();
        assert_eq!(count, 1);
        assert_eq!(end.end as usize, a.len());
        // "second" ends the record without padding, so the damage reaches its last byte.
        assert_eq!(end.dirty_end as usize, a.len() + b.len());
        assert!(end.torn.unwrap().contains("payload checksum"));

        // Damage in the first record while a valid one follows: corruption at its offset.
        let mut corrupt = clean.clone();
        corrupt[2] ^= 1;
        let error = count_records(&corrupt, true).unwrap_err();
        assert_eq!(error.offset, 0);
        assert!(error.reason.contains("valid record follows"));

        // A segment that is not the last may end in zeros, but never in other bytes.
        assert_eq!(count_records(&clean, false).unwrap().0, 2);
        assert!(count_records(&torn, false).is_err());
        let exact = segment(&[a.clone(), b.clone()], 0);
        assert_eq!(count_records(&exact, false).unwrap().0, 2);

        // A partial last record is torn.
        let partial = &exact[..exact.len() - 3];
        let (count, end) = count_records(partial, true).unwrap();
        assert_eq!(count, 1);
        assert!(end.torn.is_some());
    }
}
