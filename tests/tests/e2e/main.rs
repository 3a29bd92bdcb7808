//! End-to-end tests: one binary, one module per area.

mod accounts;
mod attacks;
mod cli;
mod commands;
mod config;
mod console;
mod contact;
mod database;
mod ddi;
mod devices;
mod operations;
mod parameters;
mod portal;
mod releases;
mod secrets;
mod storage;
mod store;
mod walkthrough;
mod webhooks;
