//! Slots and their boot state: which slot runs, what each slot is, and the state
//! changes the updater makes. Pure logic; the environment is read and committed by
//! the caller through a [`bascule_hal::EnvStore`].
pub mod booted;
pub mod chromeos;
pub mod grub_fallback;
pub mod scheme;
pub mod state;

pub use booted::{booted_slot, root_device, BootedSlotError};
pub use scheme::{BootDecision, BootScheme, RaucGrub, RaucUboot, SchemeError, SchemeView};
pub use state::{BadReason, BootState, InstalledImage, SlotInfo, SlotState};
