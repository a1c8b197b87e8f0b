//! tmp
mod fsroot;
mod model;
mod reference;
mod template;
mod yaml;
pub use model::*;
