//! The TMS domain, as pure code: no HTTP, no database.
//!
//! `wire` holds the types that cross the network, shared by the server, the CLI
//! and the end-to-end tests so that they cannot drift apart.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod commands;
pub mod contact;
pub mod ddi;
pub mod devices;
pub mod parameters;
pub mod releases;
pub mod rollouts;
pub mod store;
pub mod targets;
pub mod webhooks;
pub mod wire;
