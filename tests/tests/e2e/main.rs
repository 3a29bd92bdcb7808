//! End-to-end tests: one binary, one module per area.

mod accounts;
mod cli;
mod config;
mod database;
mod operations;
mod storage;
