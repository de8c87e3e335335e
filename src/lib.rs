//! bascule: an A/B image updater.
pub mod slot;
pub mod config;
