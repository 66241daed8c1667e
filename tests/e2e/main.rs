//! End-to-end tests.
mod cli;
mod cluster;
mod custom;
mod haproxy;
mod lab_smoke;
mod verify;
mod vm;
mod worker;
mod fleet;
mod cli_lab;
mod faults;
mod security;
