//! nodeprep's runner library ([`runner`]) and its development tools ([`dev`]: the test image,
//! lab containers, the VM, the test, demo and bench commands). The runner never imports the
//! dev tools.

pub mod dev;
pub mod runner;
