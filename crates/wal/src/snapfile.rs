//! Snapshot files: naming, atomic writing and verified reading (layout in the crate docs).

use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::WalError;
use crate::record::{Reader, RecordBuilder, RecordType, get_conf_state, put_conf_state};
use bytes::Bytes;
use raft::{LogIndex, Snapshot, SnapshotMetadata, Term};
use std::path::{Path, PathBuf};

/// The first bytes of every snapshot file.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"RKVSNAP\0";
/// The version of the snapshot file layout.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;
const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";

/// `{index:016x}-{term:016x}.snap`: sorting names sorts snapshots by index.
pub(crate) fn snapshot_file_name(index: u64, term: u64) -> String {
    format!("{index:016x}-{term:016x}{SNAPSHOT_SUFFIX}")
}

/// The (index, term) a snapshot file name stands for, if it is one.
pub(crate) fn parse_snapshot_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    if index.len() != 16 || term.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(index, 16).ok()?,
        u64::from_str_radix(term, 16).ok()?,
    ))
}

/// Whether `name` is a snapshot being written (left behind by a crash).
pub(crate) fn is_snapshot_temp_name(name: &str) -> bool {
    name.strip_suffix(TEMP_SUFFIX)
        .is_some_and(|stem| parse_snapshot_file_name(stem).is_some())
}

/// The header of a snapshot file (everything but the data), in the file's own layout.
fn encode_meta(metadata: &SnapshotMetadata, data_len: u64) -> Vec<u8> {
    let mut meta = RecordBuilder::new(RecordType::Snapshot, 64);
    meta.u64(metadata.index.get());
    meta.u64(metadata.term.get());
    put_conf_state(&mut meta, &metadata.conf_state);
    meta.u64(data_len);
    let meta_bytes = meta.into_payload();
    let meta_len = meta_bytes.len();
    let mut out = Vec::with_capacity(16 + meta_len);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(meta_len as u32).to_le_bytes());
    out.extend_from_slice(&meta_bytes);
    out
}

/// Writes `snapshot` atomically into `dir`: temporary file, sync, rename, sync of the directory.
/// Returns the final path.
pub(crate) fn write_snapshot_file<D: Disk>(
    disk: &D,
    dir: &Path,
    snapshot: &Snapshot,
) -> Result<PathBuf, WalError> {
    write_snapshot_file_streaming(disk, dir, &snapshot.metadata, |out| {
        out.write_all(&snapshot.data)
    })
    .map(|(path, _)| path)
}

/// Writes a snapshot file atomically like [`write_snapshot_file`], its data produced by
/// `write_data` in pieces: a large state machine is streamed to disk without ever being held
/// in memory as one buffer. The header's fields have a fixed width, so the data goes right
/// after a header written last, once the data's length is known; the checksum over header and
/// data is combined from the two parts' checksums. Returns the file's path and the data's
/// length.
pub(crate) fn write_snapshot_file_streaming<D: Disk>(
    disk: &D,
    dir: &Path,
    metadata: &SnapshotMetadata,
    write_data: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(PathBuf, u64), WalError> {
    let name = snapshot_file_name(metadata.index.get(), metadata.term.get());
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let file = disk
        .create(&temp)
        .map_err(|e| WalError::io("create", &temp, e))?;
    let data_at = encode_meta(metadata, 0).len() as u64;
    let mut sink = PositionalSink {
        file,
        offset: data_at,
        crc: 0,
        buffer: Vec::with_capacity(STREAM_BUFFER_BYTES),
    };
    let written = write_data(&mut sink)
        .and_then(|()| std::io::Write::flush(&mut sink))
        .and_then(|()| {
            let data_len = sink.offset - data_at;
            let head = encode_meta(metadata, data_len);
            debug_assert_eq!(head.len() as u64, data_at, "the header has a fixed width");
            let crc = crc32c::crc32c_combine(crc32c::crc32c(&head), sink.crc, data_len as usize);
            sink.file.write_at(0, &head)?;
            sink.file.write_at(sink.offset, &crc.to_le_bytes())
        });
    if let Err(e) = written {
        drop(sink);
        let _ = disk.remove(&temp);
        return Err(WalError::io("write", &temp, e));
    }
    let data_len = sink.offset - data_at;
    let mut file = sink.file;
    file.sync().map_err(|e| WalError::io("sync", &temp, e))?;
    drop(file);
    disk.rename(&temp, &path)
        .map_err(|e| WalError::io("rename", &temp, e))?;
    disk.sync_dir(dir)
        .map_err(|e| WalError::io("sync directory", dir, e))?;
    Ok((path, data_len))
}

/// How much streamed snapshot data is gathered before one positional write.
const STREAM_BUFFER_BYTES: usize = 1 << 20;

/// An `io::Write` over positional writes to a file, keeping the checksum of what went through.
struct PositionalSink<F: DiskFile> {
    file: F,
    offset: u64,
    crc: u32,
    buffer: Vec<u8>,
}

impl<F: DiskFile> PositionalSink<F> {
    fn write_through(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_at(self.offset, data)?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.offset += data.len() as u64;
        Ok(())
    }
}

impl<F: DiskFile> std::io::Write for PositionalSink<F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + data.len() > STREAM_BUFFER_BYTES {
            self.flush()?;
        }
        if data.len() >= STREAM_BUFFER_BYTES {
            // Large pieces go straight to the file rather than through the buffer.
            self.write_through(data)?;
        } else {
            self.buffer.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let buffer = std::mem::take(&mut self.buffer);
            let result = self.write_through(&buffer);
            self.buffer = buffer;
            self.buffer.clear();
            result?;
        }
        Ok(())
    }
}

/// Reads and fully verifies a snapshot file (magic, version, layout, checksum).
pub(crate) fn read_snapshot_file<D: Disk>(disk: &D, path: &Path) -> Result<Snapshot, WalError> {
    let file = disk
        .open(path, OpenMode::Read)
        .map_err(|e| WalError::io("open", path, e))?;
    let len = file.len().map_err(|e| WalError::io("stat", path, e))?;
    let mut buf = vec![0u8; len as usize];
    file.read_at(0, &mut buf)
        .map_err(|e| WalError::io("read", path, e))?;
    decode_snapshot(Bytes::from(buf))
        .map_err(|(offset, reason)| WalError::corrupt(path, offset, reason))
}

/// Verifies and decodes a whole snapshot file; the data shares `buf` (no second copy of what
/// may be a large state machine).
fn decode_snapshot(buf: Bytes) -> Result<Snapshot, (u64, String)> {
    if buf.len() < 16 + 4 {
        return Err((0, format!("file of {} bytes is too short", buf.len())));
    }
    if &buf[0..8] != SNAPSHOT_MAGIC {
        return Err((0, "not a snapshot file (bad magic)".into()));
    }
    let body_len = buf.len() - 4;
    let stored = u32::from_le_bytes(buf[body_len..].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&buf[..body_len]);
    if stored != computed {
        return Err((
            body_len as u64,
            format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err((8, format!("unsupported snapshot version {version}")));
    }
    let meta_len = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    let meta_end = 16usize
        .checked_add(meta_len)
        .filter(|&end| end <= body_len)
        .ok_or((12, format!("metadata length {meta_len} exceeds the file")))?;
    let mut input = Reader::new(&buf[16..meta_end]);
    let parse = |input: &mut Reader<'_>| -> Result<(SnapshotMetadata, u64), String> {
        let index = input.u64()?;
        let term = input.u64()?;
        let conf_state = get_conf_state(input)?;
        let data_len = input.u64()?;
        input.finish()?;
        Ok((
            SnapshotMetadata {
                index: LogIndex(index),
                term: Term(term),
                conf_state,
            },
            data_len,
        ))
    };
    let (metadata, data_len) = parse(&mut input).map_err(|reason| (16, reason))?;
    if data_len != (body_len - meta_end) as u64 {
        return Err((
            meta_end as u64,
            format!(
                "data length {data_len} does not match the file ({} bytes)",
                body_len - meta_end
            ),
        ));
    }
    Ok(Snapshot {
        metadata,
        data: buf.slice(meta_end..body_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimDisk;
    use raft::{ConfState, NodeId};

    #[test]
    fn names_roundtrip_and_sort_by_index() {
        let name = snapshot_file_name(0x10, 3);
        assert_eq!(parse_snapshot_file_name(&name), Some((0x10, 3)));
        assert!(snapshot_file_name(9, 100) < snapshot_file_name(10, 1));
        assert!(is_snapshot_temp_name(&format!("{name}.tmp")));
        assert_eq!(parse_snapshot_file_name("0001.wal"), None);
    }

    #[test]
    fn write_read_and_detect_every_flipped_byte() {
        let disk = SimDisk::new();
        let dir = PathBuf::from("/s");
        disk.create_dir_all(&dir).unwrap();
        let snapshot = Snapshot {
            metadata: SnapshotMetadata {
                index: LogIndex(7),
                term: Term(2),
                conf_state: ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
            },
            data: Bytes::from_static(b"state machine bytes"),
        };
        let path = write_snapshot_file(&disk, &dir, &snapshot).unwrap();
        assert_eq!(read_snapshot_file(&disk, &path).unwrap(), snapshot);
        let len = disk.read_file(&path).unwrap().len() as u64;
        for offset in 0..len {
            disk.flip_bit(&path, offset, 3).unwrap();
            let error = read_snapshot_file(&disk, &path).unwrap_err();
            assert!(error.is_corruption(), "offset {offset}: {error}");
            disk.flip_bit(&path, offset, 3).unwrap();
        }
        disk.truncate_file(&path, len - 1).unwrap();
        assert!(
            read_snapshot_file(&disk, &path)
                .unwrap_err()
                .is_corruption()
        );
    }
}
