//! Workspace scenarios: sysdb against the state folders that real crashes
//! and real damage left (`fixtures/`, made by `cargo xtask fixtures`), and
//! the reliability suite (kills, corruption, faults, races).

mod fixtures;
mod reliability;
