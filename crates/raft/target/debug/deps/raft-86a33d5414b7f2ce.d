/work/main/crates/raft/target/debug/deps/raft-86a33d5414b7f2ce.d: src/lib.rs

/work/main/crates/raft/target/debug/deps/libraft-86a33d5414b7f2ce.rlib: src/lib.rs

/work/main/crates/raft/target/debug/deps/libraft-86a33d5414b7f2ce.rmeta: src/lib.rs

src/lib.rs:
