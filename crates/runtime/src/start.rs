//! Start-up: [`Member::start`] opens (or creates and bootstraps) the WAL, rebuilds the node
//! from it, starts the peer transport, the writer thread and the driver task, and hands back
//! the [`MemberHandle`].

use crate::config::MemberConfig;
use crate::driver::{Driver, DriverChannels};
use crate::error::{MemberFailure, StartError};
use crate::handle::MemberHandle;
use crate::protocol::{Completion, Job, Status};
use crate::snapshot::Snapshots;
use crate::writer::run_writer;
use node::{Node, StateMachine};
use raft::{ConfState, LogIndex, MemStorage, Message, Storage};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use transport::{Transport, TransportConfig};
use wal::{Wal, WalError};

/// Starts members.
#[derive(Debug)]
pub struct Member;

impl Member {
    /// Binds `config.listen_peer` and starts the member (see [`Member::start_with_listener`]).
    pub async fn start<M>(config: MemberConfig, machine: M) -> Result<MemberHandle<M>, StartError>
    where
        M: StateMachine + Send + 'static,
        M::Response: Send + 'static,
        M::Query: Send + 'static,
    {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_peer)
            .await
            .map_err(StartError::Io)?;
        Member::start_with_listener(config, listener, machine)
    }

    /// Starts the member with its peer listener already bound. Opens the WAL in
    /// `config.data_dir` (creating and, for a founder, bootstrapping it if there is none),
    /// rebuilds the node and `machine` (an empty state machine) from it, and spawns the driver
    /// task and the writer thread. Must be called within a tokio runtime.
    pub fn start_with_listener<M>(
        config: MemberConfig,
        listener: TcpListener,
        machine: M,
    ) -> Result<MemberHandle<M>, StartError>
    where
        M: StateMachine + Send + 'static,
        M::Response: Send + 'static,
        M::Query: Send + 'static,
    {
        config.validate()?;
        let wal = open_wal(&config)?;
        let (node, snapshot_files) = rebuild_node(&config, &wal, machine)?;
        let membership = node.raw().conf_state().clone();
        let (transport, inbound) = start_transport(&config, listener)?;
        let peer_addr = transport.local_addr();
        tracing::info!(
            member = config.id.get(),
            peer_addr = %peer_addr,
            first_index = raft::Storage::first_index(node.raw().storage()).get(),
            last_index = raft::Storage::last_index(node.raw().storage()).get(),
            "member started"
        );
        let (writer, jobs, completions) = spawn_writer(&config, wal)?;
        let (commands_tx, commands_rx) = mpsc::channel(config.client_queue_len);
        let (status_tx, status_rx) = watch::channel(Status::default());
        let (membership_tx, membership_rx) = watch::channel(membership);
        let channels = DriverChannels {
            transport,
            inbound,
            commands: commands_rx,
            jobs,
            completions,
            status: status_tx,
            membership: membership_tx,
        };
        let snapshots = Snapshots::new(&config, snapshot_files);
        let driver = Driver::new(&config, node, channels, snapshots);
        let task = tokio::spawn(run_member(driver, writer));
        Ok(MemberHandle::new(
            config.id,
            commands_tx,
            status_rx,
            membership_rx,
            task,
            peer_addr,
        ))
    }
}

/// Rebuilds the node's view of its log from the WAL (the recent entries in memory, older ones
/// read back when wanted) and `machine` from the snapshot, if any. The state machine then
/// holds the snapshot's state; its bytes stay on disk only, read back through the returned
/// writer when a follower needs them.
fn rebuild_node<M: StateMachine>(
    config: &MemberConfig,
    wal: &Wal,
    machine: M,
) -> Result<(Node<M>, wal::SnapshotWriter), StartError> {
    let entries = wal.reader();
    let storage = MemStorage::copy_of_with_entry_loader(
        wal,
        raft::EntryLoader::new(config.resident_log_bytes, move |low, high, max_bytes| {
            entries.entries(low, high, max_bytes)
        }),
    )?;
    let mut raft_config = config.raft.clone();
    raft_config.id = config.id;
    let mut node = Node::new(&raft_config, storage, machine).map_err(StartError::Node)?;
    let snapshot_files = wal.snapshot_writer();
    let reader = snapshot_files.clone();
    node.raw_mut()
        .storage_mut()
        .set_snapshot_loader(raft::SnapshotLoader::new(move |metadata| {
            reader.read(metadata).map_err(|error| error.to_string())
        }));
    Ok((node, snapshot_files))
}

/// Starts the peer transport, connected to every founder but this member.
fn start_transport(
    config: &MemberConfig,
    listener: TcpListener,
) -> Result<(Transport, mpsc::Receiver<Message>), StartError> {
    let mut transport_config =
        TransportConfig::new(config.cluster_id, config.id, config.listen_peer);
    transport_config.peers = config
        .founders
        .iter()
        .filter(|(id, _)| **id != config.id)
        .map(|(id, addr)| (*id, *addr))
        .collect();
    Transport::start_with_listener(transport_config, listener).map_err(StartError::Transport)
}

/// The writer thread, which owns the WAL from here on, and the driver's ends of its queues.
type Writer = (
    std::thread::JoinHandle<()>,
    mpsc::Sender<Job>,
    mpsc::Receiver<Completion>,
);

/// Spawns the writer thread (see [`run_writer`]).
fn spawn_writer(config: &MemberConfig, wal: Wal) -> Result<Writer, StartError> {
    let (persist_tx, persist_rx) = mpsc::channel(config.persist_queue_len);
    let (done_tx, done_rx) = mpsc::channel(config.persist_queue_len);
    let max_batch = config.max_persist_batch;
    let slow_sync = config.tick;
    let writer = std::thread::Builder::new()
        .name(format!("raftkv-wal-{}", config.id.get()))
        .spawn(move || run_writer(wal, persist_rx, done_tx, max_batch, slow_sync))
        .map_err(StartError::Io)?;
    Ok((writer, persist_tx, done_rx))
}

/// The driver task: runs the driver, then waits for the writer to finish.
async fn run_member<M: StateMachine>(
    driver: Driver<M>,
    writer: std::thread::JoinHandle<()>,
) -> Result<(), MemberFailure> {
    let result = driver.run().await;
    // The driver and with it the writer's task queue are gone: the writer finishes
    // what it was given, then exits and releases the WAL's lock.
    let joined = tokio::task::spawn_blocking(move || writer.join()).await;
    match (result, joined) {
        (Err(failure), _) => Err(failure),
        (Ok(()), Ok(Ok(()))) => Ok(()),
        (Ok(()), _) => Err(MemberFailure("the WAL writer panicked".into())),
    }
}

/// Opens the WAL in the data directory, or creates it. An empty log of a founder receives the
/// bootstrap entry naming the founders (also when a previous start died between creating the
/// WAL and writing that entry).
fn open_wal(config: &MemberConfig) -> Result<Wal, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(StartError::Io)?;
    let mut wal = match Wal::open(&config.data_dir, config.wal.clone()) {
        Ok(wal) => wal,
        Err(WalError::NotFound { .. }) => {
            Wal::create(&config.data_dir, config.wal.clone(), ConfState::default())?
        }
        Err(error) => return Err(error.into()),
    };
    let empty = wal.last_index() == LogIndex::ZERO
        && wal.snapshot_metadata().index == LogIndex::ZERO
        && wal.hard_state() == raft::HardState::default();
    if empty && !config.join_existing && config.founders.contains_key(&config.id) {
        let founders = ConfState {
            voters: config.founders.keys().copied().collect(),
            ..ConfState::default()
        };
        let boot = MemStorage::bootstrap(&founders);
        let entries = boot.entries(LogIndex(1), boot.last_index().next(), u64::MAX)?;
        wal.write(Some(boot.hard_state()), &entries)?;
    }
    Ok(wal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::NodeId;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    /// A fresh directory of a founder is bootstrapped; a second start resumes without writing
    /// the bootstrap entry again.
    #[test]
    fn a_founder_bootstraps_a_fresh_directory_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let founders: BTreeMap<NodeId, SocketAddr> =
            [(NodeId(1), addr), (NodeId(2), addr), (NodeId(3), addr)].into();
        let config = MemberConfig::new(NodeId(2), dir.path().join("member"), founders, addr);
        let wal = open_wal(&config).expect("bootstrap");
        assert_eq!(wal.last_index(), LogIndex(1));
        assert_eq!(wal.hard_state().commit, LogIndex(1));
        drop(wal);
        let wal = open_wal(&config).expect("resume");
        assert_eq!(wal.last_index(), LogIndex(1));
        let view = MemStorage::copy_of(&wal).expect("view");
        assert_eq!(view.last_index(), LogIndex(1));

        // Not a founder: the log stays empty until a leader sends it one.
        let mut spare = config.clone();
        spare.id = NodeId(4);
        spare.data_dir = dir.path().join("spare");
        assert_eq!(
            open_wal(&spare).expect("spare").last_index(),
            LogIndex::ZERO
        );
    }
}
