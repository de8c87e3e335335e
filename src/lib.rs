//! bascule: an A/B image updater for embedded Linux.
//!
//! A signed bundle streams from a file, stdin or HTTP into the inactive slot; every
//! byte is hashed as it is written; the slot is marked pending only after the whole
//! image verified and was synced; the bootloader's try counter rolls back a slot that
//! is never confirmed.
//!
//! Layout: [`bundle`] (wire format, signatures), [`slot`] (boot schemes and the slot
//! state machine, pure), [`install`] (planning, pure; the streaming engine over `hal`
//! traits), [`config`] and [`device`] (what `system.toml` describes, opened;
//! [`state_dir`] checks that the shared state is on the data slot), [`ops`]
//! (the commands' logic), [`provision`] (factory provisioning of a blank disk from `layout.toml`), [`health`] (the probe that confirms the booted slot, and
//! its history), [`hooks`] (the operator's commands around an install and a
//! confirmation, run by [`command`]), [`cli`] (argument parsing and printing only).
pub mod bundle;
pub mod cli;
pub mod command;
pub mod config;
pub mod demo;
pub mod device;
pub mod error;
pub mod grub_store;
pub mod health;
pub mod hooks;
pub mod install;
pub mod ops;
pub mod provision;
pub mod slot;
pub mod source;
pub mod state_dir;

pub use error::Error;
