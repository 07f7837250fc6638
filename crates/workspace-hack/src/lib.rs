//! The workspace-hack crate, managed by `cargo hakari` (see
//! `.config/hakari.toml`): every member depends on it, and it depends on
//! every third-party crate that two subsets of the workspace would otherwise
//! build with different features, with the union of those features. So
//! `cargo test -p <one crate>`, `cargo xtask …` and `cargo test --workspace`
//! resolve the same features for every dependency, and share one build of
//! each, DuckDB's C++ included. It holds no code.
