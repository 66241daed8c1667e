//! Library side of the runner: what both the `xtask` binary and the integration tests use
//! (test image, lab containers, VM image and VMs).

pub mod image;
pub mod lab;
pub mod prereq;
pub mod vm;
