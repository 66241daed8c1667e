//! Test doubles, apart from the product's transports (`host/`): compiled for tests and with the
//! `testing` feature only.
//!
//! - [`Recorder`]: a host that runs nothing, records every command and answers from canned
//!   replies. Facts-in/commands-out tests drive tasks with it.
//! - [`Fixture`]: a recorded host's state (Photon OS 5.0 built from its real default files
//!   ([`photon_files`]), Debian 12, Rocky 9), fed to a [`Ctx`] over a [`Recorder`]. Tests
//!   then assert the plan: [`plan`], [`actions`].
//! - [`simulated`]: a host answering like a converged host after a set round trip, the
//!   benchmark's fleet (`run --simulate-rtt-ms`, `cargo xtask bench --simulated N`), with
//!   [`reply`]: what a host in a known state answers to the probe's scripts.

mod fixture;
mod recorder;
pub mod reply;
pub mod simulated;

pub use fixture::{Fixture, photon_files};
pub use recorder::Recorder;

use crate::ctx::Ctx;
use crate::host::Output;

/// What a host answers to a read of these files (0644 root:root each), in the probe's format:
/// for a [`Recorder`] to give back to `sh -s` on a cache miss.
pub fn files_reply(files: &[(&str, &str)]) -> String {
    let mut state = crate::state::State::default();
    for (path, content) in files {
        state.files.insert(
            path.to_string(),
            Some(crate::state::FileState {
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                is_dir: false,
                content: content.as_bytes().to_vec(),
            }),
        );
    }
    let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    let asked =
        reply::asked(&crate::state::files_script(&paths)).expect("a files script is read back");
    reply::reply(&state, &asked)
}

/// The plan a context recorded: its modifying actions, one per line (`run ...`, `write ...`).
/// What facts-in/commands-out tests assert.
pub fn plan(cx: &Ctx) -> String {
    cx.actions().iter().map(|a| format!("{a}\n")).collect()
}

/// The same plan, one action a string.
pub fn actions(cx: &Ctx) -> Vec<String> {
    cx.actions().iter().map(|a| a.to_string()).collect()
}

/// A command's successful output: exit status 0, `stdout`, nothing on stderr (a canned reply
/// for [`Recorder::reply`]).
pub fn ok(stdout: &str) -> Output {
    Output {
        status: Some(0),
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

/// Nothing reached the host: the recorder was sent no command at all (check mode, whose plan
/// is in the context only, or nothing to do).
#[track_caller]
pub fn assert_sent_nothing(rec: &Recorder) {
    let sent = rec.commands();
    assert!(sent.is_empty(), "the host was sent {sent:?}");
}

/// `argv` run on this machine: a real tool checking what a test wrote (`haproxy -c`,
/// `iptables-restore --test`). `None` when the tool is not installed here, said on stderr;
/// except in CI (`CI=true`), which installs it (`apt-get install -y PACKAGE`): there a missing
/// tool fails the test. `what` is what the tool was to check.
pub fn run_checker(argv: &[&str], package: &str, what: &str) -> Option<Output> {
    use crate::host::{Cmd, Host, Local};
    let out = Local::new("t")
        .exec(&Cmd::new(argv))
        .ok()
        .filter(|o| o.status != Some(127));
    if out.is_none() {
        let tool = argv[0];
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "{tool} is not installed: CI must install it (apt-get install -y {package}) to check {what}"
        );
        eprintln!("{tool} is not installed here: {what} not checked");
    }
    out
}
