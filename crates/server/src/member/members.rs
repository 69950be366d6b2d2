//! The member list: every member of the configuration in force, with what it published to the
//! replicated member table (or what `--initial-cluster` says about a founder that has not), and
//! where the transport dials each peer.

use super::shared::Core;
use super::status::client_status;
use crate::machine::{MachineQuery, MachineResponse, MemberAttributes};
use etcdpb::etcdserverpb as pb;
use raft::{ConfState, NodeId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tonic::Status;

impl Core {
    /// The member table from the local state machine.
    pub async fn member_table(&self) -> Result<BTreeMap<u64, MemberAttributes>, Status> {
        match self.member.read_local(MachineQuery::Members).await {
            Ok(MachineResponse::Members(members)) => Ok(members),
            Ok(other) => Err(Status::internal(format!("unexpected answer {other:?}"))),
            Err(error) => Err(client_status(&error)),
        }
    }

    /// etcd's member list: every member of the configuration in force, sorted by id, with
    /// what it published (or what `--initial-cluster` says about a founder that has not).
    pub async fn member_list(&self) -> Result<Vec<pb::Member>, Status> {
        let table = self.member_table().await?;
        Ok(members_of(
            &self.member.membership(),
            &table,
            &self.identity.initial,
        ))
    }

    /// The peers the transport should dial: every member of the configuration but this one,
    /// at the first peer URL it published (or that `--initial-cluster` gave).
    pub async fn peer_addresses(&self) -> Result<BTreeMap<NodeId, SocketAddr>, Status> {
        let table = self.member_table().await?;
        let conf = self.member.membership();
        let mut peers = BTreeMap::new();
        for id in all_members(&conf) {
            if id.get() == self.identity.member_id {
                continue;
            }
            let row = table.get(&id.get());
            let initial = self.identity.initial.get(&id.get());
            let name = row
                .map(|row| row.name.as_str())
                .filter(|name| !name.is_empty())
                .or(initial.map(|(name, _, _)| name.as_str()));
            let overridden = name.and_then(|name| self.identity.dial_overrides.get(name).copied());
            let published = row
                .and_then(|row| row.peer_urls.first())
                .and_then(|url| crate::config::parse_url(url).ok());
            let initial = initial.map(|(_, _, addr)| *addr);
            if let Some(addr) = overridden.or(published).or(initial) {
                peers.insert(id, addr);
            }
        }
        Ok(peers)
    }
}

/// Every member of a configuration (voters, learners, and during a joint change the outgoing
/// side too), sorted.
pub fn all_members(conf: &ConfState) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = conf
        .voters
        .iter()
        .chain(&conf.voters_outgoing)
        .chain(&conf.learners)
        .chain(&conf.learners_next)
        .copied()
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Builds etcd's member list from the configuration and the member table.
pub fn members_of(
    conf: &ConfState,
    table: &BTreeMap<u64, MemberAttributes>,
    initial: &BTreeMap<u64, (String, Vec<String>, SocketAddr)>,
) -> Vec<pb::Member> {
    all_members(conf)
        .into_iter()
        .map(|id| {
            let row = table.get(&id.get());
            let peer_urls = row
                .map(|row| row.peer_urls.clone())
                .filter(|urls| !urls.is_empty())
                .or_else(|| initial.get(&id.get()).map(|(_, urls, _)| urls.clone()))
                .unwrap_or_default();
            pb::Member {
                id: id.get(),
                // A founder that has not published yet is still known by its
                // `--initial-cluster` name, as in etcd.
                name: row
                    .map(|row| row.name.clone())
                    .filter(|name| !name.is_empty())
                    .or_else(|| initial.get(&id.get()).map(|(name, _, _)| name.clone()))
                    .unwrap_or_default(),
                peer_ur_ls: peer_urls,
                client_ur_ls: row.map(|row| row.client_urls.clone()).unwrap_or_default(),
                is_learner: conf.learners.contains(&id) && !conf.voters.contains(&id),
            }
        })
        .collect()
}
