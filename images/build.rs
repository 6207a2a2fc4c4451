//! Compiles the CRIU-compatible `.proto` files in `proto/` into Rust with
//! protox (a pure-Rust protobuf compiler, so no `protoc` is needed) and
//! prost-build. Output lands in `OUT_DIR` as `criu.rs` and `criu.rpc.rs`, plus the
//! encoded descriptor set `criu.fds` for tools that decode images dynamically.

use std::path::PathBuf;

fn main() {
    let proto_dir = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");

    let mut files: Vec<PathBuf> = std::fs::read_dir(&proto_dir)
        .expect("read proto/")
        .map(|e| e.expect("read proto/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::compile(&files, [&proto_dir]).expect("compile .proto files with protox");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    std::fs::write(out.join("criu.fds"), prost::Message::encode_to_vec(&fds))
        .expect("write the descriptor set");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate Rust from the descriptor set");
}
