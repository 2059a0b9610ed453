//! Empty: see Cargo.toml. This package is only ever read by `cargo metadata`.
