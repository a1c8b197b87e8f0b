//! `chasi-layers`: the content-addressed, deduplicating, compressing, self-verifying layer store.
