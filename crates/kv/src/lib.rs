//! A deterministic key-value state machine: put, get, compare-and-set, delete, with exactly-once
//! client sessions.
//!
//! Every command is applied through the replicated log, so every member computes the same
//! responses from the same log. A command carries `(client_id, sequence)`: a client that retries
//! after a timeout or a redirect sends the same pair again, and the store answers the retry from
//! its session table instead of applying the command twice (RELIABILITY.md, bug 13).
//!
//! The wire encoding is small and hand-written; decoding never panics on hostile bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use std::fmt;
pub mod mvcc;

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Read `key`. Going through the log makes the read linearizable.
    Get {
        /// The key.
        key: Bytes,
    },
    /// Set `key` to `new` only if it currently holds `expected`.
    CompareAndSet {
        /// The key.
        key: Bytes,
        /// The value the key must hold for the swap to happen.
        expected: Bytes,
        /// The value to set.
        new: Bytes,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
}

/// A command from a client session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Identifies the client's session; `0` means "no session" (no deduplication).
    pub client_id: u64,
    /// Increases by one per new command of the session; a retry reuses the number.
    pub sequence: u64,
    /// What to do.
    pub command: Command,
}

/// The outcome of a command, identical on every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A put or delete took effect.
    Done,
    /// The value read (`None` if absent).
    Value(Option<Bytes>),
    /// A compare-and-set: whether it swapped, and the value it found.
    CompareAndSet {
        /// Whether the value was `expected` and was replaced.
        succeeded: bool,
        /// The value found before the operation.
        found: Option<Bytes>,
    },
    /// The request's sequence number is older than the session's last one: the client has moved
    /// on, so this copy is a stale duplicate and was not applied.
    StaleSequence,
    /// The entry could not be decoded; it was not applied.
    Malformed(String),
}

/// Why bytes are not a valid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed request: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

const TAG_PUT: u8 = 1;
const TAG_GET: u8 = 2;
const TAG_CAS: u8 = 3;
const TAG_DELETE: u8 = 4;

impl Request {
    /// The bytes to propose.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32 + self.payload_len());
        out.put_u64_le(self.client_id);
        out.put_u64_le(self.sequence);
        match &self.command {
            Command::Put { key, value } => {
                out.put_u8(TAG_PUT);
                put_field(&mut out, key);
                put_field(&mut out, value);
            }
            Command::Get { key } => {
                out.put_u8(TAG_GET);
                put_field(&mut out, key);
            }
            Command::CompareAndSet { key, expected, new } => {
                out.put_u8(TAG_CAS);
                put_field(&mut out, key);
                put_field(&mut out, expected);
                put_field(&mut out, new);
            }
            Command::Delete { key } => {
                out.put_u8(TAG_DELETE);
                put_field(&mut out, key);
            }
        }
        out.freeze()
    }

    fn payload_len(&self) -> usize {
        match &self.command {
            Command::Put { key, value } => key.len() + value.len(),
            Command::Get { key } | Command::Delete { key } => key.len(),
            Command::CompareAndSet { key, expected, new } => key.len() + expected.len() + new.len(),
        }
    }

    /// Parses proposed bytes; sub-slices share the input buffer (no copy of keys or values).
    pub fn decode(bytes: &Bytes) -> Result<Request, DecodeError> {
        let mut input = bytes.clone();
        if input.remaining() < 17 {
            return Err(DecodeError("too short"));
        }
        let client_id = input.get_u64_le();
        let sequence = input.get_u64_le();
        let tag = input.get_u8();
        let command = match tag {
            TAG_PUT => Command::Put {
                key: take_field(&mut input)?,
                value: take_field(&mut input)?,
            },
            TAG_GET => Command::Get {
                key: take_field(&mut input)?,
            },
            TAG_CAS => Command::CompareAndSet {
                key: take_field(&mut input)?,
                expected: take_field(&mut input)?,
                new: take_field(&mut input)?,
            },
            TAG_DELETE => Command::Delete {
                key: take_field(&mut input)?,
            },
            _ => return Err(DecodeError("unknown command tag")),
        };
        if input.has_remaining() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Request {
            client_id,
            sequence,
            command,
        })
    }
}

const SNAPSHOT_MAGIC: u32 = 0x4b56_5301; // "KVS" version 1

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn take_u64(input: &mut Bytes) -> Result<u64, DecodeError> {
    if input.remaining() < 8 {
        return Err(DecodeError("truncated number"));
    }
    Ok(input.get_u64_le())
}

fn put_optional(out: &mut BytesMut, value: &Option<Bytes>) {
    match value {
        Some(value) => {
            out.put_u8(1);
            put_field(out, value);
        }
        None => out.put_u8(0),
    }
}

fn take_optional(input: &mut Bytes) -> Result<Option<Bytes>, DecodeError> {
    if !input.has_remaining() {
        return Err(DecodeError("truncated option"));
    }
    match input.get_u8() {
        0 => Ok(None),
        1 => Ok(Some(take_field(input)?)),
        _ => Err(DecodeError("bad option tag")),
    }
}

fn put_response(out: &mut BytesMut, response: &Response) {
    match response {
        Response::Done => out.put_u8(0),
        Response::Value(value) => {
            out.put_u8(1);
            put_optional(out, value);
        }
        Response::CompareAndSet { succeeded, found } => {
            out.put_u8(2);
            out.put_u8(u8::from(*succeeded));
            put_optional(out, found);
        }
        Response::StaleSequence => out.put_u8(3),
        Response::Malformed(reason) => {
            out.put_u8(4);
            put_field(out, &Bytes::copy_from_slice(reason.as_bytes()));
        }
    }
}

fn take_response(input: &mut Bytes) -> Result<Response, DecodeError> {
    if !input.has_remaining() {
        return Err(DecodeError("truncated response"));
    }
    Ok(match input.get_u8() {
        0 => Response::Done,
        1 => Response::Value(take_optional(input)?),
        2 => {
            if !input.has_remaining() {
                return Err(DecodeError("truncated response"));
            }
            let succeeded = input.get_u8() == 1;
            Response::CompareAndSet {
                succeeded,
                found: take_optional(input)?,
            }
        }
        3 => Response::StaleSequence,
        4 => Response::Malformed(String::from_utf8_lossy(&take_field(input)?).into_owned()),
        _ => return Err(DecodeError("bad response tag")),
    })
}

fn put_field(out: &mut BytesMut, field: &Bytes) {
    out.put_u32_le(field.len() as u32);
    out.put_slice(field);
}

fn take_field(input: &mut Bytes) -> Result<Bytes, DecodeError> {
    if input.remaining() < 4 {
        return Err(DecodeError("truncated length"));
    }
    let len = input.get_u32_le() as usize;
    if input.remaining() < len {
        return Err(DecodeError("field longer than the request"));
    }
    Ok(input.split_to(len))
}

/// The last command of a session and its answer, to answer retries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    last_sequence: u64,
    last_response: Response,
}

/// The replicated map plus the session table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    data: BTreeMap<Bytes, Bytes>,
    sessions: BTreeMap<u64, Session>,
    applied_commands: u64,
}

impl KvStore {
    /// An empty store.
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// Decodes and applies one log entry's bytes.
    pub fn apply_bytes(&mut self, bytes: &Bytes) -> Response {
        match Request::decode(bytes) {
            Ok(request) => self.apply(request),
            Err(error) => Response::Malformed(error.to_string()),
        }
    }

    /// Applies one request, exactly once per `(client_id, sequence)`.
    pub fn apply(&mut self, request: Request) -> Response {
        if request.client_id != 0
            && let Some(session) = self.sessions.get(&request.client_id)
        {
            if request.sequence == session.last_sequence {
                return session.last_response.clone();
            }
            if request.sequence < session.last_sequence {
                return Response::StaleSequence;
            }
        }
        let response = self.execute(request.command);
        self.applied_commands += 1;
        if request.client_id != 0 {
            self.sessions.insert(
                request.client_id,
                Session {
                    last_sequence: request.sequence,
                    last_response: response.clone(),
                },
            );
        }
        response
    }

    fn execute(&mut self, command: Command) -> Response {
        match command {
            Command::Put { key, value } => {
                self.data.insert(key, value);
                Response::Done
            }
            Command::Get { key } => Response::Value(self.data.get(&key).cloned()),
            Command::CompareAndSet { key, expected, new } => {
                let found = self.data.get(&key).cloned();
                let succeeded = found.as_ref() == Some(&expected);
                if succeeded {
                    self.data.insert(key, new);
                }
                Response::CompareAndSet { succeeded, found }
            }
            Command::Delete { key } => {
                self.data.remove(&key);
                Response::Done
            }
        }
    }

    /// Reads a key directly (a local, possibly stale read).
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.data.get(key)
    }

    /// How many commands took effect (retries answered from a session do not count).
    pub fn applied_commands(&self) -> u64 {
        self.applied_commands
    }

    /// The whole state (data, sessions, counters) as bytes, for a Raft snapshot. The encoding is
    /// versioned and checksummed so a damaged snapshot is refused, not half-loaded.
    pub fn snapshot(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u32_le(SNAPSHOT_MAGIC);
        out.put_u64_le(self.applied_commands);
        out.put_u64_le(self.data.len() as u64);
        for (key, value) in &self.data {
            put_field(&mut out, key);
            put_field(&mut out, value);
        }
        out.put_u64_le(self.sessions.len() as u64);
        for (client, session) in &self.sessions {
            out.put_u64_le(*client);
            out.put_u64_le(session.last_sequence);
            put_response(&mut out, &session.last_response);
        }
        let checksum = fnv1a(&out);
        out.put_u64_le(checksum);
        out.freeze()
    }

    /// Rebuilds a store from [`KvStore::snapshot`] bytes; never panics on damaged input.
    pub fn restore(bytes: &Bytes) -> Result<KvStore, DecodeError> {
        if bytes.len() < 12 {
            return Err(DecodeError("snapshot too short"));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let expected = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
        if fnv1a(body) != expected {
            return Err(DecodeError("snapshot checksum mismatch"));
        }
        let mut input = bytes.slice(..bytes.len() - 8);
        if input.get_u32_le() != SNAPSHOT_MAGIC {
            return Err(DecodeError("not a kv snapshot (bad magic or version)"));
        }
        let mut store = KvStore::new();
        store.applied_commands = take_u64(&mut input)?;
        let keys = take_u64(&mut input)?;
        for _ in 0..keys {
            let key = take_field(&mut input)?;
            let value = take_field(&mut input)?;
            store.data.insert(key, value);
        }
        let sessions = take_u64(&mut input)?;
        for _ in 0..sessions {
            let client = take_u64(&mut input)?;
            let last_sequence = take_u64(&mut input)?;
            let last_response = take_response(&mut input)?;
            store.sessions.insert(
                client,
                Session {
                    last_sequence,
                    last_response,
                },
            );
        }
        if input.has_remaining() {
            return Err(DecodeError("trailing bytes in snapshot"));
        }
        Ok(store)
    }

    /// A digest of the whole state (data and sessions), for comparing members cheaply.
    pub fn digest(&self) -> u64 {
        // FNV-1a over a canonical walk of the ordered maps.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for (key, value) in &self.data {
            eat(&(key.len() as u64).to_le_bytes());
            eat(key);
            eat(&(value.len() as u64).to_le_bytes());
            eat(value);
        }
        for (client, session) in &self.sessions {
            eat(&client.to_le_bytes());
            eat(&session.last_sequence.to_le_bytes());
        }
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(client_id: u64, sequence: u64, command: Command) -> Request {
        Request {
            client_id,
            sequence,
            command,
        }
    }

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    #[test]
    fn commands_have_register_semantics() {
        let mut store = KvStore::new();
        let put = |v: &str| Command::Put {
            key: key("k"),
            value: key(v),
        };
        assert_eq!(store.apply(request(0, 0, put("a"))), Response::Done);
        assert_eq!(
            store.apply(request(0, 0, Command::Get { key: key("k") })),
            Response::Value(Some(key("a")))
        );
        let cas = |expected: &str, new: &str| Command::CompareAndSet {
            key: key("k"),
            expected: key(expected),
            new: key(new),
        };
        assert_eq!(
            store.apply(request(0, 0, cas("x", "b"))),
            Response::CompareAndSet {
                succeeded: false,
                found: Some(key("a"))
            }
        );
        assert_eq!(
            store.apply(request(0, 0, cas("a", "b"))),
            Response::CompareAndSet {
                succeeded: true,
                found: Some(key("a"))
            }
        );
        store.apply(request(0, 0, Command::Delete { key: key("k") }));
        assert_eq!(store.get(b"k"), None);
    }

    #[test]
    fn retries_are_applied_once_and_answered_alike() {
        let mut store = KvStore::new();
        let cas = Command::CompareAndSet {
            key: key("k"),
            expected: key(""),
            new: key("1"),
        };
        store.apply(request(
            7,
            1,
            Command::Put {
                key: key("k"),
                value: key(""),
            },
        ));
        let first = store.apply(request(7, 2, cas.clone()));
        let retry = store.apply(request(7, 2, cas.clone()));
        assert_eq!(first, retry);
        assert!(matches!(
            retry,
            Response::CompareAndSet {
                succeeded: true,
                ..
            }
        ));
        assert_eq!(store.applied_commands(), 2);
        assert_eq!(store.apply(request(7, 1, cas)), Response::StaleSequence);
    }

    proptest! {
        #[test]
        fn encoding_round_trips(client in any::<u64>(), seq in any::<u64>(), k in ".{0,8}", v in ".{0,8}", tag in 0u8..4) {
            let command = match tag {
                0 => Command::Put { key: key(&k), value: key(&v) },
                1 => Command::Get { key: key(&k) },
                2 => Command::CompareAndSet { key: key(&k), expected: key(&v), new: key(&k) },
                _ => Command::Delete { key: key(&k) },
            };
            let original = request(client, seq, command);
            prop_assert_eq!(Request::decode(&original.encode()), Ok(original));
        }

        #[test]
        fn snapshots_round_trip_and_damage_is_refused(
            writes in proptest::collection::vec((0u64..4, 0u64..5, ".{0,6}"), 0..30),
            flip in any::<usize>(),
        ) {
            let mut store = KvStore::new();
            for (client, seq, value) in writes {
                store.apply(request(client, seq, Command::Put { key: key(&value), value: key(&value) }));
            }
            let bytes = store.snapshot();
            let restored = KvStore::restore(&bytes);
            prop_assert_eq!(restored.as_ref(), Ok(&store));
            let mut damaged = bytes.to_vec();
            let at = flip % damaged.len();
            damaged[at] ^= 0x40;
            prop_assert!(KvStore::restore(&Bytes::from(damaged)).is_err());
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut store = KvStore::new();
            let _ = store.apply_bytes(&Bytes::from(bytes));
        }
    }
}
