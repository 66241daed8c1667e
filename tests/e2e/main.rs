//! End-to-end tests.
mod lab_smoke;
mod worker;
mod cli;
mod custom;
