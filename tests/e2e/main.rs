//! End-to-end tests.
mod access;
mod cli;
mod cli_lab;
mod cluster;
mod custom;
mod faults;
mod fleet;
mod haproxy;
mod hardened;
mod lab_smoke;
mod os;
mod persist;
mod security;
mod takeover;
mod verify;
mod vm;
mod worker;
