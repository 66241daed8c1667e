//! End-to-end tests.
mod cli;
mod cli_lab;
mod cluster;
mod custom;
mod faults;
mod fleet;
mod haproxy;
mod lab_smoke;
mod security;
mod takeover;
mod verify;
mod vm;
mod worker;
