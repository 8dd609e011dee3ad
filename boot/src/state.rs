//! The highest release version this machine accepted (`nullos-state`): its format and the
//! data disk's atomic copy live in [`interfaces::floor_state`], shared with the node's `init`,
//! which raises the data disk's floor once its release reached `nullos: ready`.

pub use interfaces::floor_state::*;
