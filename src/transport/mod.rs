//! The transport between replica threads and from clients: bounded lock-free rings, a
//! wake-up primitive for threads that park when idle, and the run token that says which
//! thread runs a replica's round. Everything here is built on
//! [`crate::sync`], so the loom suite checks the same code that runs in production.

pub(crate) mod event;
pub(crate) mod queue;
pub(crate) mod ring;
pub(crate) mod token;
