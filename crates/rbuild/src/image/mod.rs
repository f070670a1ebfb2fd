//! The local image store's commands: `images`/`image …`, `manifest …`, `pull`/`push`,
//! `imagetools …`, and what they share (inspection, templates).

pub mod cmd;
pub mod imagetools;
pub mod inspect;
pub mod manifest;
pub mod prune;
pub mod template;
pub mod transfer;
