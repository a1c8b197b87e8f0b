//! `chasi-runtime`: the node agent that applies images and deltas on a node (A/B slots, verify, rollback).
//!
//! Its implementation lands with the delta and node-runtime issue, which also gives it its real
//! dependencies (it has none in the workspace yet); the crate exists now so the workspace layout
//! and the one-way rule are fixed: the runtime never depends on the compiler or the builder.
