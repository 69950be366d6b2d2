//! Generates the etcd API code from `proto/` with a pure-Rust protobuf parser (`protox`), so
//! building raftkv never needs a `protoc` binary on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["mvccpb/kv.proto", "etcdserverpb/rpc.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Every `bytes` field becomes `bytes::Bytes`, the type kv::mvcc uses, so keys and
        // values move between the wire and the store by reference count, not by copy.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
