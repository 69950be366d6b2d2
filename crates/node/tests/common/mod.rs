//! The smallest deterministic state machine the node's tests need: a map of registers.
//!
//! A command is the bytes `key=value` (split at the first `=`) and sets the register; a query
//! is a key and answers its value. The node never looks inside commands, so this is all the
//! state machine its tests need; the production one is `machine::EtcdMachine`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use node::StateMachine;
use raft::{LogIndex, Term};
use std::collections::BTreeMap;

/// Registers by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    values: BTreeMap<Bytes, Bytes>,
}

/// What a command or a query is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The command set its register.
    Done,
    /// A query's answer: the register's value, `None` if it was never set.
    Value(Option<Bytes>),
    /// The entry was not `key=value`; nothing changed.
    Malformed(String),
}

impl Registers {
    /// No register set.
    pub fn new() -> Registers {
        Registers::default()
    }
}

/// The command that sets register `key` to `value`.
pub fn set(key: &str, value: &str) -> Bytes {
    Bytes::from(format!("{key}={value}"))
}

impl StateMachine for Registers {
    type Response = Response;
    type Query = Bytes;

    fn apply(&mut self, _index: LogIndex, _term: Term, data: &Bytes) -> Response {
        let Some(at) = data.iter().position(|byte| *byte == b'=') else {
            return Response::Malformed(format!("no '=' in {data:?}"));
        };
        self.values.insert(data.slice(..at), data.slice(at + 1..));
        Response::Done
    }

    fn query(&self, key: &Bytes) -> Response {
        Response::Value(self.values.get(key).cloned())
    }

    /// Each register as its key and its value, each preceded by its length (u32).
    fn snapshot(&self) -> Bytes {
        let mut out = BytesMut::new();
        for (key, value) in &self.values {
            for field in [key, value] {
                out.put_u32(field.len() as u32);
                out.put_slice(field);
            }
        }
        out.freeze()
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), String> {
        fn field(input: &mut Bytes) -> Result<Bytes, String> {
            if input.remaining() < 4 {
                return Err("truncated length".into());
            }
            let len = input.get_u32() as usize;
            if input.remaining() < len {
                return Err("truncated field".into());
            }
            Ok(input.split_to(len))
        }
        let mut input = data.clone();
        let mut values = BTreeMap::new();
        while input.has_remaining() {
            let key = field(&mut input)?;
            values.insert(key, field(&mut input)?);
        }
        self.values = values;
        Ok(())
    }
}
