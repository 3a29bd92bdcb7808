//! The TMS server: terminal API, management API, persistence and storage.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod acquirers;
pub mod auth;
pub mod backup;
pub mod blob_gc;
pub mod blobs;
pub mod commands;
pub mod config;
pub mod contact;
pub mod db;
pub mod ddi;
pub mod devices;
pub mod error;
pub mod fleet;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod openapi;
pub mod parameters;
pub mod releases;
pub mod rollouts;
pub mod secrets;
pub mod server_keys;
pub mod store;
pub mod time;
pub mod web;
pub mod webhooks;
