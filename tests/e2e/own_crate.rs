//! An operator's crate of their own, as the README's "A crate of your own" shows it: each file
//! taken from the README's text as it is (the block after `<!-- own-crate: PATH -->`), written
//! beside a `nodeprep` link to this checkout (the README's `../nodeprep`), built offline, its
//! own tests run, and its binary's exit codes checked. No container.

use std::path::{Path, PathBuf};

use nodeprep_tests::workspace_dir;

/// The files the README shows for the crate: `(path, text)`, in the README's order.
fn readme_files(readme: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut rest = readme;
    while let Some(at) = rest.find("<!-- own-crate: ") {
        let after = &rest[at + "<!-- own-crate: ".len()..];
        let (path, after) = after.split_once(" -->\n").expect("a marker line");
        let after = after
            .strip_prefix("```")
            .unwrap_or_else(|| panic!("{path}: the marker is followed by a code block"));
        let (_lang, body) = after.split_once('\n').expect("a fence line");
        let end = body.find("\n```\n").expect("a closing fence");
        files.push((path.to_string(), body[..=end].to_string()));
        rest = &body[end..];
    }
    files
}

/// The workspace's target directory (this test binary lives in it): the crate is built there,
/// so nodeprep's dependencies, built already, are built once.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf()
}

fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut argv: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    argv.extend([
        "--offline".into(),
        "--target-dir".into(),
        target_dir().into(),
    ]);
    let out = duct::cmd(cargo, argv)
        .dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The crate's binary with `args`, over `inventory`: exit code, stdout, stderr.
fn site(crate_dir: &Path, inventory: &Path, args: &[&str]) -> (i32, String, String) {
    let out = duct::cmd(target_dir().join("debug").join("nodeprep-site"), args)
        .dir(crate_dir)
        .env("NODEPREP_INVENTORY", inventory)
        .env("NO_COLOR", "1")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_readmes_own_crate_builds_passes_its_test_and_exits_1_on_bad_input() {
    let ws = workspace_dir();
    let readme = std::fs::read_to_string(ws.join("README.md")).unwrap();
    let files = readme_files(&readme);
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Cargo.toml",
            "inventory.toml",
            "src/main.rs",
            "src/syslog.rs"
        ]
    );

    // A fixed place, so that a second run rebuilds only what changed.
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("own-crate");
    let crate_dir = scratch.join("nodeprep-site");
    if crate_dir.exists() {
        std::fs::remove_dir_all(crate_dir.join("src")).unwrap();
    }
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    let link = scratch.join("nodeprep");
    if std::fs::read_link(&link).ok().as_deref() != Some(ws.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&ws, &link).unwrap();
    }
    for (path, text) in &files {
        std::fs::write(crate_dir.join(path), text).unwrap();
    }
    // The workspace's versions of the dependencies: nothing to fetch (offline).
    std::fs::copy(ws.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();

    cargo(&crate_dir, &["build", "--quiet"]);
    cargo(&crate_dir, &["test", "--quiet"]);

    let inventory = crate_dir.join("inventory.toml");
    let (code, stdout, stderr) = site(&crate_dir, &inventory, &["run", "nothing", "--all"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no playbook `nothing` (known: syslog)"),
        "{stderr}"
    );
    let (code, stdout, stderr) = site(&crate_dir, &inventory, &["inventory", "check"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("ok, 1 hosts"), "{stdout}");
    assert!(!stdout.contains("warning"), "{stdout}");
    let (code, stdout, _) = site(&crate_dir, &inventory, &["playbooks"]);
    assert_eq!(code, 0);
    for step in ["rsyslog installed", "log forwarding", "rsyslog running"] {
        assert!(stdout.contains(step), "{step} not in:\n{stdout}");
    }

    // The playbook's declared type: a port that is no port is refused before any run, and
    // so is the playbook's own refusal, each naming the file, the host and the field.
    let bad = scratch.join("bad.toml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    std::fs::write(
        &bad,
        format!("{text}\n[hosts.web1.vars.syslog]\nport = \"tcp\"\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = site(&crate_dir, &bad, &["inventory", "check"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let expected = format!(
        "{}:{}: host web1: vars.syslog.port: invalid type: string \"tcp\", expected u16 (playbook syslog reads it)",
        bad.display(),
        text.lines().count() + 3
    );
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
    std::fs::write(
        &bad,
        format!("{text}\n[hosts.web1.vars.syslog]\nserver = \"\"\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = site(&crate_dir, &bad, &["run", "syslog", "--all", "--check"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let expected = format!(
        "{}: host web1: vars.syslog.server: empty: name the log server",
        bad.display()
    );
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
}
