//! The replicated state machine of a raftkv member: etcd's MVCC keyspace plus the member
//! table that etcd's Cluster API reports.
//!
//! Everything here is deterministic (members apply the same entries in the same order and
//! must end in the same state) and free of I/O, so it is tested without a cluster. Log entries
//! come in two formats, told apart by their first byte: an encoded [`MvccCommand`] (a client's
//! KV request) or a member command (a member publishing its name and URLs, or one registered by
//! `MemberAdd` before the membership change that admits it).
//!
//! Which members exist is decided by the Raft configuration, not by this table: the table only
//! holds what etcd shows about them (name, peer and client URLs). A member that has not yet
//! published its attributes is listed by etcd as "unstarted"; so it is here.
//!
//! The one exception to "no I/O": a serving member keeps retained values in a value file
//! ([`FileValueLog`], see [`EtcdMachine::with_value_file`]) instead of the heap. That file is a
//! cache (recreated at every start and restore); it changes nothing the state machine answers.

mod values;

pub use values::{FileValueLog, ValueFileAt, ValueFileSource};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kv::mvcc::{
    DEFAULT_VALUE_LOG_THRESHOLD, MvccCommand, MvccError, MvccRequest, MvccResponse, MvccStore,
    RangeRequest,
};
use raft::{LogIndex, Term};
use std::collections::BTreeMap;
use std::path::PathBuf;
use wal::{Disk, StdDisk};
use watch::{SharedHub, StreamId, UnknownStream, WatchFaults, WatchLimits, WatchRequest};

/// The value file is rewritten (without its garbage) after a compaction once the garbage is
/// at least this big and at least as big as the live values, so the file stays within about
/// twice the live values plus this, and each byte appended is copied at most about once more.
const REWRITE_MIN_GARBAGE: u64 = 64 * 1024 * 1024;

/// First byte of an encoded [`MemberCommand`]; an [`MvccCommand`] starts with 0x02.
const MEMBER_FORMAT_V1: u8 = 0x20;
/// First bytes of a snapshot of this state machine.
const SNAPSHOT_MAGIC: &[u8; 4] = b"RKV1";

/// Bounds on what a member may publish about itself: names and URLs come from configuration
/// or from clients, and the table is replicated and snapshotted, so it must stay small.
pub const MAX_NAME_BYTES: usize = 256;
/// The most URLs one member may list per kind.
pub const MAX_URLS: usize = 16;
/// The longest URL accepted.
pub const MAX_URL_BYTES: usize = 1024;

/// What etcd's `MemberList` shows about one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberAttributes {
    /// Its `--name`; empty until the member published it ("unstarted").
    pub name: String,
    /// Where its peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until it published them.
    pub client_urls: Vec<String>,
}

/// A change to the member table. Fields left `None` keep their current value, so a member
/// publishing its name does not erase peer URLs that `MemberUpdate` set, and vice versa.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberCommand {
    /// Set some of a member's attributes (creating its row if needed).
    Publish {
        /// The member.
        id: u64,
        /// Its new name, if it changes.
        name: Option<String>,
        /// Its new peer URLs, if they change.
        peer_urls: Option<Vec<String>>,
        /// Its new client URLs, if they change.
        client_urls: Option<Vec<String>>,
    },
    /// Drop a removed member's row.
    Forget {
        /// The member.
        id: u64,
    },
}

/// One log entry's command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineCommand {
    /// A client's KV request.
    Kv(MvccCommand),
    /// A change to the member table.
    Member(MemberCommand),
}

/// A read that does not go through the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineQuery {
    /// A Range at the member's applied state.
    Range(RangeRequest),
    /// The member table.
    Members,
    /// Revision, size and key count (for Status and response headers).
    Summary,
    /// etcd's HashKV at a revision (0 = current).
    HashKv(i64),
    /// The whole keyspace as snapshot bytes (for `Maintenance.Snapshot`).
    Snapshot,
    /// A watch stream's request, applied at this exact point of the applied state (see the
    /// `watch` crate).
    Watch {
        /// The stream, opened through [`EtcdMachine::watches`].
        stream: StreamId,
        /// What it asks.
        request: WatchRequest,
    },
}

/// Figures about the keyspace that Status and headers report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The current revision.
    pub revision: i64,
    /// The last compacted revision.
    pub compact_revision: i64,
    /// An estimate of the data size in bytes (etcd's `dbSize`).
    pub size_bytes: u64,
    /// The index of the last applied entry.
    pub applied: u64,
    /// This member's value file size in bytes, garbage included (0 without a file). Local,
    /// not replicated: like etcd's `dbSize` it differs between members.
    pub value_file_bytes: u64,
    /// The bytes of that file retained revisions still reference (like etcd's
    /// `dbSizeInUse`); the rest is garbage left by compaction, dropped when the file is
    /// rewritten (after a compaction that leaves enough of it).
    pub value_file_live_bytes: u64,
}

/// What the state machine answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineResponse {
    /// The outcome of a KV request.
    Kv(Result<MvccResponse, MvccError>),
    /// The outcome of a member command.
    Member(Result<(), String>),
    /// The member table.
    Members(BTreeMap<u64, MemberAttributes>),
    /// Keyspace figures.
    Summary(Summary),
    /// A HashKV answer: (hash, compact revision).
    Hash(Result<(u32, i64), MvccError>),
    /// Snapshot bytes of the keyspace.
    Snapshot(Bytes),
    /// A watch request was applied; its answers wait in the stream's queue.
    Watch(Result<(), UnknownStream>),
    /// The entry could not be decoded; nothing was applied.
    Malformed(String),
}

/// Deliberately broken rules of the state machine, for showing that the simulator's checkers
/// catch them. All off unless a test turns one on; a serving member never does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineFaults {
    /// A put at a log index that is a multiple of this (0: never) first takes a revision
    /// that no client sees, as an apply that skipped a revision would. It depends on the log
    /// index only, so every member skips the same revisions and they stay identical: only
    /// the revisions clients are told of give it away.
    pub skip_revision_every: u64,
    /// Broken watch delivery in this member's hub (see [`watch::WatchFaults`]); local, so
    /// members stay identical and only what watchers receive gives it away.
    pub watch: WatchFaults,
}

/// The key the `skip_revision_every` fault writes, outside the simulator's keys.
const SKIPPED_REVISION_KEY: &[u8] = b"\xff\xffskipped-revision";

/// etcd's keyspace plus its member table.
#[derive(Debug, Default)]
pub struct EtcdMachine {
    mvcc: MvccStore,
    members: BTreeMap<u64, MemberAttributes>,
    applied: u64,
    /// Where the keyspace's value file is, if values are kept in one.
    value_file: Option<Box<dyn ValueFileSource>>,
    /// Broken rules (tests of the checkers only).
    faults: MachineFaults,
    /// This member's watch streams: told of every write as it is applied (local, not
    /// replicated state).
    watches: SharedHub,
}

/// An [`EtcdMachine`] frozen for a snapshot: its member table already encoded, its keyspace
/// copied.
struct FrozenMachine {
    header: Bytes,
    mvcc: MvccStore,
}

impl node::FrozenState for FrozenMachine {
    fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.header)?;
        self.mvcc.write_snapshot(out)
    }
}

impl EtcdMachine {
    /// The part of a snapshot before the keyspace: magic, applied index and member table.
    fn snapshot_header(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + 64 * self.members.len());
        out.put_slice(SNAPSHOT_MAGIC);
        out.put_u64(self.applied);
        out.put_u32(self.members.len() as u32);
        for (&id, row) in &self.members {
            out.put_u64(id);
            put_str(&mut out, &row.name);
            put_urls(&mut out, &row.peer_urls);
            put_urls(&mut out, &row.client_urls);
        }
        out.freeze()
    }

    /// An empty state machine keeping every value in memory (tests, tools).
    pub fn new() -> EtcdMachine {
        EtcdMachine::default()
    }

    /// An empty state machine keeping values of at least
    /// [`kv::mvcc::DEFAULT_VALUE_LOG_THRESHOLD`] bytes in a value file at `path` (a serving
    /// member uses `DATA_DIR/values`) instead of the heap, so memory grows with keys and
    /// revisions, not with value sizes. The file is created empty, replacing any left by an
    /// earlier run: the state is rebuilt from the snapshot and WAL, which re-appends values.
    ///
    /// A later failure to read or write the file panics the applying task (a local disk
    /// failure, like a failed WAL write), so the member stops instead of answering wrongly.
    pub fn with_value_file(path: impl Into<PathBuf>) -> std::io::Result<EtcdMachine> {
        EtcdMachine::with_value_file_on(StdDisk, path)
    }

    /// [`EtcdMachine::with_value_file`] on any disk: the simulator keeps the value file on
    /// its simulated disk, so every seed runs the code a serving member runs.
    pub fn with_value_file_on<D>(disk: D, path: impl Into<PathBuf>) -> std::io::Result<EtcdMachine>
    where
        D: Disk + Clone + std::fmt::Debug,
        D::File: Sync,
    {
        let source = ValueFileAt {
            disk,
            path: path.into(),
        };
        let log = source.create()?;
        Ok(EtcdMachine {
            mvcc: MvccStore::new().with_value_log(log),
            value_file: Some(Box::new(source)),
            ..EtcdMachine::default()
        })
    }

    /// Rewrites the value file with only the live values when compaction left at least
    /// `min_garbage` bytes of garbage, and at least as much garbage as live values (the
    /// automatic part of what etcd's defragment does; `Maintenance.Defragment` rewrites
    /// whenever there is any garbage, see [`EtcdMachine::rewrite_value_file`]).
    fn maybe_rewrite_value_file(&mut self, min_garbage: u64) {
        let Some(log) = self.mvcc.value_log() else {
            return;
        };
        let live = self.mvcc.value_log_live_bytes();
        let garbage = log.size_bytes().saturating_sub(live);
        if garbage < min_garbage || garbage < live {
            return;
        }
        self.rewrite_value_file();
    }

    /// Rewrites the value file with only the live values, if it holds any garbage. Blocks
    /// applying for a read and an append per live value.
    ///
    /// The new file replaces the old at the same path; the old one is unlinked, and a frozen
    /// copy still writing a snapshot reads it through its open handle (while such a copy
    /// exists, the rewrite also copies the key histories it shares). If the new file cannot
    /// be created the old one stays in use.
    fn rewrite_value_file(&mut self) {
        let (Some(source), Some(log)) = (&self.value_file, self.mvcc.value_log()) else {
            return;
        };
        let live = self.mvcc.value_log_live_bytes();
        let garbage = log.size_bytes().saturating_sub(live);
        if garbage == 0 {
            return;
        }
        match source.create() {
            Ok(fresh) => {
                self.mvcc
                    .set_value_log(Some(fresh), DEFAULT_VALUE_LOG_THRESHOLD);
                tracing::info!(live, garbage, "rewrote the value file without its garbage");
            }
            Err(error) => {
                tracing::warn!(%error, "cannot rewrite the value file; keeping the old one");
            }
        }
    }

    /// Breaks the rules `faults` names (tests of the checkers only).
    pub fn set_faults(&mut self, faults: MachineFaults) {
        self.faults = faults;
        self.watches.lock().set_faults(faults.watch);
    }

    /// An apply that skips a revision (see [`MachineFaults::skip_revision_every`]).
    fn maybe_skip_revision(&mut self, index: LogIndex, request: &MvccRequest) {
        let every = self.faults.skip_revision_every;
        if every > 0 && index.get().is_multiple_of(every) && matches!(request, MvccRequest::Put(_))
        {
            let hidden = kv::mvcc::PutRequest::new(SKIPPED_REVISION_KEY, Bytes::new());
            let _ = self.mvcc.apply_command(MvccCommand {
                client_id: 0,
                sequence: 0,
                request: MvccRequest::Put(hidden),
            });
        }
    }

    /// The keyspace (for tests and local reads).
    pub fn mvcc(&self) -> &MvccStore {
        &self.mvcc
    }

    /// The member table.
    pub fn members(&self) -> &BTreeMap<u64, MemberAttributes> {
        &self.members
    }

    /// This member's watch hub: streams are opened, drained and closed through it from any
    /// thread; what must see the applied state goes through [`MachineQuery::Watch`].
    pub fn watches(&self) -> SharedHub {
        self.watches.clone()
    }

    /// Replaces the watch hub's limits (before any stream is opened).
    pub fn set_watch_limits(&mut self, limits: WatchLimits) {
        self.watches = SharedHub::new(limits);
        self.watches.lock().set_faults(self.faults.watch);
    }

    /// A digest of everything replicated (the member table, the applied index, the keyspace
    /// with its sessions), for comparing members cheaply in tests and the simulator. Where
    /// each member keeps its values (its own value file's layout) does not enter it. Costs a
    /// full snapshot encoding.
    pub fn digest(&self) -> u64 {
        self.snapshot_header()
            .iter()
            .fold(self.mvcc.digest(), |hash: u64, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }

    fn apply_member(&mut self, command: MemberCommand) -> Result<(), String> {
        match command {
            MemberCommand::Publish {
                id,
                name,
                peer_urls,
                client_urls,
            } => {
                if id == 0 {
                    return Err("member id 0 is reserved".into());
                }
                let row = self.members.entry(id).or_default();
                if let Some(name) = name {
                    row.name = name;
                }
                if let Some(urls) = peer_urls {
                    row.peer_urls = urls;
                }
                if let Some(urls) = client_urls {
                    row.client_urls = urls;
                }
                Ok(())
            }
            MemberCommand::Forget { id } => {
                self.members.remove(&id);
                Ok(())
            }
        }
    }
}

impl node::StateMachine for EtcdMachine {
    type Response = MachineResponse;
    type Query = MachineQuery;

    fn apply(&mut self, index: LogIndex, _term: Term, data: &Bytes) -> MachineResponse {
        self.applied = index.get();
        match MachineCommand::decode(data) {
            Ok(MachineCommand::Kv(command)) => {
                let compaction = matches!(command.request, MvccRequest::Compact(_));
                self.maybe_skip_revision(index, &command.request);
                let watched = self.watches.is_active();
                if watched != self.mvcc.tracks_changes() {
                    self.mvcc.set_track_changes(watched);
                }
                let response = self.mvcc.apply_command(command);
                if watched {
                    self.watches.lock().notify(&self.mvcc);
                }
                if compaction {
                    self.maybe_rewrite_value_file(REWRITE_MIN_GARBAGE);
                }
                MachineResponse::Kv(response)
            }
            Ok(MachineCommand::Member(command)) => {
                MachineResponse::Member(self.apply_member(command))
            }
            Err(reason) => MachineResponse::Malformed(reason),
        }
    }

    fn query(&self, query: &MachineQuery) -> MachineResponse {
        match query {
            MachineQuery::Range(request) => {
                MachineResponse::Kv(self.mvcc.range(request).map(MvccResponse::Range))
            }
            MachineQuery::Members => MachineResponse::Members(self.members.clone()),
            MachineQuery::Summary => MachineResponse::Summary(Summary {
                revision: self.mvcc.current_revision(),
                compact_revision: self.mvcc.compact_revision(),
                size_bytes: self.mvcc.approx_size_bytes(),
                applied: self.applied,
                value_file_bytes: self.mvcc.value_log().map_or(0, |log| log.size_bytes()),
                value_file_live_bytes: self.mvcc.value_log_live_bytes(),
            }),
            MachineQuery::HashKv(revision) => MachineResponse::Hash(self.mvcc.hash_kv(*revision)),
            MachineQuery::Snapshot => MachineResponse::Snapshot(node::StateMachine::snapshot(self)),
            MachineQuery::Watch { stream, request } => MachineResponse::Watch(
                self.watches
                    .lock()
                    .request(*stream, request.clone(), &self.mvcc),
            ),
        }
    }

    fn snapshot(&self) -> Bytes {
        let header = self.snapshot_header();
        // One allocation of the exact size: the keyspace can be hundreds of megabytes.
        let mut out = Vec::with_capacity(header.len() + self.mvcc.written_snapshot_size());
        out.extend_from_slice(&header);
        self.mvcc
            .write_snapshot(&mut out)
            .expect("writing into memory cannot fail");
        Bytes::from(out)
    }

    /// A copy of the state (the keyspace's values are shared, not copied) that a snapshot
    /// thread serializes while this machine goes on applying entries.
    fn freeze(&self) -> Box<dyn node::FrozenState> {
        Box::new(FrozenMachine {
            header: self.snapshot_header(),
            mvcc: self.mvcc.clone(),
        })
    }

    /// etcd's defragmentation reclaims the space compaction freed in its bbolt file; ours
    /// rewrites the value file with only the values retained revisions still reference.
    fn defragment(&mut self) {
        self.rewrite_value_file();
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), String> {
        let mut reader = Reader(data.clone());
        if reader.take(SNAPSHOT_MAGIC.len())?.as_ref() != SNAPSHOT_MAGIC {
            return Err("not a raftkv state machine snapshot".into());
        }
        let applied = reader.u64()?;
        let count = reader.u32()?;
        let mut members = BTreeMap::new();
        for _ in 0..count {
            let id = reader.u64()?;
            let row = MemberAttributes {
                name: reader.str(MAX_NAME_BYTES)?,
                peer_urls: reader.urls()?,
                client_urls: reader.urls()?,
            };
            members.insert(id, row);
        }
        // Keep this member's session bound (configuration, not state).
        let mut mvcc = MvccStore::with_max_sessions(self.mvcc.max_sessions());
        if let Some(source) = &self.value_file {
            // A fresh file, so the replaced state's values do not stay as garbage. The old
            // file is unlinked, not truncated: a snapshot being written from a frozen copy of
            // the old state still reads it through its open handle.
            let log = source.create().unwrap_or_else(|error| {
                panic!("restoring a snapshot: {error}; stopping (a local disk failure)")
            });
            mvcc = mvcc.with_value_log(log);
        }
        mvcc.restore_in_place(&reader.0)
            .map_err(|error| error.to_string())?;
        let previous_revision = self.mvcc.current_revision();
        *self = EtcdMachine {
            mvcc,
            members,
            applied,
            value_file: self.value_file.take(),
            faults: self.faults,
            watches: self.watches.clone(),
        };
        // Watchers read what they have not been sent from the new state's history (or learn
        // that it was compacted away).
        self.watches
            .lock()
            .restored(previous_revision, self.mvcc.current_revision());
        Ok(())
    }
}

impl MachineCommand {
    /// The bytes to propose.
    pub fn encode(&self) -> Bytes {
        match self {
            MachineCommand::Kv(command) => command.encode(),
            MachineCommand::Member(command) => command.encode(),
        }
    }

    /// Parses a log entry; never panics on hostile input.
    pub fn decode(data: &Bytes) -> Result<MachineCommand, String> {
        match data.first() {
            Some(&MEMBER_FORMAT_V1) => MemberCommand::decode(data).map(MachineCommand::Member),
            Some(_) => MvccCommand::decode(data)
                .map(MachineCommand::Kv)
                .map_err(|error| error.to_string()),
            None => Err("empty log entry".into()),
        }
    }
}

impl MemberCommand {
    /// The bytes to propose.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        out.put_u8(MEMBER_FORMAT_V1);
        match self {
            MemberCommand::Publish {
                id,
                name,
                peer_urls,
                client_urls,
            } => {
                out.put_u8(1);
                out.put_u64(*id);
                match name {
                    Some(name) => {
                        out.put_u8(1);
                        put_str(&mut out, name);
                    }
                    None => out.put_u8(0),
                }
                for urls in [peer_urls, client_urls] {
                    match urls {
                        Some(urls) => {
                            out.put_u8(1);
                            put_urls(&mut out, urls);
                        }
                        None => out.put_u8(0),
                    }
                }
            }
            MemberCommand::Forget { id } => {
                out.put_u8(2);
                out.put_u64(*id);
            }
        }
        out.freeze()
    }

    /// Parses bytes made by [`MemberCommand::encode`]; never panics.
    pub fn decode(data: &Bytes) -> Result<MemberCommand, String> {
        let mut reader = Reader(data.clone());
        if reader.u8()? != MEMBER_FORMAT_V1 {
            return Err("unknown member command format".into());
        }
        let command = match reader.u8()? {
            1 => {
                let id = reader.u64()?;
                let name = match reader.flag()? {
                    true => Some(reader.str(MAX_NAME_BYTES)?),
                    false => None,
                };
                let peer_urls = match reader.flag()? {
                    true => Some(reader.urls()?),
                    false => None,
                };
                let client_urls = match reader.flag()? {
                    true => Some(reader.urls()?),
                    false => None,
                };
                MemberCommand::Publish {
                    id,
                    name,
                    peer_urls,
                    client_urls,
                }
            }
            2 => MemberCommand::Forget { id: reader.u64()? },
            _ => return Err("unknown member command".into()),
        };
        if !reader.0.is_empty() {
            return Err("trailing bytes after a member command".into());
        }
        Ok(command)
    }
}

fn put_str(out: &mut BytesMut, value: &str) {
    out.put_u32(value.len() as u32);
    out.put_slice(value.as_bytes());
}

fn put_urls(out: &mut BytesMut, urls: &[String]) {
    out.put_u32(urls.len() as u32);
    for url in urls {
        put_str(out, url);
    }
}

/// A bounds-checked reader over hostile bytes.
struct Reader(Bytes);

impl Reader {
    fn take(&mut self, len: usize) -> Result<Bytes, String> {
        if self.0.len() < len {
            return Err("truncated".into());
        }
        Ok(self.0.split_to(len))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?.get_u8())
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bad flag".into()),
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(self.take(4)?.get_u32())
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(self.take(8)?.get_u64())
    }

    fn str(&mut self, max: usize) -> Result<String, String> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(format!("string of {len} bytes exceeds {max}"));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_owned())
    }

    fn urls(&mut self) -> Result<Vec<String>, String> {
        let count = self.u32()? as usize;
        if count > MAX_URLS {
            return Err(format!("{count} URLs exceed {MAX_URLS}"));
        }
        (0..count).map(|_| self.str(MAX_URL_BYTES)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv::mvcc::PutRequest;
    use node::StateMachine;
    use proptest::prelude::*;

    fn put(client_id: u64, sequence: u64, key: &str, value: &str) -> Bytes {
        MachineCommand::Kv(MvccCommand {
            client_id,
            sequence,
            request: MvccRequest::Put(PutRequest::new(key.to_owned(), value.to_owned())),
        })
        .encode()
    }

    fn publish(id: u64, name: Option<&str>, peer: Option<&str>, client: Option<&str>) -> Bytes {
        MachineCommand::Member(MemberCommand::Publish {
            id,
            name: name.map(str::to_owned),
            peer_urls: peer.map(|url| vec![url.to_owned()]),
            client_urls: client.map(|url| vec![url.to_owned()]),
        })
        .encode()
    }

    fn apply(machine: &mut EtcdMachine, index: u64, data: Bytes) -> MachineResponse {
        machine.apply(LogIndex(index), Term(1), &data)
    }

    #[test]
    fn kv_commands_apply_once_per_session_sequence() {
        let mut machine = EtcdMachine::new();
        let first = apply(&mut machine, 1, put(7, 1, "k", "v"));
        let retry = apply(&mut machine, 2, put(7, 1, "k", "v"));
        assert_eq!(first, retry);
        assert_eq!(machine.mvcc().current_revision(), 2);
        let MachineResponse::Summary(summary) = machine.query(&MachineQuery::Summary) else {
            panic!("summary");
        };
        assert_eq!(summary.applied, 2);
        assert_eq!(summary.revision, 2);
    }

    #[test]
    fn publish_merges_attributes_and_forget_drops_them() {
        let mut machine = EtcdMachine::new();
        let peer = "http://127.0.0.1:2380";
        let client = "http://127.0.0.1:2379";
        assert_eq!(
            apply(&mut machine, 1, publish(9, None, Some(peer), None)),
            MachineResponse::Member(Ok(()))
        );
        apply(&mut machine, 2, publish(9, Some("a"), None, Some(client)));
        let row = &machine.members()[&9];
        assert_eq!(row.name, "a");
        assert_eq!(row.peer_urls, [peer]);
        assert_eq!(row.client_urls, [client]);
        apply(
            &mut machine,
            3,
            MachineCommand::Member(MemberCommand::Forget { id: 9 }).encode(),
        );
        assert!(machine.members().is_empty());
        assert_eq!(
            apply(&mut machine, 4, publish(0, Some("x"), None, None)),
            MachineResponse::Member(Err("member id 0 is reserved".into()))
        );
    }

    #[test]
    fn snapshot_restores_keyspace_members_and_applied_index() {
        let mut machine = EtcdMachine::new();
        apply(
            &mut machine,
            1,
            publish(3, Some("c"), Some("http://h:1"), None),
        );
        apply(&mut machine, 2, put(0, 0, "a", "1"));
        apply(&mut machine, 3, put(5, 1, "b", "2"));
        let snapshot = machine.snapshot();
        let mut restored = EtcdMachine::new();
        restored.restore(&snapshot).expect("restore");
        assert_eq!(restored.members(), machine.members());
        assert_eq!(restored.mvcc().digest(), machine.mvcc().digest());
        assert_eq!(
            restored.query(&MachineQuery::Summary),
            machine.query(&MachineQuery::Summary)
        );
        // The session survived: the retry is answered, not applied.
        apply(&mut restored, 4, put(5, 1, "b", "2"));
        assert_eq!(restored.mvcc().current_revision(), 3);
    }

    /// What a snapshot restores to, in the canonical form (values inline), which a machine
    /// without a value file writes.
    fn canonical(snapshot: impl Into<Bytes>) -> Bytes {
        let mut plain = EtcdMachine::new();
        plain.restore(&snapshot.into()).expect("restore");
        plain.snapshot()
    }

    /// A frozen copy writes the snapshot of the moment it was frozen, whatever the machine
    /// applied since.
    #[test]
    fn a_frozen_machine_writes_the_snapshot_of_its_moment() {
        let mut machine = EtcdMachine::new();
        apply(
            &mut machine,
            1,
            publish(3, Some("c"), Some("http://h:1"), None),
        );
        apply(&mut machine, 2, put(0, 0, "a", "1"));
        let want = machine.snapshot();
        let frozen = machine.freeze();
        apply(&mut machine, 3, put(5, 1, "b", "2"));
        apply(
            &mut machine,
            4,
            publish(4, Some("d"), Some("http://h:2"), None),
        );
        let mut written = Vec::new();
        frozen.write_to(&mut written).expect("write");
        assert_eq!(written, want);
        assert_ne!(machine.snapshot(), want);
    }

    /// A machine keeping values in a value file answers, snapshots, freezes and restores
    /// exactly like one keeping them in memory, and its file holds the long values. Its
    /// snapshots copy the file as their value section, so they are compared by what they
    /// restore to ([`canonical`]).
    #[test]
    fn a_value_file_changes_nothing_observable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("values");
        let mut filed = EtcdMachine::with_value_file(&path).expect("value file");
        let mut plain = EtcdMachine::new();
        let long = |i: u64| format!("{i:0>300}");
        let mut frozen = None;
        for i in 1..=600u64 {
            let data = if i % 7 == 0 {
                put(i % 5, i, &format!("k{}", i % 50), "short")
            } else {
                put(i % 5, i, &format!("k{}", i % 50), &long(i))
            };
            assert_eq!(
                apply(&mut filed, i, data.clone()),
                apply(&mut plain, i, data)
            );
            if i == 300 {
                frozen = Some((filed.freeze(), plain.snapshot()));
            }
        }
        // Compaction leaves the values of 500 overwritten revisions as garbage in the file.
        let compact = MachineCommand::Kv(MvccCommand {
            client_id: 0,
            sequence: 0,
            request: MvccRequest::Compact(kv::mvcc::CompactionRequest {
                revision: 600,
                physical: false,
            }),
        })
        .encode();
        assert_eq!(
            apply(&mut filed, 601, compact.clone()),
            apply(&mut plain, 601, compact)
        );
        let (frozen, want) = frozen.expect("frozen");
        let mut written = Vec::new();
        frozen.write_to(&mut written).expect("write");
        assert_eq!(canonical(written), want);
        let snapshot = plain.snapshot();
        assert_eq!(canonical(filed.snapshot()), snapshot);
        let range = MachineQuery::Range(RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            ..RangeRequest::default()
        });
        assert_eq!(filed.query(&range), plain.query(&range));
        assert_eq!(
            filed.query(&MachineQuery::HashKv(0)),
            plain.query(&MachineQuery::HashKv(0))
        );
        let MachineResponse::Summary(summary) = filed.query(&MachineQuery::Summary) else {
            panic!("summary");
        };
        // About 515 long values appended, at most one per key (50) still live.
        assert!(summary.value_file_bytes >= 500 * 300);
        assert!((1..=50 * 300).contains(&summary.value_file_live_bytes));

        // Automatic rewriting waits for more garbage than this; defragmenting rewrites now,
        // keeping only the live values; the frozen copy still reads the old file.
        filed.maybe_rewrite_value_file(REWRITE_MIN_GARBAGE);
        let MachineResponse::Summary(unchanged) = filed.query(&MachineQuery::Summary) else {
            panic!("summary");
        };
        assert_eq!(unchanged, summary);
        node::StateMachine::defragment(&mut filed);
        let MachineResponse::Summary(rewritten) = filed.query(&MachineQuery::Summary) else {
            panic!("summary");
        };
        assert_eq!(rewritten.value_file_bytes, summary.value_file_live_bytes);
        assert_eq!(
            rewritten.value_file_live_bytes,
            summary.value_file_live_bytes
        );
        assert_eq!(canonical(filed.snapshot()), snapshot);
        let mut written = Vec::new();
        frozen.write_to(&mut written).expect("write");
        assert_eq!(canonical(written), want);
        // Before the next restore, garbage again.
        apply(&mut filed, 602, put(9, 1, "k1", &long(602)));
        apply(&mut plain, 602, put(9, 1, "k1", &long(602)));
        let snapshot = plain.snapshot();
        let MachineResponse::Summary(summary) = filed.query(&MachineQuery::Summary) else {
            panic!("summary");
        };

        // Restoring starts a fresh file holding only the snapshot's values; the frozen copy
        // of the old state still reads the old one.
        let before = summary.value_file_bytes;
        filed.restore(&snapshot).expect("restore");
        let MachineResponse::Summary(after) = filed.query(&MachineQuery::Summary) else {
            panic!("summary");
        };
        assert_eq!(after.value_file_bytes, after.value_file_live_bytes);
        assert!(after.value_file_bytes <= before);
        assert_eq!(canonical(filed.snapshot()), snapshot);
        // A snapshot with a value section (what a member with a value file writes) restores
        // into a fresh file too, holding that section.
        let sectioned = filed.snapshot();
        filed.restore(&sectioned).expect("restore");
        assert_eq!(canonical(filed.snapshot()), snapshot);
        let MachineResponse::Summary(again) = filed.query(&MachineQuery::Summary) else {
            panic!("summary");
        };
        assert_eq!(again, after);
        let mut again = Vec::new();
        frozen.write_to(&mut again).expect("write");
        assert_eq!(canonical(again), want);
        apply(&mut filed, 603, put(9, 2, "new", &long(603)));
        apply(&mut plain, 603, put(9, 2, "new", &long(603)));
        assert_eq!(canonical(filed.snapshot()), plain.snapshot());
    }

    #[test]
    fn malformed_entries_change_nothing() {
        let mut machine = EtcdMachine::new();
        for data in [
            Bytes::new(),
            Bytes::from_static(&[MEMBER_FORMAT_V1]),
            Bytes::from_static(&[MEMBER_FORMAT_V1, 9]),
            Bytes::from_static(&[0xff, 1, 2]),
        ] {
            assert!(matches!(
                apply(&mut machine, 1, data),
                MachineResponse::Malformed(_)
            ));
        }
        assert!(machine.members().is_empty());
        assert_eq!(machine.mvcc().current_revision(), 1);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let data = Bytes::from(data);
            let _ = MachineCommand::decode(&data);
            let mut machine = EtcdMachine::new();
            let _ = machine.restore(&data);
            let mut prefixed = BytesMut::from(&SNAPSHOT_MAGIC[..]);
            prefixed.put_slice(&data);
            let _ = machine.restore(&prefixed.freeze());
        }

        #[test]
        fn member_commands_round_trip(
            id in 1u64..,
            name in proptest::option::of("[a-z]{0,8}"),
            urls in proptest::option::of(proptest::collection::vec("[a-z:/0-9.]{0,20}", 0..4)),
        ) {
            let command = MemberCommand::Publish { id, name, peer_urls: urls.clone(), client_urls: urls };
            prop_assert_eq!(MemberCommand::decode(&command.encode()), Ok(command));
        }
    }
}
