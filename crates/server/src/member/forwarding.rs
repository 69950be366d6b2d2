//! Cluster calls a follower passes to the leader's Cluster service over its client URL (a
//! membership change is proposed by the leader), and the metadata that marks a request one
//! member passed to another, so it is never passed on again. Writes do not come this way: a
//! follower's writes travel to the leader as Raft proposals on the peer connection
//! ([`super::requests`]).

use super::shared::Core;
use std::time::Duration;
use tonic::Status;
use tonic::transport::Channel;

/// Set on requests one member forwards to another, so they are never forwarded again.
pub const FORWARDED_METADATA: &str = "raftkv-forwarded";

/// A request to another member, marked as forwarded so that it is never forwarded again.
pub fn forwarded_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

/// Whether another member forwarded this request.
pub fn is_forwarded<T>(request: &tonic::Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_METADATA)
}

impl Core {
    /// A connection (made lazily) to a member's client port, at the first client URL it
    /// published; Unavailable until it has published one.
    pub async fn channel_to(&self, member: u64) -> Result<Channel, Status> {
        let table = self.member_table().await?;
        let Some(url) = table
            .get(&member)
            .and_then(|row| row.client_urls.first())
            .cloned()
        else {
            return Err(Status::unavailable(
                "etcdserver: leader has no client URL yet",
            ));
        };
        Ok(tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|error| Status::internal(format!("member URL {url}: {error}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy())
    }
}
