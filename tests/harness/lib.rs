//! Container and VM harness for nodeprep integration tests: the test image, lab containers, the
//! VM and the runner binary, on top of `xtask::dev::image`, `xtask::dev::lab` and
//! `xtask::dev::vm`. Both the lab and the VM are a [`Testbed`]: tests reach their hosts through
//! the same calls.
//!
//! Tests fail (never skip) when docker, QEMU or the images are missing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::Value;

mod snapshot;

pub use snapshot::{Snapshot, declared_reads, os_family, package_list, snapshot, snapshot_of};
pub use xtask::dev::lab::{Lab, RootLogin};
pub use xtask::dev::offline::Offline;
pub use xtask::dev::testbed::{Host, Testbed};
pub use xtask::dev::vm::Vm;

/// Prefix of every container and network the tests start.
const PREFIX: &str = "nodeprep-test";

/// Workspace root (this package lives in `<workspace>/tests`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// The image lab containers run: `NODEPREP_TEST_IMAGE` as is when set, else the recipe image of
/// the base `NODEPREP_BASE` names (Debian by default), built once.
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            given_or_built("NODEPREP_TEST_IMAGE", "nodeprep-test-image.lock", |sh| {
                xtask::dev::image::ensure(sh)
            })
        })
        .clone()
}

/// The hardened image (Debian with a fresh Photon's sshd, sudo, firewall and cloud-init
/// traits: `xtask::dev::image::hardened`): `NODEPREP_TEST_HARDENED_IMAGE` as is when set,
/// else built once from its recipe, whatever the base.
pub fn hardened_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            given_or_built(
                "NODEPREP_TEST_HARDENED_IMAGE",
                "nodeprep-test-hardened-image.lock",
                xtask::dev::image::hardened::ensure,
            )
        })
        .clone()
}

/// The network services image (tinyproxy, apt-cacher-ng and socat on Debian:
/// `xtask::dev::image::netsvc`): `NODEPREP_TEST_NETSVC_IMAGE` as is when set, else built once
/// from its recipe.
pub fn netsvc_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            given_or_built(
                "NODEPREP_TEST_NETSVC_IMAGE",
                "nodeprep-test-netsvc-image.lock",
                xtask::dev::image::netsvc::ensure,
            )
        })
        .clone()
}

/// The image the environment variable `var` names, else the one `build` makes (or finds up to
/// date), under an fs lock in the target directory so that parallel test processes never
/// build it twice.
fn given_or_built(
    var: &str,
    lock_name: &str,
    build: impl FnOnce(&xshell::Shell) -> anyhow::Result<String>,
) -> String {
    if let Some(image) = std::env::var(var).ok().filter(|s| !s.is_empty()) {
        return image;
    }
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("creating target/");
    let lock_path = target.join(lock_name);
    let lock =
        File::create(&lock_path).unwrap_or_else(|e| panic!("opening {}: {e}", lock_path.display()));
    // `File::lock` is Rust 1.89+ (newer than the workspace's rust-version).
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    let sh = xshell::Shell::new().expect("xshell");
    let tag = build(&sh).unwrap_or_else(|e| panic!("test image unavailable: {e:#}"));
    drop(lock);
    tag
}

/// The runner binary: `NODEPREP_BIN` when set, else `<target>/debug/xtask`.
pub fn runner_bin() -> PathBuf {
    let bin = std::env::var_os("NODEPREP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join("xtask"));
    assert!(
        bin.is_file(),
        "runner binary {} is missing: run `cargo build -p xtask` or `cargo xtask test`",
        bin.display()
    );
    bin
}

/// The runner, with `NODEPREP_INVENTORY=<inventory>` and `NO_COLOR=1`; the caller adds args.
pub fn runner(inventory: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(runner_bin());
    cmd.env("NODEPREP_INVENTORY", inventory)
        .env("NO_COLOR", "1");
    cmd
}

/// Starts a lab of `(name, role)` hosts on [`image`]; panics with the reason if it can't.
pub fn lab(hosts: &[(&str, &str)]) -> Lab {
    let image = image();
    let sh = xshell::Shell::new().expect("xshell");
    Lab::start(&sh, &image, PREFIX, hosts)
        .unwrap_or_else(|e| panic!("starting lab {hosts:?} on {image}: {e:#}"))
}

/// Starts a lab of `(name, role)` hosts on [`hardened_image`]: root is refused by sshd, so
/// the lab is up when each sshd turns root's key away (see [`RootLogin::Refused`]).
pub fn hardened_lab(hosts: &[(&str, &str)]) -> Lab {
    let image = hardened_image();
    let sh = xshell::Shell::new().expect("xshell");
    Lab::start_with(&sh, &image, PREFIX, hosts, RootLogin::Refused)
        .unwrap_or_else(|e| panic!("starting hardened lab {hosts:?} on {image}: {e:#}"))
}

/// Starts `(name, role)` hosts of [`image`] on a network with no route out, reached (ssh) and
/// served (proxy, mirror) by one container of [`netsvc_image`] (see [`Offline`]).
pub fn offline_lab(hosts: &[(&str, &str)]) -> Offline {
    let (image, netsvc) = (image(), netsvc_image());
    let sh = xshell::Shell::new().expect("xshell");
    Offline::start(&sh, &image, &netsvc, PREFIX, hosts)
        .unwrap_or_else(|e| panic!("starting offline lab {hosts:?} on {image} and {netsvc}: {e:#}"))
}

/// Boots a VM of the VM image (built first if needed) as host `name` of `role`; panics with the
/// reason if it can't.
pub fn vm(name: &str, role: &str) -> Vm {
    let started = Instant::now();
    let sh = xshell::Shell::new().expect("xshell");
    let image = xtask::dev::vm::ensure(&sh, &xtask::dev::vm::default_cache_dir())
        .unwrap_or_else(|e| panic!("vm image: {e:#}"));
    eprintln!("vm image ready after {:.1?}", started.elapsed());
    Vm::start(&image, name, role).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The outcome (`ok`, `changed`, `skipped`, `failed`...) of step `step` in a run's JSON
/// events; panics, showing the events, when no such step ran.
pub fn outcome<'a>(events: &'a [Value], step: &str) -> &'a str {
    events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == step)
        .and_then(|e| e["outcome"].as_str())
        .unwrap_or_else(|| panic!("no step {step} in {events:#?}"))
}

/// The recap event of `host` in a run's JSON events; panics, showing the events, when there is
/// none.
pub fn recap<'a>(events: &'a [Value], host: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "recap" && e["host"] == host)
        .unwrap_or_else(|| panic!("no recap for {host} in {events:#?}"))
}

/// The arguments of `<command> k8s-worker --host <host>` limited to `steps`, each after its own
/// `--only`: `worker_only("run", HOST, &["hostname"])` is
/// `run k8s-worker --host HOST --only hostname`.
pub fn worker_only<'a>(command: &'a str, host: &'a str, steps: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![command, "k8s-worker", "--host", host];
    for step in steps {
        args.extend(["--only", step]);
    }
    args
}
