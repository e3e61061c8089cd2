//! The transport between replica threads and from clients: bounded lock-free rings, a
//! wake-up primitive for threads that park when idle, the run token that says which
//! thread runs a replica's round, the reader indicators in front of each copy (and the
//! thread numbers that give a reading thread its own), the write board where sessions
//! leave writes for whichever replica leads, and the spin lock that guards a session.
//! Everything here is built on [`crate::sync`], so the loom suite checks the same code
//! that runs in production (`copy_lock.rs` says where its loom form differs).

pub(crate) mod board;
pub(crate) mod copy_lock;
pub(crate) mod event;
pub(crate) mod reader;
pub(crate) mod ring;
pub(crate) mod spin_lock;
pub(crate) mod token;
