//! The build executor: turns a checked plan into layers and images in the store.
//!
//! Each layer-producing step is executed in its own module; `sandbox` runs `RUN` commands.

pub mod events;
pub mod fetch;
pub mod sandbox;
