//! (in progress)

/// Files these tasks read, for the state probe.
pub fn probe_files() -> Vec<String> {
    Vec::new()
}
