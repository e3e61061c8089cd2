//! corum (placeholder crate docs, replaced below)
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod protocol;
mod session;
#[allow(dead_code)]
mod sync;
