//! etcd's Cluster service: MemberAdd, MemberRemove, MemberUpdate, MemberList and
//! MemberPromote. Membership changes are decided by the leader; a follower passes them on.

use super::unexpected;
use crate::machine::{MachineCommand, MachineResponse, MemberCommand};
use crate::member::forwarding::{forwarded_request, is_forwarded};
use crate::member::members::all_members;
use crate::member::shared::Core;
use crate::member::status::{client_status, etcd_status, leader_changed};
use etcdpb::etcdserverpb as pb;
use raft::{ConfChange, ConfChangeSingle, ConfChangeType, NodeId};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Code, Request, Response, Status};

/// etcd's Cluster service.
#[derive(Clone, Debug)]
pub struct ClusterApi(pub Arc<Core>);

fn invalid_urls() -> Status {
    etcd_status(
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    )
}

fn member_not_found() -> Status {
    etcd_status(Code::NotFound, "etcdserver: member not found")
}

impl ClusterApi {
    /// Membership changes are decided by the leader: a follower passes the request on to the
    /// leader's Cluster service (once; a forwarded request is never forwarded again).
    async fn leader_client(
        &self,
        forwarded: bool,
    ) -> Result<Option<pb::cluster_client::ClusterClient<tonic::transport::Channel>>, Status> {
        let core = &self.0;
        let deadline = Instant::now() + core.identity.request_timeout;
        let leader = core.wait_for_leader(deadline).await?;
        if leader == core.identity.member_id {
            return Ok(None);
        }
        if forwarded {
            return Err(leader_changed());
        }
        Ok(Some(pb::cluster_client::ClusterClient::new(
            core.channel_to(leader).await?,
        )))
    }

    async fn change(&self, change: ConfChangeSingle) -> Result<(), Status> {
        self.0
            .member
            .change_membership(ConfChange {
                changes: vec![change],
            })
            .await
            .map(|_| ())
            .map_err(|error| client_status(&error))
    }

    async fn members_response(&self) -> Result<(pb::ResponseHeader, Vec<pb::Member>), Status> {
        Ok((self.0.header(0), self.0.member_list().await?))
    }

    /// etcd's refusals of a member add: the id (a function of the URLs and token) or one of
    /// the peer URLs is already in the cluster.
    async fn check_new_member(&self, id: u64, peer_urls: &[String]) -> Result<(), Status> {
        let core = &self.0;
        let conf = core.member.membership();
        let current = all_members(&conf);
        if current.contains(&NodeId(id)) {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ));
        }
        let list = core.member_list().await?;
        if list
            .iter()
            .any(|member| member.peer_ur_ls.iter().any(|url| peer_urls.contains(url)))
        {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ));
        }
        Ok(())
    }

    /// Records a new member's URLs before the change that admits it, so every member (and the
    /// transport) knows where to reach it the moment it counts.
    async fn register_urls(&self, id: u64, peer_urls: &[String]) -> Result<(), Status> {
        let register = MemberCommand::Publish {
            id,
            name: Some(String::new()),
            peer_urls: Some(peer_urls.to_vec()),
            client_urls: Some(Vec::new()),
        };
        match self.0.propose(MachineCommand::Member(register)).await? {
            MachineResponse::Member(Ok(())) => Ok(()),
            MachineResponse::Member(Err(reason)) => {
                Err(Status::invalid_argument(format!("etcdserver: {reason}")))
            }
            other => Err(unexpected(other)),
        }
    }
}

fn parse_peer_urls(urls: &[String]) -> Result<(), Status> {
    if urls.is_empty() || urls.len() > crate::machine::MAX_URLS {
        return Err(invalid_urls());
    }
    for url in urls {
        if url.len() > crate::machine::MAX_URL_BYTES
            || !url.starts_with("http://")
            || crate::config::parse_url(url).is_err()
        {
            return Err(invalid_urls());
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterApi {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let add = request.into_inner();
        parse_peer_urls(&add.peer_ur_ls)?;
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_add(forwarded_request(add)).await;
        }
        let id = crate::config::member_id(&add.peer_ur_ls, &self.0.identity.token);
        self.check_new_member(id, &add.peer_ur_ls).await?;
        self.register_urls(id, &add.peer_ur_ls).await?;
        let kind = if add.is_learner {
            ConfChangeType::AddLearner
        } else {
            ConfChangeType::AddVoter
        };
        self.change(ConfChangeSingle {
            change: kind,
            node: NodeId(id),
        })
        .await?;
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(header),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: add.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: add.is_learner,
            }),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let remove = request.into_inner();
        if !all_members(&self.0.member.membership()).contains(&NodeId(remove.id)) {
            return Err(member_not_found());
        }
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_remove(forwarded_request(remove)).await;
        }
        self.change(ConfChangeSingle {
            change: ConfChangeType::RemoveNode,
            node: NodeId(remove.id),
        })
        .await?;
        if remove.id != self.0.identity.member_id {
            // Tidy the table; the configuration already excludes the member, so a failure
            // here only leaves an invisible row behind.
            let forget = MemberCommand::Forget { id: remove.id };
            if let Err(error) = self.0.propose(MachineCommand::Member(forget)).await {
                tracing::debug!(%error, "forgetting a removed member's attributes failed");
            }
        }
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let update = request.into_inner();
        parse_peer_urls(&update.peer_ur_ls)?;
        if !all_members(&self.0.member.membership()).contains(&NodeId(update.id)) {
            return Err(member_not_found());
        }
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_update(forwarded_request(update)).await;
        }
        let publish = MemberCommand::Publish {
            id: update.id,
            name: None,
            peer_urls: Some(update.peer_ur_ls),
            client_urls: None,
        };
        match self.0.propose(MachineCommand::Member(publish)).await? {
            MachineResponse::Member(Ok(())) => {}
            other => return Err(unexpected(other)),
        }
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberListResponse {
            header: Some(header),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let promote = request.into_inner();
        let conf = self.0.member.membership();
        if !all_members(&conf).contains(&NodeId(promote.id)) {
            return Err(member_not_found());
        }
        if !conf.learners.contains(&NodeId(promote.id)) {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ));
        }
        if let Some(mut client) = self.leader_client(forwarded).await? {
            return client.member_promote(forwarded_request(promote)).await;
        }
        // As etcd: a learner is promoted only once its log holds at least 90% of what the
        // leader has committed, so the new voter does not stall commits while it catches up.
        let progress = self
            .0
            .member
            .replication_progress()
            .await
            .map_err(|error| client_status(&error))?;
        let committed = self.0.member.status().commit.get();
        let matched = progress
            .get(&NodeId(promote.id))
            .map_or(0, |index| index.get());
        if (matched as f64) < (committed as f64) * 0.9 {
            return Err(etcd_status(
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ));
        }
        self.change(ConfChangeSingle {
            change: ConfChangeType::AddVoter,
            node: NodeId(promote.id),
        })
        .await?;
        let (header, members) = self.members_response().await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(header),
            members,
        }))
    }
}
