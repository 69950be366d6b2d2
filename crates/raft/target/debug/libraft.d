/work/main/crates/raft/target/debug/libraft.rlib: /work/main/crates/raft/src/lib.rs
