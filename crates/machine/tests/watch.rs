//! Watchers of a member see exactly what its state machine applies, across a snapshot
//! restore too.

use bytes::Bytes;
use kv::mvcc::{MvccCommand, MvccRequest, PutRequest};
use machine::{EtcdMachine, MachineCommand, MachineQuery, MachineResponse};
use node::StateMachine;
use raft::{LogIndex, Term};
use watch::{CreateWatch, WatchRequest, WatchResponse};

fn put(machine: &mut EtcdMachine, index: u64, key: &str, value: &str) {
    let command = MachineCommand::Kv(MvccCommand {
        client_id: 0,
        sequence: 0,
        request: MvccRequest::Put(PutRequest::new(key.to_string(), value.to_string())),
    });
    machine.apply(LogIndex(index), Term(1), &command.encode());
}

fn ask(machine: &EtcdMachine, stream: u64, request: WatchRequest) {
    assert_eq!(
        machine.query(&MachineQuery::Watch { stream, request }),
        MachineResponse::Watch(Ok(()))
    );
}

fn revisions(responses: &[WatchResponse]) -> Vec<i64> {
    responses
        .iter()
        .flat_map(|r| &r.events)
        .map(|e| e.event.revision())
        .collect()
}

#[test]
fn a_watcher_sees_applied_writes_and_catches_up_after_a_restore() {
    let mut machine = EtcdMachine::new();
    put(&mut machine, 1, "a", "1");
    let hub = machine.watches();
    let stream = hub.lock().open_stream(None);
    ask(
        &machine,
        stream,
        WatchRequest::Create(CreateWatch {
            key: Bytes::from_static(b"a"),
            start_revision: 2,
            ..CreateWatch::default()
        }),
    );
    assert!(hub.is_active());
    put(&mut machine, 2, "a", "2");
    put(&mut machine, 3, "b", "x");
    let mut out = Vec::new();
    hub.lock().drain(stream, &mut out).unwrap();
    assert_eq!(revisions(&out), vec![2, 3]);

    // Another member applied two more writes and snapshotted; this one installs that.
    let mut leader = EtcdMachine::new();
    for (index, (key, value)) in [("a", "1"), ("a", "2"), ("b", "x"), ("a", "3"), ("a", "4")]
        .into_iter()
        .enumerate()
    {
        put(&mut leader, index as u64 + 1, key, value);
    }
    machine.restore(&leader.snapshot()).unwrap();
    let mut out = Vec::new();
    let drained = hub.lock().drain(stream, &mut out).unwrap();
    assert!(drained.needs_catch_up);
    ask(&machine, stream, WatchRequest::CatchUp);
    hub.lock().drain(stream, &mut out).unwrap();
    assert_eq!(revisions(&out), vec![5, 6]);
    put(&mut machine, 6, "a", "5");
    let mut out = Vec::new();
    hub.lock().drain(stream, &mut out).unwrap();
    assert_eq!(revisions(&out), vec![7]);
    hub.lock().close_stream(stream);
    assert_eq!(
        machine.query(&MachineQuery::Watch {
            stream,
            request: WatchRequest::CatchUp
        }),
        MachineResponse::Watch(Err(watch::UnknownStream(stream)))
    );
}
