//! `chasi-runtime`: the node agent that applies images and deltas on a node (A/B slots, verify, rollback).
//!
//! Its implementation lands with the delta and node-runtime issue; the crate exists now so the
//! workspace layout and the one-way dependency rule (runtime → layers, never → compiler) are fixed.
