//! Workspace-level scenarios: the seed's four, the fixture suite and the
//! crash matrix. The scenarios live in `tests/`; this library holds what
//! they share.
