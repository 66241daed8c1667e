//! nodeprep's task DSL: the `Host` layer and its transports, facts, the per-host state cache,
//! the run context that records every step, and the idempotent task families.
//!
//! A task is a plain function `fn(&mut Ctx, ...) -> Result<Change>`: it reads the current state
//! (through the cache in [`Ctx`]), compares it with the desired one and acts only on the
//! difference. Tasks never print; the runner renders what [`Ctx`] records.

pub mod ca;
pub mod cloudinit;
pub mod containerd;
pub mod ctx;
pub mod disks;
pub mod docker;
pub mod error;
pub mod facts;
pub mod file;
pub mod firewall;
pub mod haproxy;
pub mod hash;
pub mod host;
pub mod hostname;
pub mod hosts;
pub mod kernel;
pub mod kubelet;
pub mod locale;
pub mod network;
pub mod pkg;
pub mod plan;
pub mod proxy;
pub mod reads;
pub mod repos;
pub mod secret;
pub mod shell;
pub mod state;
pub mod sudoers;
pub mod systemd;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timesync;
pub mod update;
pub mod users;
pub mod verify;

pub use ctx::{Action, Change, Ctx, Event, Mode, Options, Outcome, Record, Timeouts};
pub use error::{Error, ErrorKind, Result};
pub use facts::{Facts, OsFamily};
pub use host::{Cmd, Host, Output};
pub use plan::{Plan, ProbeCache, Reads, Selection, StepReads, StepRef};
pub use secret::Secret;

#[cfg(test)]
mod tests {
    /// Only the engine (ctx/) and the primitives (file.rs, pkg.rs, systemd.rs) touch the
    /// state cache: a task family says what happened through `Ctx` (`known`,
    /// `apply_touching`, `forget`, `query_once`...) and the engine keeps the cache coherent.
    /// Test modules may still simulate a host.
    #[test]
    fn only_the_engine_and_primitives_touch_the_cache() {
        const ENGINE: [&str; 7] = [
            "ctx/",
            "file.rs",
            "pkg.rs",
            "systemd.rs",
            "testing/",
            "plan.rs",
            "lib.rs",
        ];
        const CACHE_ACCESS: [&str; 2] = ["state_mut(", "units_mut("];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = Vec::new();
        let mut offenders = Vec::new();
        for path in rust_files(&dir) {
            // `firewall/iptables.rs` for the files of a module folder.
            let name = path
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            // An entry ending in `/` is a module folder: every file of it.
            if ENGINE
                .iter()
                .any(|e| name == *e || (e.ends_with('/') && name.starts_with(e)))
            {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for (i, line) in non_test_lines(&source) {
                if CACHE_ACCESS.iter().any(|a| line.contains(a)) {
                    offenders.push(format!("{name}:{}: {}", i + 1, line.trim()));
                }
            }
            checked.push(name);
        }
        for family in [
            "users.rs",
            "firewall/mod.rs",
            "firewall/iptables.rs",
            "kernel.rs",
            "hostname.rs",
        ] {
            assert!(checked.iter().any(|c| c == family), "{family} not checked");
        }
        assert!(
            offenders.is_empty(),
            "task families touching the cache directly (tell the engine what happened instead):\n{}",
            offenders.join("\n")
        );
    }

    /// The `.rs` files under `dir`, in its module folders too.
    fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        out
    }

    /// The lines of a source file outside its `#[cfg(test)]` items (a module or a function,
    /// up to its closing brace at the same indentation), with their index.
    fn non_test_lines(source: &str) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        let mut skip_until: Option<String> = None;
        let mut pending_cfg_test = false;
        for (i, line) in source.lines().enumerate() {
            if let Some(close) = &skip_until {
                if line == close.as_str() {
                    skip_until = None;
                }
                continue;
            }
            let trimmed = line.trim_start();
            if trimmed.starts_with("#[cfg(test)]") {
                pending_cfg_test = true;
                continue;
            }
            if pending_cfg_test && !trimmed.starts_with("#[") {
                pending_cfg_test = false;
                let indent = &line[..line.len() - trimmed.len()];
                if trimmed.ends_with('{') {
                    skip_until = Some(format!("{indent}}}"));
                }
                continue;
            }
            out.push((i, line));
        }
        out
    }

    #[test]
    fn test_modules_are_left_out() {
        let src = "fn a() {\n    x.state_mut();\n}\n#[cfg(test)]\nmod tests {\n    fn b() {\n        x.state_mut();\n    }\n}\nfn c() {}\n";
        let kept: Vec<&str> = non_test_lines(src).into_iter().map(|(_, l)| l).collect();
        assert_eq!(kept, ["fn a() {", "    x.state_mut();", "}", "fn c() {}"]);
    }
}
