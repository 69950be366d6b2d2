//! The node, one input at a time: each test brings a node into a state, feeds it ONE input (a
//! tick, a proposal, a `persisted` call, a peer message, a read) and compares the whole list
//! of actions it emits with the list Raft and the node's durability rules call for.
//!
//! Actions are compared in their `Debug` rendering (the action type is not `PartialEq`), one
//! line per action, so a failure shows both lists in full.

mod common;

use bytes::Bytes;
use common::{Registers, Response};
use node::{Action, Node, PersistTask, RequestError};
use raft::{
    AppendResponse, ConfState, Config, Entry, EntryKind, HardState, LogIndex, MemStorage, Message,
    MessageBody, NodeId, ProposeError, Role, SoftState, Term,
};

type Actions = Vec<Action<Response>>;

/// Renders each action on one line, the form the tests compare.
fn render(actions: &[Action<Response>]) -> Vec<String> {
    actions.iter().map(|action| format!("{action:?}")).collect()
}

#[track_caller]
fn assert_actions(actual: &[Action<Response>], expected: &[Action<Response>]) {
    assert_eq!(render(actual), render(expected));
}

/// A member of a new cluster of `voters`, before its first `poll`.
fn start(id: u64, voters: &[u64]) -> Node<Registers> {
    let founders = ConfState {
        voters: voters.iter().copied().map(NodeId).collect(),
        ..ConfState::default()
    };
    let storage = MemStorage::bootstrap(&founders);
    Node::new(&Config::new(NodeId(id)), storage, Registers::new()).expect("start")
}

fn poll(node: &mut Node<Registers>) -> Actions {
    let mut out = Vec::new();
    node.poll(&mut out);
    out
}

/// Polls and acknowledges every write at once until the node has nothing more to do; what it
/// sends or answers meanwhile is dropped (it is the set-up, not the input under test).
fn settle(node: &mut Node<Registers>) {
    loop {
        let actions = poll(node);
        if actions.is_empty() {
            return;
        }
        let mut released = Vec::new();
        for action in actions {
            if let Action::Persist(task) = action {
                node.persisted(task, &mut released);
            }
        }
    }
}

/// The persist task among `actions` (exactly one).
fn the_task(actions: &[Action<Response>]) -> PersistTask {
    let tasks: Vec<&PersistTask> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Persist(task) => Some(task),
            _ => None,
        })
        .collect();
    assert_eq!(tasks.len(), 1, "{:?}", render(actions));
    tasks[0].clone()
}

fn persisted(node: &mut Node<Registers>, task: PersistTask) -> Actions {
    let mut out = Vec::new();
    node.persisted(task, &mut out);
    out
}

fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: NodeId(vote),
        commit: LogIndex(commit),
    }
}

fn entry(term: u64, index: u64, kind: EntryKind, data: Bytes) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        kind,
        data,
    }
}

fn no_op(term: u64, index: u64) -> Entry {
    entry(term, index, EntryKind::Empty, Bytes::new())
}

/// A command setting register `k` to `v`, the only command of each test (so a forwarded
/// command is recognised by its bytes, as a session would make them unique).
fn put() -> Bytes {
    common::set("k", "v")
}

fn role(term: u64, leader: u64, role: Role) -> Action<Response> {
    Action::RoleChanged {
        term: Term(term),
        soft_state: SoftState {
            leader: NodeId(leader),
            role,
        },
    }
}

fn persist(number: u64, hard_state: Option<HardState>, entries: Vec<Entry>) -> Action<Response> {
    Action::Persist(PersistTask {
        number,
        snapshot: None,
        hard_state,
        entries,
    })
}

fn applied(index: u64, term: u64) -> Action<Response> {
    Action::Applied {
        index: LogIndex(index),
        term: Term(term),
    }
}

fn reply(request: u64, result: Result<Response, RequestError>) -> Action<Response> {
    Action::Reply { request, result }
}

fn send(from: u64, to: u64, term: u64, body: MessageBody) -> Action<Response> {
    Action::Send(message(from, to, term, body))
}

/// The only member of its cluster, elected at term 2 with its no-op (index 2) applied; its
/// next Ready is number 4.
fn single_leader() -> Node<Registers> {
    let mut node = start(1, &[1]);
    settle(&mut node);
    tick_until_work(&mut node);
    settle(&mut node);
    assert_eq!(node.raw().role(), Role::Leader);
    assert_eq!(node.applied(), LogIndex(2));
    node
}

/// Ticks until the node has a Ready (its election timeout, randomised in [10, 20) ticks).
fn tick_until_work(node: &mut Node<Registers>) {
    for _ in 0..100 {
        node.tick();
        if node.has_work() {
            return;
        }
    }
    panic!("no election within 100 ticks");
}

/// Member 1 of {1, 2, 3}, a follower of member 2 at term 2 (it never voted), holding 2's no-op
/// at index 2; `commit` is what the leader told it is committed.
fn follower_of_2(commit: u64) -> Node<Registers> {
    let mut node = start(1, &[1, 2, 3]);
    settle(&mut node);
    node.receive(append(1, 1, vec![no_op(2, 2)], commit));
    settle(&mut node);
    assert_eq!(node.raw().leader(), NodeId(2));
    node
}

/// An append from leader 2 at term 2.
fn append(prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64) -> Message {
    message(
        2,
        1,
        2,
        MessageBody::AppendEntries {
            prev_log_index: LogIndex(prev_index),
            prev_log_term: Term(prev_term),
            entries,
            leader_commit: LogIndex(commit),
        },
    )
}

/// Member 1 of {1, 2, 3}, elected at term 2 with the votes of 1 and 2; member 2 has
/// acknowledged the no-op (index 2), which is committed and applied; member 3 never answered.
fn leader_of_three() -> Node<Registers> {
    let mut node = start(1, &[1, 2, 3]);
    settle(&mut node);
    node.campaign();
    settle(&mut node);
    let granted = |pre_vote| MessageBody::RequestVoteResponse {
        pre_vote,
        granted: true,
    };
    node.receive(message(2, 1, 2, granted(true)));
    settle(&mut node);
    node.receive(message(2, 1, 2, granted(false)));
    settle(&mut node);
    let accepted = AppendResponse::Accepted {
        match_index: LogIndex(2),
    };
    node.receive(message(
        2,
        1,
        2,
        MessageBody::AppendEntriesResponse(accepted),
    ));
    settle(&mut node);
    assert_eq!(node.raw().role(), Role::Leader);
    assert_eq!(node.applied(), LogIndex(2));
    node
}

/// Its first `poll` applies the bootstrap entry, the founders' membership.
#[test]
fn a_new_member_applies_the_founding_membership_first() {
    let mut node = start(1, &[1]);
    let conf_state = ConfState {
        voters: vec![NodeId(1)].into_iter().collect(),
        ..ConfState::default()
    };
    assert_actions(
        &poll(&mut node),
        &[
            Action::ConfChanged {
                index: LogIndex(1),
                conf_state,
            },
            applied(1, 1),
        ],
    );
}

/// The tick that times the only member out elects it at once (its own pre-vote and vote are a
/// quorum): it reports the new role and asks for its vote and its no-op to be made durable.
/// Nothing commits before that write is acknowledged; then the no-op commits and is applied,
/// and the new commit index alone is recorded without a sync.
#[test]
fn a_single_member_is_elected_by_one_tick_and_commits_its_no_op_once_durable() {
    let mut node = start(1, &[1]);
    settle(&mut node);
    tick_until_work(&mut node);
    let actions = poll(&mut node);
    assert_actions(
        &actions,
        &[
            role(2, 1, Role::Leader),
            persist(2, Some(hard_state(2, 1, 1)), vec![no_op(2, 2)]),
        ],
    );
    assert_actions(&persisted(&mut node, the_task(&actions)), &[]);
    assert_actions(
        &poll(&mut node),
        &[Action::RecordCommit(hard_state(2, 1, 2)), applied(2, 2)],
    );
}

/// A proposal is appended and handed out as a persist task; once that is acknowledged, the
/// entry commits (a quorum of one), is applied, and its proposer is answered.
#[test]
fn a_proposal_is_persisted_then_applied_and_answered() {
    let mut node = single_leader();
    let mut out = Vec::new();
    node.submit(10, put(), &mut out);
    assert_actions(&out, &[]);
    let actions = poll(&mut node);
    assert_actions(
        &actions,
        &[persist(
            4,
            None,
            vec![entry(2, 3, EntryKind::Normal, put())],
        )],
    );
    assert_actions(&persisted(&mut node, the_task(&actions)), &[]);
    assert_actions(
        &poll(&mut node),
        &[
            Action::RecordCommit(hard_state(2, 1, 3)),
            applied(3, 2),
            reply(10, Ok(Response::Done)),
        ],
    );
}

/// A vote is granted only once it is durable: the Ready asks to persist the new term and vote
/// and sends nothing; the grant leaves with the acknowledgement of that write.
#[test]
fn a_vote_grant_waits_until_the_vote_is_durable() {
    let mut node = start(1, &[1, 2, 3]);
    settle(&mut node);
    node.receive(message(
        2,
        1,
        2,
        MessageBody::RequestVote {
            pre_vote: false,
            last_log_index: LogIndex(1),
            last_log_term: Term(1),
            transfer: false,
        },
    ));
    let actions = poll(&mut node);
    assert_actions(&actions, &[persist(2, Some(hard_state(2, 2, 1)), vec![])]);
    let grant = MessageBody::RequestVoteResponse {
        pre_vote: false,
        granted: true,
    };
    assert_actions(
        &persisted(&mut node, the_task(&actions)),
        &[send(1, 2, 2, grant)],
    );
    assert_actions(&poll(&mut node), &[]);
}

/// An append is acknowledged only once its entries are durable.
#[test]
fn an_append_is_acknowledged_once_its_entries_are_durable() {
    let mut node = start(1, &[1, 2, 3]);
    settle(&mut node);
    node.receive(append(1, 1, vec![no_op(2, 2)], 1));
    let actions = poll(&mut node);
    assert_actions(
        &actions,
        &[
            role(2, 2, Role::Follower),
            persist(2, Some(hard_state(2, 0, 1)), vec![no_op(2, 2)]),
        ],
    );
    let accepted = AppendResponse::Accepted {
        match_index: LogIndex(2),
    };
    assert_actions(
        &persisted(&mut node, the_task(&actions)),
        &[send(1, 2, 2, MessageBody::AppendEntriesResponse(accepted))],
    );
}

/// A heartbeat that only raises the commit index gives a Ready with nothing to sync: the
/// commit index is handed out to be recorded (no persist task, nothing to acknowledge), the
/// heartbeat is answered at once, and the newly committed entry is applied.
#[test]
fn a_commit_index_alone_is_recorded_without_a_persist_task() {
    let mut node = follower_of_2(1);
    assert_eq!(node.applied(), LogIndex(1));
    node.receive(message(
        2,
        1,
        2,
        MessageBody::Heartbeat {
            commit: LogIndex(2),
            round: 1,
        },
    ));
    assert_actions(
        &poll(&mut node),
        &[
            Action::RecordCommit(hard_state(2, 0, 2)),
            send(1, 2, 2, MessageBody::HeartbeatResponse { round: 1 }),
            applied(2, 2),
        ],
    );
}

/// A read on the leader joins the next heartbeat round, sent at once; when a quorum (the
/// leader and member 2) has answered that round, the read is served from the state machine.
/// Member 3 has acknowledged nothing, so its heartbeat carries commit 0.
#[test]
fn a_leader_answers_a_read_after_a_quorum_answers_its_heartbeat() {
    let mut node = leader_of_three();
    let mut out = Vec::new();
    node.read(20, Bytes::from_static(b"k"), &mut out);
    assert_actions(&out, &[]);
    let heartbeat = |commit| MessageBody::Heartbeat {
        commit: LogIndex(commit),
        round: 1,
    };
    assert_actions(
        &poll(&mut node),
        &[send(1, 2, 2, heartbeat(2)), send(1, 3, 2, heartbeat(0))],
    );
    node.receive(message(
        2,
        1,
        2,
        MessageBody::HeartbeatResponse { round: 1 },
    ));
    assert_actions(&poll(&mut node), &[reply(20, Ok(Response::Value(None)))]);
}

/// A follower's plain proposal is refused at once with the leader it knows.
#[test]
fn a_followers_proposal_is_refused_with_the_leader_hint() {
    let mut node = follower_of_2(2);
    let mut out = Vec::new();
    node.submit(11, put(), &mut out);
    assert_actions(
        &out,
        &[reply(
            11,
            Err(RequestError::Refused(ProposeError::NotLeader {
                leader_hint: NodeId(2),
            })),
        )],
    );
    assert_actions(&poll(&mut node), &[]);
}

/// `submit_anywhere` on a follower sends the command to the leader; when it comes back in the
/// leader's append and commits, the follower persists it (with the commit index, in the same
/// task), acknowledges it once durable, applies it and answers the client with its own result.
#[test]
fn a_followers_forwarded_proposal_is_answered_when_it_applies() {
    let mut node = follower_of_2(2);
    let mut out = Vec::new();
    node.submit_anywhere(12, put(), &mut out);
    assert_actions(&out, &[]);
    assert_actions(
        &poll(&mut node),
        &[send(
            1,
            2,
            2,
            MessageBody::Propose {
                entries: vec![put()],
            },
        )],
    );
    let command = entry(2, 3, EntryKind::Normal, put());
    node.receive(append(2, 2, vec![command.clone()], 3));
    let actions = poll(&mut node);
    assert_actions(
        &actions,
        &[persist(5, Some(hard_state(2, 0, 3)), vec![command])],
    );
    let accepted = AppendResponse::Accepted {
        match_index: LogIndex(3),
    };
    assert_actions(
        &persisted(&mut node, the_task(&actions)),
        &[send(1, 2, 2, MessageBody::AppendEntriesResponse(accepted))],
    );
    assert_actions(
        &poll(&mut node),
        &[applied(3, 2), reply(12, Ok(Response::Done))],
    );
}

/// When another leader shows up, a command forwarded to the old one may be lost or may still
/// commit: it is answered `OutcomeUnknown`. A read the old leader was asked to confirm is
/// failed `NotLeader` with the new leader as the hint (it was not served).
#[test]
fn a_leader_change_gives_up_on_what_was_handed_to_the_old_leader() {
    let mut node = follower_of_2(2);
    let mut out = Vec::new();
    node.submit_anywhere(12, put(), &mut out);
    node.read(13, Bytes::from_static(b"k"), &mut out);
    settle(&mut node);
    assert_actions(&out, &[]);
    node.receive(message(
        3,
        1,
        3,
        MessageBody::Heartbeat {
            commit: LogIndex(2),
            round: 1,
        },
    ));
    let actions = poll(&mut node);
    assert_actions(
        &actions,
        &[
            role(3, 3, Role::Follower),
            reply(12, Err(RequestError::OutcomeUnknown)),
            reply(
                13,
                Err(RequestError::Refused(ProposeError::NotLeader {
                    leader_hint: NodeId(3),
                })),
            ),
            persist(5, Some(hard_state(3, 0, 2)), vec![]),
        ],
    );
    assert_actions(
        &persisted(&mut node, the_task(&actions)),
        &[send(1, 3, 3, MessageBody::HeartbeatResponse { round: 1 })],
    );
}
