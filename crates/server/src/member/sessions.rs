//! Idempotency sessions: a write carries `(client_id, sequence)` so that a retry whose first
//! answer was lost is answered from the state machine's session table instead of applied
//! twice. A client names its own session with the `raftkv-request-id` metadata key; a write a
//! member forwards without one borrows a session from a pool (`SessionPool` below).

use super::shared::Core;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

/// The gRPC metadata key a client may set to make a write idempotent: a write retried with the
/// same key is applied at most once.
pub const REQUEST_ID_METADATA: &str = "raftkv-request-id";

/// The sessions a member gives the writes it forwards, reused one write after another.
///
/// A forwarded write carries a session so that a retry whose first answer was lost is answered
/// from the state machine's session table instead of applied twice. One session per write
/// would put every forwarded write into that table (65 536 of them by default: ~7 MiB, copied
/// again by every snapshot's freeze, and an insertion plus an eviction per write). Instead a
/// session serves one write at a time, and its next write takes the next sequence: the table
/// holds about as many of this member's sessions as it ever had writes in flight at once.
///
/// Reuse is safe because a session goes back to the pool only once its write has finished,
/// however it finished, and with the next sequence: an earlier attempt still in the log applies
/// either before the next write (both apply, and the first one's outcome was reported unknown
/// to its client) or after it (refused as a stale sequence), never twice.
#[derive(Debug, Default)]
pub(super) struct SessionPool {
    /// `(client_id, next sequence)`, most recently returned last.
    idle: Mutex<Vec<(u64, u64)>>,
}

/// The most idle sessions a pool keeps; beyond it, returned sessions are forgotten (the state
/// machine evicts them in time, least recently used first).
const MAX_IDLE_SESSIONS: usize = 4096;

/// A session lent to one forwarded write: `(client_id, sequence)` to put in its command.
/// Dropping it, whether the write finished or was abandoned, returns the session with the
/// next sequence.
pub(super) struct LentSession<'a> {
    pool: &'a SessionPool,
    pub(super) client_id: u64,
    pub(super) sequence: u64,
}

impl Drop for LentSession<'_> {
    fn drop(&mut self) {
        let mut idle = self.pool.idle.lock().expect("not poisoned");
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push((self.client_id, self.sequence.saturating_add(1)));
        }
    }
}

impl SessionPool {
    /// An idle session, or a new one from `fresh` (sequence 1).
    pub(super) fn lend(&self, fresh: impl FnOnce() -> u64) -> LentSession<'_> {
        let idle = self.idle.lock().expect("not poisoned").pop();
        let (client_id, sequence) = idle.unwrap_or_else(|| (fresh(), 1));
        LentSession {
            pool: self,
            client_id,
            sequence,
        }
    }
}

/// Derives a session id from a client's idempotency key. Different keys collide with
/// probability 2^-63 per pair; a collision would answer the second write with the first's
/// outcome.
pub fn session_for_key(key: &[u8]) -> u64 {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id) | 1
}

/// The idempotency key of a request, if the client sent one.
pub fn request_key<T>(request: &tonic::Request<T>) -> Option<u64> {
    let value = request.metadata().get(REQUEST_ID_METADATA)?;
    Some(session_for_key(value.as_bytes()))
}

impl Core {
    /// A fresh idempotency session for a write this member forwards without a client key.
    pub fn fresh_session(&self) -> u64 {
        let count = self.keys.fetch_add(1, Ordering::Relaxed);
        let mut key = Vec::with_capacity(24);
        key.extend_from_slice(&self.identity.member_id.to_be_bytes());
        key.extend_from_slice(&self.key_salt.to_be_bytes());
        key.extend_from_slice(&count.to_be_bytes());
        session_for_key(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_IDLE_SESSIONS, SessionPool};

    /// A session serves one write at a time and comes back with the next sequence, whether
    /// its write finished or was abandoned; writes in flight together never share one.
    #[test]
    fn forwarded_writes_share_sessions_one_at_a_time() {
        let pool = SessionPool::default();
        let mut next_id = 100;
        let mut fresh = || {
            next_id += 1;
            next_id
        };
        let first = pool.lend(&mut fresh);
        let second = pool.lend(&mut fresh);
        assert_eq!((first.client_id, first.sequence), (101, 1));
        assert_eq!((second.client_id, second.sequence), (102, 1));
        drop(first);
        let third = pool.lend(&mut fresh);
        assert_eq!((third.client_id, third.sequence), (101, 2));
        drop(second);
        drop(third);
        // Most recently returned first, each with its next sequence.
        let again: Vec<_> = (0..3).map(|_| pool.lend(&mut fresh)).collect();
        let again: Vec<(u64, u64)> = again
            .iter()
            .map(|lent| (lent.client_id, lent.sequence))
            .collect();
        assert_eq!(again, [(101, 3), (102, 2), (103, 1)]);
    }

    /// However many writes were in flight at once, the pool keeps a bounded number idle.
    #[test]
    fn the_idle_pool_is_bounded() {
        let pool = SessionPool::default();
        let mut next_id = 0;
        let lent: Vec<_> = (0..MAX_IDLE_SESSIONS + 10)
            .map(|_| {
                pool.lend(|| {
                    next_id += 1;
                    next_id
                })
            })
            .collect();
        drop(lent);
        assert_eq!(pool.idle.lock().unwrap().len(), MAX_IDLE_SESSIONS);
    }
}
