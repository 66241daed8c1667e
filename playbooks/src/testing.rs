//! Facts in, commands out, for any playbook: run it on a recorded host (a
//! [`tasks::testing::Fixture`]) and get the plan of commands and files it would send, with the
//! properties every playbook must have checked on the way. What the built-in roles' tests
//! use, and what an operator's own playbook tests use (see the `motd` example).

use tasks::testing::{Fixture, plan};
use tasks::{Ctx, Mode, Options, Plan, Selection};

use crate::inventory::Target;
use crate::registry::{Playbook, steps};

/// Runs `pb` for `target` on the recorded host `fixture` in check mode and returns its plan
/// (one `run ...` / `write ...` line per action). Panics, naming the playbook and the host,
/// unless:
/// - the steps that ran are exactly the steps the playbook lists, in order, and none failed;
/// - run again on the state the plan leads to, it sends no modifying command and no step
///   reports a change (idempotence);
/// - everything it reads was declared by its steps: run on a host known only through its
///   declared reads, it reads nothing more (one probe, no extra round trip).
///
/// `replies` answers read-only commands on the converged host (`apt-mark showhold`, say):
/// (command prefix, stdout).
pub fn converge(
    pb: &dyn Playbook,
    target: Target,
    fixture: Fixture,
    replies: &[(&str, &str)],
) -> String {
    converge_answering(pb, target, fixture, &[], replies)
}

/// As [`converge`], with read-only commands answered on the recorded host too (`on_recorded`:
/// what a repository offers, say) and on the converged one (`on_converged`).
pub fn converge_answering(
    pb: &dyn Playbook,
    target: Target,
    fixture: Fixture,
    on_recorded: &[(&str, &str)],
    on_converged: &[(&str, &str)],
) -> String {
    let who = format!("{} on {}", pb.name(), target.name);
    let all = Selection::default();
    let recorded = fixture.clone();

    let answer = |rec: &tasks::testing::Recorder, replies: &[(&str, &str)]| {
        for (prefix, stdout) in replies {
            rec.reply(
                prefix,
                tasks::Output {
                    status: Some(0),
                    stdout: stdout.as_bytes().to_vec(),
                    stderr: vec![],
                },
            );
        }
    };

    // 1. The plan, on the whole recorded host.
    let (mut cx, rec) = fixture.complete().ctx(Mode::Check);
    answer(&rec, on_recorded);
    let mut p = Plan::new();
    pb.plan(target, &mut p)
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    let probe = p.probe(&all);
    let ran = p.run(&mut cx, &all);
    if let Some(e) = ran.error {
        panic!("{who}: {e}");
    }
    let out = plan(&cx);
    let ran: Vec<String> = cx.records().iter().map(|r| r.name.clone()).collect();
    let listed = steps(pb, target).unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(
        ran, listed,
        "{who}: the steps run differ from the steps listed"
    );
    let failed: Vec<_> = cx
        .records()
        .iter()
        .filter(|r| r.outcome.label() == "failed")
        .collect();
    assert!(failed.is_empty(), "{who}: {failed:#?}");

    // 2. The converged host: the state the plan leads to.
    let rec = std::sync::Arc::new(tasks::testing::Recorder::new(target.name));
    answer(&rec, on_converged);
    let mut again = Ctx::with_state(
        Box::new(rec.clone()),
        cx.facts().clone(),
        cx.state().clone(),
        Options::default(),
    );
    let mut p = Plan::new();
    pb.plan(target, &mut p).expect("planned once already");
    if let Some(e) = p.run(&mut again, &all).error {
        panic!("{who}, converged: {e}");
    }
    let second: Vec<String> = again.actions().iter().map(|a| a.to_string()).collect();
    assert!(
        second.is_empty(),
        "{who}: a converged host still gets {second:#?}"
    );
    let changed: Vec<&str> = again
        .records()
        .iter()
        .filter(|r| r.outcome.label() == "changed")
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        changed.is_empty(),
        "{who}: converged but steps changed: {changed:?}"
    );

    // 3. Known only through what the steps declared: nothing more is read.
    let mut known = recorded;
    for dir in &probe.dirs {
        let listing = known.state.listing_from_files(dir);
        known.state.dirs.insert(dir.clone(), listing);
    }
    let in_listed_dir = |path: &str| {
        path.rsplit_once('/')
            .is_some_and(|(dir, _)| probe.dirs.contains(dir))
    };
    known
        .state
        .files
        .retain(|path, _| probe.files.contains(path) || in_listed_dir(path));
    for path in &probe.files {
        known.state.files.entry(path.clone()).or_insert(None);
    }
    known
        .state
        .units
        .retain(|unit, _| probe.units.contains(unit));
    for unit in &probe.units {
        known.state.units.entry(unit.clone()).or_default();
    }
    let (mut cx, rec) = known.ctx(Mode::Check);
    answer(&rec, on_recorded);
    let mut p = Plan::new();
    pb.plan(target, &mut p).expect("planned once already");
    let _ = p.run(&mut cx, &all);
    assert!(
        cx.misses().is_empty(),
        "{who}: read outside the probe (declare these in the steps' reads): {:?}",
        cx.misses()
    );
    out
}
