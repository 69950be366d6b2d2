//! A linearizability checker for key-value histories.
//!
//! Testing a replicated store end to end means recording what clients saw and asking whether some
//! single copy of the data could have produced it. This crate answers that question for histories
//! of registers (one per key) supporting read, write, compare-and-set and delete.
//!
//! ```
//! use lincheck::{CheckOptions, Input, Operation, Output, Verdict, check};
//!
//! let op = |client, call, ret, input, output| Operation { client, key: 0, call, ret, input, output };
//! let history = [
//!     op(0, 0, Some(1), Input::Write(1), Output::Write),
//!     // Called after the write returned, yet it missed it: a stale read.
//!     op(1, 2, Some(3), Input::Read, Output::Read(None)),
//!     // Outcome lost: may have happened at any time after its call, or never.
//!     op(2, 0, None, Input::Write(2), Output::Unknown),
//! ];
//! let verdict = check(&history, &CheckOptions::default());
//! assert!(matches!(verdict, Verdict::NotLinearizable { key: 0, .. }));
//! ```
//!
//! # Model
//!
//! A history is a list of [`Operation`]s, each with the client's [`Input`], the [`Output`] it was
//! told, and the times it was invoked (`call`) and answered (`ret`) on a clock shared by all
//! clients. The history is *linearizable* if the operations can be put in one total order that
//! (a) respects real time — if A returned before B was called (`A.ret < B.call`, strictly;
//! operations whose intervals touch are concurrent) then A comes first — and (b) is a legal run
//! of the sequential register: every register starts absent, a read returns the current value, a
//! write sets it, a cas sets `new` only if the value is `Some(expected)` (and reports whether it
//! did), a delete makes it absent.
//!
//! Operations whose outcome is unknown (a timeout, a crashed client) have `ret: None` and
//! `Output::Unknown`: they may take effect at any single point after their call, or never, so the
//! checker may place them anywhere after their call or leave them out. Operations that definitely
//! did *not* take effect (a rejected write, a read that timed out) constrain nothing and should be
//! left out of the history by the recorder. A cas that reported "compare failed" *did* observe the
//! value, so it stays in the history as `Output::Cas { succeeded: false }`.
//!
//! # Algorithm
//!
//! Linearizability is compositional, so [`check`] splits the history by key and checks each
//! register on its own. Each sub-history is checked with Wing & Gong's backtracking search,
//! improved by Lowe's just-in-time linearization and memoization, as in Porcupine: call and return
//! events sit in a time-sorted doubly-linked list; the search repeatedly picks a pending operation
//! whose call precedes the first pending return, applies it to the register if its output fits,
//! and lifts it out of the list; on reaching a return event it backtracks. A cache of visited
//! (set of linearized operations, register value) configurations prunes paths that reach a
//! configuration already explored.
//!
//! Unknown outcomes are what make real histories expensive (each lost write stays "pending" for
//! the rest of the history), so they get extra care, all of it verdict-preserving:
//! - they have no return event, and the search succeeds once every operation with a known outcome
//!   is linearized;
//! - known-outcome candidates are tried first, and a configuration is pruned when one with the
//!   same known operations and value but a *subset* of the unknown operations was already seen
//!   (leaving an unknown operation out is always allowed, so fewer used is never worse);
//! - of several unknown operations with the same input, only the earliest unused one is tried;
//! - an unknown operation is never immediately followed by a blind write or delete (its effect
//!   would be invisible, so the order without it covers that case);
//! - values that no read or cas ever compares against are merged into one, since the register
//!   spec cannot tell them apart.
//!
//! The worst case remains exponential; a step budget ([`CheckOptions::max_steps_per_key`]) turns
//! it into [`Verdict::Timeout`] instead of a hang. In practice the search is fast: the 52 Jepsen
//! etcd histories take milliseconds, and so does a 10,000-operation history from 8 clients with a
//! few percent of lost outcomes. What can still exhaust the budget is a long history that is *not*
//! linearizable, on a tiny value domain, with around 10% of its outcomes lost: proving that no
//! combination of lost operations explains it is genuinely combinatorial.
//!
//! # Jepsen logs
//!
//! [`parse_jepsen`] reads the register logs of Jepsen's etcd test. A `:fail :cas` is a completed
//! cas whose comparison failed, as the corpus README specifies, so it stays in the history as
//! `Output::Cas { succeeded: false }`: it observed that the value differed from `expected`. On the
//! 52 published histories of `testdata/jepsen-etcd`, dropping failed cas operations instead gives
//! the same verdicts, so the corpus cannot tell the two readings apart; the README's is chosen
//! because it is the more informative one (it catches a cas that failed although the value
//! matched).

mod checker;
mod hash;
mod jepsen;
mod model;

pub use checker::{CheckOptions, Verdict, check};
pub use jepsen::{ParseError, parse_jepsen};
pub use model::{Input, Operation, Output, State, step};
