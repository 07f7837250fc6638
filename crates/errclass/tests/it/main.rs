//! Integration tests of the classifier: the message corpus (documented and
//! live-captured), property tests and the operator-facing texts.

mod capture;
mod corpus;
mod display;
mod props;
