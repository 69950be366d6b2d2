//! Member and cluster ids: derived from the peer URLs and the cluster token alone, so every
//! member computes every founder's id without talking to it.

use sha1::{Digest, Sha1};

/// Domain separator for [`cluster_id`], so a cluster id never equals a member id by construction.
const CLUSTER_ID_DOMAIN: &str = "raftkv-cluster/";

/// First 8 bytes of a SHA-1 digest as a big-endian integer, with 0 (Raft's "no member") mapped to 1.
fn sha1_u64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match u64::from_be_bytes(first) {
        0 => 1,
        id => id,
    }
}

/// A member's id, computed exactly as etcd does for bootstrap members: SHA-1 over the peer URLs
/// sorted as strings and concatenated, then the cluster token; the first 8 bytes big-endian.
///
/// Using etcd's formula means a cluster started with the same flags shows the same ids as etcd,
/// and every member derives every bootstrap member's id from `--initial-cluster` alone. The URLs
/// are sorted first so the order they are listed in does not matter. A digest whose first 8 bytes
/// are 0 (probability 2^-64) maps to 1, because id 0 means "no member" in Raft and etcd's API.
/// Unlike etcd's runtime `member add`, no timestamp is mixed in, so a member re-added with the
/// same URLs and token gets its old id back.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut sorted: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut parts: Vec<&[u8]> = sorted.iter().map(|u| u.as_bytes()).collect();
    parts.push(token.as_bytes());
    sha1_u64(&parts)
}

/// The cluster's id: SHA-1 of `"raftkv-cluster/"` + token, first 8 bytes big-endian, 0 mapped to 1.
///
/// This deliberately differs from etcd, which hashes the bootstrap member ids: a member joining
/// with `--initial-cluster-state existing` must know the cluster id before contacting anyone (to
/// stamp its data directory and reject peers of another cluster), and the token is what names a
/// cluster in etcd too. Clients never check the cluster id (etcd 3.4), so the difference is
/// invisible to them. The prefix keeps it apart from any member id.
pub fn cluster_id(token: &str) -> u64 {
    sha1_u64(&[CLUSTER_ID_DOMAIN.as_bytes(), token.as_bytes()])
}
