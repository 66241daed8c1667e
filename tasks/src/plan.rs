//! A playbook's steps, each declared once: its name, what it reads, and the function that runs
//! it. The runner lists a plan's steps (`cargo xtask playbooks`, `--only`/`--skip`), gathers
//! what the selected steps read into the host's one probe, then runs them in order over a
//! [`Ctx`].
//!
//! A step that installs packages declares them too ([`Plan::installs`]): in apply mode the
//! engine installs those the host lacks, for every selected step, in one package-manager
//! transaction before the first step (see [`crate::pkg`]).
//!
//! ```
//! use tasks::plan::{Plan, Reads};
//! use tasks::{kernel, Change};
//!
//! let mut p = Plan::new();
//! let fstab = p.step("swap disabled in fstab", kernel::READS, kernel::fstab_swap_disabled);
//! p.step("report", Reads::NONE, move |cx| {
//!     // A handler: looks at the change of an earlier step.
//!     Ok(if cx.changed(fstab) { Change::Changed } else { Change::Unchanged })
//! });
//! assert_eq!(p.names(), ["swap disabled in fstab", "report"]);
//! ```

use std::collections::BTreeSet;

pub use crate::ctx::StepRef;
use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::state::Probe;

pub use crate::reads::Reads;

/// The same names to read, beyond the facts (the run lock aside).
fn probes_alike(a: &Probe, b: &Probe) -> bool {
    std::ptr::eq(a, b)
        || (a.files == b.files
            && a.programs == b.programs
            && a.units == b.units
            && a.dirs == b.dirs
            && a.queries == b.queries)
}

/// What a step reads, as [`Plan::step`] takes it: a task module's [`Reads`] (or several), kept
/// as declared, nothing copied; or a [`Probe`] made for the plan (names known only from the
/// inventory), shared by the steps it is given to. [`Plan::probe`] gathers them.
#[derive(Debug, Clone)]
pub struct StepReads(Declared);

#[derive(Debug, Clone)]
enum Declared {
    One(Reads),
    Many(Vec<Reads>),
    Probe(std::sync::Arc<Probe>),
}

impl From<Reads> for StepReads {
    fn from(r: Reads) -> StepReads {
        StepReads(Declared::One(r))
    }
}

impl<const N: usize> From<[Reads; N]> for StepReads {
    fn from(rs: [Reads; N]) -> StepReads {
        StepReads(Declared::Many(rs.to_vec()))
    }
}

impl From<Probe> for StepReads {
    fn from(p: Probe) -> StepReads {
        StepReads(Declared::Probe(std::sync::Arc::new(p)))
    }
}

impl StepReads {
    /// The same names read.
    fn alike(&self, other: &StepReads) -> bool {
        match (&self.0, &other.0) {
            (Declared::One(a), Declared::One(b)) => a.alike(b),
            (Declared::Many(a), Declared::Many(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.alike(b))
            }
            (Declared::Probe(a), Declared::Probe(b)) => probes_alike(a, b),
            _ => false,
        }
    }
}

/// The probe of a plan, kept for the plans after it that read the same (the hosts of one run,
/// most of them, whose plans differ in what their steps do, not in what they read): their probe
/// is then a copy of it, not gathered again from every step. One per run; shared by the
/// threads of a fan-out.
#[derive(Default)]
pub struct ProbeCache(std::sync::Mutex<Option<std::sync::Arc<Kept>>>);

impl std::fmt::Debug for ProbeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeCache")
    }
}

/// A plan's probe and what it was gathered from: the selection, the selected steps' reads in
/// order, the playbook's own.
struct Kept {
    sel: Selection,
    steps: Vec<StepReads>,
    reads: Probe,
    probe: Probe,
}

/// The reads of a plan's selected steps, borrowed while they are gathered: each name copied
/// once into the probe, however many steps read it.
#[derive(Default)]
struct Gathered<'p> {
    files: BTreeSet<&'p str>,
    programs: BTreeSet<&'p str>,
    units: BTreeSet<&'p str>,
    dirs: BTreeSet<&'p str>,
    queries: BTreeSet<Vec<&'p str>>,
    /// Declarations gathered already (a module's constant, read by several of its steps).
    seen: Vec<&'p Reads>,
    seen_probes: Vec<&'p Probe>,
}

impl<'p> Gathered<'p> {
    fn reads(&mut self, r: &'p Reads) {
        if self.seen.iter().any(|s| s.same(r)) {
            return;
        }
        self.seen.push(r);
        self.files.extend(r.files.iter().copied());
        self.programs.extend(r.programs.iter().copied());
        self.units.extend(r.units.iter().copied());
        self.dirs.extend(r.dirs.iter().copied());
        self.queries.extend(r.queries.iter().map(|q| q.to_vec()));
    }

    fn probe(&mut self, p: &'p Probe) {
        if self.seen_probes.iter().any(|s| std::ptr::eq(*s, p)) {
            return;
        }
        self.seen_probes.push(p);
        self.files.extend(p.files.iter().map(String::as_str));
        self.programs.extend(p.programs.iter().map(String::as_str));
        self.units.extend(p.units.iter().map(String::as_str));
        self.dirs.extend(p.dirs.iter().map(String::as_str));
        self.queries.extend(
            p.queries
                .iter()
                .map(|q| q.iter().map(String::as_str).collect()),
        );
    }

    fn declared(&mut self, d: &'p StepReads) {
        match &d.0 {
            Declared::One(r) => self.reads(r),
            Declared::Many(rs) => rs.iter().for_each(|r| self.reads(r)),
            Declared::Probe(p) => self.probe(p),
        }
    }

    fn into_probe(self) -> Probe {
        let owned = |set: BTreeSet<&str>| set.into_iter().map(str::to_string).collect();
        Probe {
            files: owned(self.files),
            programs: owned(self.programs),
            units: owned(self.units),
            dirs: owned(self.dirs),
            queries: self
                .queries
                .into_iter()
                .map(|q| q.into_iter().map(str::to_string).collect())
                .collect(),
            lock: None,
        }
    }
}

type StepFn<'a> = Box<dyn FnOnce(&mut Ctx) -> Result<Change> + Send + 'a>;
type FinallyFn<'a> = Box<dyn FnOnce(&mut Ctx) -> Result<()> + Send + 'a>;
type InstallsFn<'a> = Box<dyn FnOnce(&mut Ctx) -> Result<Vec<String>> + Send + 'a>;

struct Step<'a> {
    name: String,
    reads: StepReads,
    /// A failure is recorded and the next steps still run (checks, not preparations).
    keep_going: bool,
    run: StepFn<'a>,
    /// The packages the step ensures, for the run's one transaction (see [`Plan::installs`]).
    installs: Option<InstallsFn<'a>>,
}

/// The steps of one playbook for one host, in order.
#[derive(Default)]
pub struct Plan<'a> {
    steps: Vec<Step<'a>>,
    /// Run after the steps when none stopped the plan; not a step (nothing is recorded).
    finally: Vec<FinallyFn<'a>>,
    /// Read by the playbook as a whole (files known only from the inventory, ...).
    reads: Probe,
    /// Each step's [`name_key`], in step order.
    keys: Vec<u64>,
    /// A bit for each of `keys` (a name whose bit is not taken is new).
    key_bits: u128,
    /// How old apt's package lists may be before an install refreshes them (default
    /// [`crate::pkg::PACKAGE_LISTS_MAX_AGE`]).
    lists_max_age: Option<std::time::Duration>,
    /// The run's one package transaction comes before the step of this index (default 0:
    /// before the first step; see [`Plan::packages_after`]).
    batch_at: usize,
}

impl std::fmt::Debug for Plan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("steps", &self.names())
            .finish()
    }
}

/// Which steps of a plan run: `--only` and `--skip`, checked against the plan's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

impl Selection {
    /// Names may be given one per flag or as a comma list (`--only "swap off,sysctl applied"`).
    pub fn new<S: AsRef<str>>(only: &[S], skip: &[S]) -> Selection {
        let split = |v: &[S]| -> Vec<String> {
            v.iter()
                .flat_map(|s| s.as_ref().split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        Selection {
            only: split(only),
            skip: split(skip),
        }
    }

    pub fn selects(&self, name: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|o| o == name))
            && !self.skip.iter().any(|s| s == name)
    }

    /// Every name must be one of `known`; the error lists them.
    pub fn validate(&self, what: &str, known: &[String]) -> Result<()> {
        for name in self.only.iter().chain(&self.skip) {
            if !known.iter().any(|k| k == name) {
                return Err(Error::new(
                    ErrorKind::Invalid,
                    format!("{what} has no step `{name}` (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// How a plan ended on one host.
#[derive(Debug)]
pub struct Ran {
    /// Steps left out by `--only`/`--skip` (neither run nor recorded).
    pub not_selected: usize,
    /// The error that stopped the plan, if one did.
    pub error: Option<Error>,
}

impl<'a> Plan<'a> {
    pub fn new() -> Plan<'a> {
        Plan::default()
    }

    /// Declares a step: its name (unique in the plan), what it reads, and what it does. What
    /// it does is `Send`: the runner makes every host's plan before the fan-out, then hands
    /// each to the thread that runs its host.
    pub fn step(
        &mut self,
        name: &str,
        reads: impl Into<StepReads>,
        run: impl FnOnce(&mut Ctx) -> Result<Change> + Send + 'a,
    ) -> StepRef {
        self.push(name, reads.into(), false, Box::new(run))
    }

    /// Declares a check: as [`Plan::step`], but a failure does not stop the steps after it.
    pub fn check(
        &mut self,
        name: &str,
        reads: impl Into<StepReads>,
        run: impl FnOnce(&mut Ctx) -> Result<Change> + Send + 'a,
    ) -> StepRef {
        self.push(name, reads.into(), true, Box::new(run))
    }

    fn push(&mut self, name: &str, reads: StepReads, keep_going: bool, run: StepFn<'a>) -> StepRef {
        // A name is compared with the others only when its key's bit is taken already (its
        // length and ends, see `name_key`): a plan of forty steps asks this forty times a host.
        let key = name_key(name);
        let bit = 1u128 << (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57);
        if self.key_bits & bit != 0 {
            for (k, s) in self.keys.iter().zip(&self.steps) {
                assert!(
                    *k != key || s.name != name,
                    "step `{name}` declared twice in one plan"
                );
            }
        }
        self.key_bits |= bit;
        if self.steps.capacity() == 0 {
            // Room for a role's steps at once, rather than growing four times.
            self.steps.reserve(32);
            self.keys.reserve(32);
        }
        self.keys.push(key);
        self.steps.push(Step {
            name: name.to_string(),
            reads,
            keep_going,
            run,
            installs: None,
        });
        StepRef(self.steps.len() - 1)
    }

    /// Declares the packages the step `step` ensures (with [`crate::pkg::installed`]), given
    /// the host: evaluated after the probe, so it may depend on the OS family and on what is
    /// installed (none where the step would install nothing, or would refuse to). In apply
    /// mode, before the first step, the engine installs those the host lacks, for every
    /// selected step, in one transaction; each step then reports its own as installed. A
    /// package that needs something an earlier step does first (a repository it adds) is not
    /// declared: its step installs it. Check mode evaluates nothing: each step says what it
    /// would install. A declaration that fails leaves its step to install its own packages
    /// (and to fail the same way).
    pub fn installs(
        &mut self,
        step: StepRef,
        packages: impl FnOnce(&mut Ctx) -> Result<Vec<String>> + Send + 'a,
    ) {
        let s = &mut self.steps[step.0];
        assert!(
            s.installs.is_none(),
            "packages of step `{}` declared twice",
            s.name
        );
        s.installs = Some(Box::new(packages));
    }

    /// The run's one package transaction comes after `step` (and after every step declared
    /// before it), not before the first step: the steps that say where packages come from
    /// (repositories, proxy, the CA a mirror's certificate needs) run first. Those steps
    /// install their own packages, if any; their declared packages are not batched.
    pub fn packages_after(&mut self, step: StepRef) {
        self.batch_at = step.0 + 1;
    }

    /// apt's package lists are refreshed before an install only when older than `max` (or
    /// absent, or a repository was added in the run); default
    /// [`crate::pkg::PACKAGE_LISTS_MAX_AGE`].
    pub fn package_lists_max_age(&mut self, max: std::time::Duration) {
        self.lists_max_age = Some(max);
    }

    /// Work after the last step that is not a step of its own: nothing is recorded or
    /// printed for it (gathering what a later stage needs, such as `verify`'s identities).
    /// It runs only when no step stopped the plan; its error stops the host like a step's.
    pub fn finally(&mut self, f: impl FnOnce(&mut Ctx) -> Result<()> + Send + 'a) {
        self.finally.push(Box::new(f));
    }

    /// Files, units or programs the playbook reads beyond its steps' own declarations
    /// (files whose names come from the inventory).
    pub fn reads(&mut self, reads: impl Into<Probe>) {
        let r = reads.into();
        self.reads.files.extend(r.files);
        self.reads.programs.extend(r.programs);
        self.reads.units.extend(r.units);
        self.reads.dirs.extend(r.dirs);
        self.reads.queries.extend(r.queries);
    }

    /// Gives back the room kept for more steps: for a plan kept a while (the runner makes
    /// every host's plan before the fan-out).
    pub fn shrink_to_fit(&mut self) {
        self.steps.shrink_to_fit();
        self.keys.shrink_to_fit();
    }

    /// The steps' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.step_names().map(str::to_string).collect()
    }

    /// The steps' names, in order, borrowed.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// What the selected steps read: the probe of a run. Each name is copied once, however
    /// many steps read it.
    pub fn probe(&self, sel: &Selection) -> Probe {
        let mut g = Gathered::default();
        g.probe(&self.reads);
        for s in self.selected(sel) {
            g.declared(&s.reads);
        }
        g.into_probe()
    }

    /// [`Plan::probe`], or a copy of the probe `cache` keeps when that one was gathered from
    /// the same reads (the same selection, the selected steps reading alike, in order, and the
    /// playbook's own reads alike); else gathered, and kept in `cache` for the next plans.
    pub fn probe_reusing(&self, sel: &Selection, cache: &ProbeCache) -> Probe {
        let kept = cache.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(k) = kept
            && k.sel == *sel
            && probes_alike(&k.reads, &self.reads)
            && self.reads_alike(sel, &k.steps)
        {
            return k.probe.clone();
        }
        let probe = self.probe(sel);
        let kept = Kept {
            sel: sel.clone(),
            steps: self.selected(sel).map(|s| s.reads.clone()).collect(),
            reads: self.reads.clone(),
            probe: probe.clone(),
        };
        *cache.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::sync::Arc::new(kept));
        probe
    }

    fn selected<'s>(&'s self, sel: &'s Selection) -> impl Iterator<Item = &'s Step<'a>> {
        self.steps.iter().filter(move |s| sel.selects(&s.name))
    }

    /// The selected steps read alike `steps`, in order.
    fn reads_alike(&self, sel: &Selection, steps: &[StepReads]) -> bool {
        let mut kept = steps.iter();
        self.selected(sel)
            .all(|s| kept.next().is_some_and(|k| k.alike(&s.reads)))
            && kept.next().is_none()
    }

    /// Runs the selected steps in order, after the one transaction of their packages (apply
    /// mode, see [`Plan::installs`]). A failed step stops the plan (a failed check does not);
    /// steps left out are neither run nor recorded.
    pub fn run(self, cx: &mut Ctx, sel: &Selection) -> Ran {
        cx.set_reads(self.probe(sel));
        self.run_connected(cx, sel)
    }

    /// [`Plan::run`] on a context connected with this plan's probe of `sel`
    /// ([`crate::ctx::Options::probe`] is `self.probe(sel)`, as the runner connects): the
    /// context knows what the plan reads already, and is not told again.
    pub fn run_connected(mut self, cx: &mut Ctx, sel: &Selection) -> Ran {
        let mut not_selected = 0;
        if let Some(max) = self.lists_max_age {
            crate::pkg::set_package_lists_max_age(cx, max);
        }
        // Steps before the transaction install their own packages.
        let batch_at = self.batch_at.min(self.steps.len());
        for s in &mut self.steps[..batch_at] {
            s.installs = None;
        }
        for i in 0..self.steps.len() {
            if i == batch_at
                && !cx.check_mode()
                && let Err(e) = install_batch(cx, &mut self.steps[i..], sel)
            {
                // The host is busy (another run holds it): no step runs.
                let left = self.steps[i..].iter().filter(|s| !sel.selects(&s.name));
                return Ran {
                    not_selected: not_selected + left.count(),
                    error: Some(e),
                };
            }
            let step = &mut self.steps[i];
            if !sel.selects(&step.name) {
                not_selected += 1;
                continue;
            }
            let run: StepFn = std::mem::replace(&mut step.run, Box::new(|_| Ok(Change::Unchanged)));
            match cx.step(&step.name, run) {
                Ok(change) => {
                    if change.changed() {
                        cx.mark_changed(StepRef(i));
                    }
                }
                Err(e) if step.keep_going && e.kind() != crate::error::ErrorKind::Limit => {}
                Err(e) => {
                    return Ran {
                        not_selected,
                        error: Some(e),
                    };
                }
            }
        }
        let error = self
            .finally
            .into_iter()
            .try_for_each(|f| f(cx))
            .err()
            .map(|e| e.on_host(cx.host_name()));
        Ran {
            not_selected,
            error,
        }
    }
}

/// A step name's length, first, middle and last two bytes: names that differ here differ.
fn name_key(name: &str) -> u64 {
    let b = name.as_bytes();
    let n = b.len();
    if n == 0 {
        return 0;
    }
    (n as u64) << 32
        | u64::from(b[0]) << 24
        | u64::from(b[n / 2]) << 16
        | u64::from(b[n - 2.min(n)]) << 8
        | u64::from(b[n - 1])
}

/// The packages the selected steps declare, in step order, installed in one transaction
/// ([`crate::pkg::install_batch`]: those the host lacks).
fn install_batch(cx: &mut Ctx, steps: &mut [Step], sel: &Selection) -> Result<()> {
    let mut wanted: Vec<String> = Vec::new();
    for step in steps.iter_mut().filter(|s| sel.selects(&s.name)) {
        let Some(declared) = step.installs.take() else {
            continue;
        };
        match declared(cx) {
            Ok(names) => {
                for n in names {
                    if !wanted.contains(&n) {
                        wanted.push(n);
                    }
                }
            }
            Err(e) => tracing::debug!(
                host = cx.host_name(),
                step = %step.name,
                "packages not declared ({e}): the step installs its own"
            ),
        }
    }
    crate::pkg::install_batch(cx, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Fixture, ok};
    use crate::{Mode, Outcome};

    fn fail(_: &mut Ctx) -> Result<Change> {
        Err(Error::other("broken"))
    }

    #[test]
    fn selection_takes_repeats_and_comma_lists() {
        let s = Selection::new(&["a, b", "c"], &["d"]);
        assert_eq!(s.only, ["a", "b", "c"]);
        assert!(s.selects("b") && !s.selects("d") && !s.selects("e"));
        let known: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert!(s.validate("playbook x", &known).is_ok());
        let err = Selection::new(&["a,zz"], &[])
            .validate("playbook x", &known)
            .unwrap_err();
        assert!(err.to_string().contains("no step `zz`"), "{err}");
    }

    #[test]
    fn steps_run_in_order_handlers_see_changes_and_left_out_steps_are_not_recorded() {
        let (mut cx, _rec) = Fixture::debian().ctx(Mode::Check);
        let mut p = Plan::new();
        let a = p.step("a", Reads::NONE, |_| Ok(Change::Changed));
        let b = p.step("b", Reads::NONE, |_| Ok(Change::Unchanged));
        p.step("c", Reads::NONE, move |cx| {
            Ok(Change::from_bool(cx.changed(a) && !cx.changed(b)))
        });
        p.step("d", Reads::NONE, |_| Ok(Change::Unchanged));
        let ran = p.run(&mut cx, &Selection::new(&[] as &[&str], &["d"]));
        assert!(ran.error.is_none());
        assert_eq!(ran.not_selected, 1);
        let got: Vec<(&str, &str)> = cx
            .records()
            .iter()
            .map(|r| (r.name.as_str(), r.outcome.label()))
            .collect();
        assert_eq!(got, [("a", "changed"), ("b", "ok"), ("c", "changed")]);
    }

    #[test]
    fn a_failed_step_stops_the_plan_a_failed_check_does_not() {
        let (mut cx, _rec) = Fixture::debian().ctx(Mode::Check);
        let mut p = Plan::new();
        p.check("check", Reads::NONE, fail);
        p.step("step", Reads::NONE, fail);
        p.step("after", Reads::NONE, |_| Ok(Change::Unchanged));
        let ran = p.run(&mut cx, &Selection::default());
        assert!(ran.error.is_some());
        let got: Vec<&str> = cx.records().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(got, ["check", "step"]);
        assert!(matches!(cx.records()[0].outcome, Outcome::Failed(_)));
    }

    const APT_INSTALL: &str = "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120";

    /// Steps installing packages, declared as the roles declare them: locale (`locales kbd`,
    /// kbd already there), the NFS client, containerd, and one whose package is there.
    fn installing_plan<'a>() -> Plan<'a> {
        let mut p = Plan::new();
        let locale = p.step("locale packages", Reads::NONE, |cx| {
            crate::locale::locale_packages(cx, "fr_FR.UTF-8")
        });
        p.installs(locale, |cx| crate::locale::packages(cx, "fr_FR.UTF-8"));
        p.step("no package", Reads::NONE, |_| Ok(Change::Unchanged));
        let nfs = p.step("nfs client", Reads::NONE, crate::pkg::nfs_client);
        p.installs(nfs, |cx| {
            Ok(vec![crate::pkg::nfs_client_package(cx.facts().os).into()])
        });
        let present = p.step("systemd", Reads::NONE, |cx| {
            crate::pkg::installed(cx, &["systemd"])
        });
        p.installs(present, |_| Ok(vec!["systemd".into()]));
        let runtime = p.step(
            "containerd installed",
            Reads::NONE,
            crate::containerd::installed,
        );
        p.installs(runtime, crate::containerd::packages);
        p
    }

    /// Another run holds the host when the one transaction would install: busy at once,
    /// before anything is said to be installing, no fallback to each step's own install, and
    /// no step runs.
    #[test]
    fn a_busy_host_is_busy_at_once() {
        use crate::ctx::{LockHolder, Options};
        use crate::testing::Recorder;
        use std::sync::{Arc, Mutex};
        let f = Fixture::debian().packages(&[("kbd", "2.5.1-1")]);
        let rec = Arc::new(Recorder::new("h"));
        rec.reply(
            "sh -s",
            ok("\n@@np:lock busy\nnodeprep run by ops@elsewhere (pid 7, run x, started at unix time 1)\nsince today\n@@np:end -\n"),
        );
        let said = Arc::new(Mutex::new(Vec::new()));
        let heard = said.clone();
        let opts = Options {
            lock: Some(LockHolder::this_run()),
            sink: Some(Arc::new(move |e: &crate::Event| {
                if let crate::Event::Progress { message, .. } = e {
                    heard.lock().unwrap().push(message.clone());
                }
            })),
            ..Options::default()
        };
        let mut cx = Ctx::with_state(Box::new(rec.clone()), f.facts, f.state, opts);
        let ran = installing_plan().run(&mut cx, &Selection::default());
        let e = ran.error.expect("busy");
        assert_eq!(e.kind(), crate::error::ErrorKind::Busy, "{e}");
        assert!(e.to_string().contains("ops@elsewhere"), "{e}");
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert_eq!(sent, ["sh -s"], "the lock asked for, nothing else");
        assert_eq!(*said.lock().unwrap(), Vec::<String>::new());
        assert!(cx.records().is_empty(), "a step ran");
    }

    fn outcomes(cx: &Ctx) -> Vec<(String, &'static str, Vec<String>)> {
        cx.records()
            .iter()
            .map(|r| (r.name.clone(), r.outcome.label(), r.diffs.clone()))
            .collect()
    }

    /// Apply mode: the packages several steps lack go in one install command before the first
    /// step (after one `apt-get update`: the recorded lists are stale), the host is read again
    /// once, and each step reports its own packages: `changed`, `installed: ...`; the step whose
    /// package was there reports ok, and nothing is installed twice.
    #[test]
    fn one_transaction_for_every_step_each_step_reports_its_own() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("kbd", "2.5.1-1")])
            .ctx(Mode::Apply);
        rec.reply(
            "sh -c 'if command -v rpm",
            ok("systemd 252.33-1~deb12u1\nkbd 2.5.1-1\nlocales 2.36-9+deb12u9\nnfs-common 1:2.6.2-4\ncontainerd 1.6.20~ds1-1+b1\n"),
        );
        let ran = installing_plan().run(&mut cx, &Selection::default());
        assert!(ran.error.is_none(), "{:?}", ran.error);
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert_eq!(
            sent,
            [
                "apt-get update -q -o DPkg::Lock::Timeout=120".to_string(),
                format!("{APT_INSTALL} locales nfs-common containerd"),
                "sh -c 'if command -v rpm >/dev/null 2>&1; then rpm -qa --qf '\\''%{NAME} %{VERSION}-%{RELEASE}\\n'\\''; else dpkg-query -W -f '\\''${db:Status-Abbrev}|${Package}|${Version}\\n'\\'' | sed -n '\\''s/^ii *|//p'\\'' | tr '\\''|'\\'' '\\'' '\\''; fi'".to_string(),
            ]
        );
        let installs = |cx: &Ctx| {
            cx.actions()
                .iter()
                .filter(|a| a.to_string().contains("apt-get install"))
                .count()
        };
        assert_eq!(installs(&cx), 1);
        let diff = |s: &str| vec![format!("installed: {s}\n")];
        assert_eq!(
            outcomes(&cx),
            [
                ("locale packages".into(), "changed", diff("locales")),
                ("no package".into(), "ok", vec![]),
                ("nfs client".into(), "changed", diff("nfs-common")),
                ("systemd".into(), "ok", vec![]),
                ("containerd installed".into(), "changed", diff("containerd")),
            ]
        );
        // The steps themselves sent no install: what the batch installed is reported once.
        assert!(cx.records().iter().all(|r| r.actions.is_empty()));
        let again = crate::pkg::installed(&mut cx, &["nfs-common"]).unwrap();
        assert_eq!(again, Change::Unchanged);
    }

    /// Check mode installs nothing up front: each step says what it would install, as before.
    #[test]
    fn check_mode_lists_each_steps_install() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("kbd", "2.5.1-1")])
            .ctx(Mode::Check);
        let ran = installing_plan().run(&mut cx, &Selection::default());
        assert!(ran.error.is_none(), "{:?}", ran.error);
        assert!(rec.commands().is_empty(), "{:?}", rec.commands());
        let per_step: Vec<(String, Vec<String>)> = cx
            .records()
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.actions.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect();
        let install = |names: &str| format!("run {APT_INSTALL} {names}");
        assert_eq!(
            per_step,
            [
                (
                    "locale packages".into(),
                    vec![
                        "run apt-get update -q -o DPkg::Lock::Timeout=120".into(),
                        install("locales")
                    ]
                ),
                ("no package".into(), vec![]),
                ("nfs client".into(), vec![install("nfs-common")]),
                ("systemd".into(), vec![]),
                ("containerd installed".into(), vec![install("containerd")]),
            ]
        );
        assert_eq!(
            outcomes(&cx)[0],
            (
                "locale packages".into(),
                "changed",
                vec!["would install: locales\n".to_string()]
            )
        );
    }

    /// Docker's containerd.io is containerd: `containerd` is not batched (it would conflict),
    /// and its step reports ok. A step left out by `--skip` has its packages left out too.
    #[test]
    fn containerd_io_present_and_left_out_steps_are_not_batched() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("kbd", "2.5.1-1"), ("containerd.io", "1.7.25-1")])
            .ctx(Mode::Apply);
        rec.reply(
            "sh -c 'if command -v rpm",
            ok("systemd 252.33-1~deb12u1\nkbd 2.5.1-1\nlocales 2.36-9+deb12u9\ncontainerd.io 1.7.25-1\n"),
        );
        let ran = installing_plan().run(&mut cx, &Selection::new(&[] as &[&str], &["nfs client"]));
        assert!(ran.error.is_none(), "{:?}", ran.error);
        let installs: Vec<String> = rec
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.contains("apt-get install"))
            .collect();
        assert_eq!(installs, [format!("{APT_INSTALL} locales")]);
        let got: Vec<(String, &str)> = outcomes(&cx).into_iter().map(|(n, o, _)| (n, o)).collect();
        assert_eq!(
            got,
            [
                ("locale packages".into(), "changed"),
                ("no package".into(), "ok"),
                ("systemd".into(), "ok"),
                ("containerd installed".into(), "ok"),
            ]
        );
    }

    /// A transaction that fails (after its retry) is said, and each step installs its own: the
    /// step whose package cannot be installed fails with the package manager's words, the
    /// others succeed.
    #[test]
    fn a_failed_transaction_leaves_each_step_its_own_install() {
        use std::sync::{Arc, Mutex};
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let f = Fixture::photon();
        let rec = Arc::new(crate::testing::Recorder::new("t"));
        let opts = crate::ctx::Options {
            sink: Some(Arc::new(move |e: &crate::ctx::Event| {
                if let crate::ctx::Event::Progress { message, .. } = e {
                    seen.lock().unwrap().push(message.clone());
                }
            })),
            ..Default::default()
        };
        let mut cx = Ctx::with_state(Box::new(rec.clone()), f.facts, f.state, opts);
        let no_match = crate::host::Output {
            status: Some(1),
            stdout: Vec::new(),
            stderr: b"Error(1011) : No matching packages\n".to_vec(),
        };
        rec.reply(
            "tdnf install -y --quiet glibc-i18n nfs-utils haproxy",
            no_match.clone(),
        );
        rec.reply(
            "tdnf install -y --quiet --refresh glibc-i18n nfs-utils haproxy",
            no_match.clone(),
        );
        rec.reply("tdnf install -y --quiet haproxy", no_match);
        let mut p = Plan::new();
        let locale = p.step("locale packages", Reads::NONE, |cx| {
            crate::locale::locale_packages(cx, "fr_FR.UTF-8")
        });
        p.installs(locale, |cx| crate::locale::packages(cx, "fr_FR.UTF-8"));
        let nfs = p.step("nfs client", Reads::NONE, crate::pkg::nfs_client);
        p.installs(nfs, |_| Ok(vec!["nfs-utils".into()]));
        let haproxy = p.step("haproxy installed", Reads::NONE, crate::haproxy::installed);
        p.installs(haproxy, |_| Ok(vec![crate::haproxy::PACKAGE.into()]));
        let ran = p.run(&mut cx, &Selection::default());
        let err = ran.error.expect("haproxy cannot be installed").to_string();
        assert!(err.contains("No matching packages"), "{err}");
        let sent: Vec<String> = rec
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.starts_with("tdnf"))
            .collect();
        assert_eq!(
            sent,
            [
                "tdnf install -y --quiet glibc-i18n nfs-utils haproxy",
                "tdnf install -y --quiet --refresh glibc-i18n nfs-utils haproxy",
                // After a failed transaction the packages are read again: this recorded host
                // answers that query with nothing, so kbd counts as missing too.
                "tdnf install -y --quiet kbd glibc-i18n",
                "tdnf install -y --quiet nfs-utils",
                // Refreshed once in the run already: not again.
                "tdnf install -y --quiet haproxy",
            ]
        );
        let got: Vec<&str> = cx.records().iter().map(|r| r.outcome.label()).collect();
        assert_eq!(got, ["changed", "changed", "failed"]);
        assert!(
            events
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.contains("in one transaction failed; each step installs its own")),
            "{events:?}"
        );
    }

    /// A plan that reads what the one before it read gets a copy of its probe; one that reads
    /// otherwise (a step, the playbook's own reads, a probe made for the plan, the selection)
    /// gets its own. Each is the probe it gathers itself.
    #[test]
    fn a_probe_is_reused_by_plans_that_read_alike() {
        const A: Reads = Reads::files(&["/etc/a"]).units(&["a.service"]);
        const B: Reads = Reads::files(&["/etc/b"]).programs(&["b"]);
        let plan = |home: &str, live: &str, extra: bool| {
            let mut p = Plan::new();
            p.reads(Probe::default().files(&[format!("/home/{home}/.ssh")]));
            p.step("a", A, |_| Ok(Change::Unchanged));
            p.step("b", [A, B], |_| Ok(Change::Unchanged));
            p.step("live", Probe::default().files(&[live]), |_| {
                Ok(Change::Unchanged)
            });
            if extra {
                p.step("c", Reads::files(&["/etc/c"]), |_| Ok(Change::Unchanged));
            }
            p
        };
        let cache = ProbeCache::default();
        let all = Selection::default();
        let files = |p: &Probe| p.files.iter().cloned().collect::<Vec<_>>();
        for (p, sel) in [
            (plan("x", "/sys/module/overlay", false), &all),
            (plan("x", "/sys/module/overlay", false), &all),
            (plan("y", "/sys/module/overlay", false), &all),
            (plan("y", "/sys/module/br_netfilter", false), &all),
            (plan("y", "/sys/module/br_netfilter", true), &all),
            (
                plan("y", "/sys/module/br_netfilter", true),
                &Selection::new(&["c"], &[]),
            ),
            (plan("y", "/sys/module/br_netfilter", true), &all),
        ] {
            let reused = p.probe_reusing(sel, &cache);
            let own = p.probe(sel);
            assert_eq!(files(&reused), files(&own));
            assert_eq!(reused.units, own.units);
            assert_eq!(reused.programs, own.programs);
        }
        let kept = cache.0.lock().unwrap().clone().unwrap();
        assert!(kept.probe.files.contains("/etc/c"));
    }

    /// Names alike in length and ends are told apart; a name declared twice is refused.
    #[test]
    fn a_step_is_declared_once() {
        let mut p = Plan::new();
        for name in [
            "swap off",
            "swap_off",
            "sw",
            "s",
            "",
            "swap  off",
            "kernel off",
        ] {
            p.step(name, Reads::NONE, |_| Ok(Change::Unchanged));
        }
        assert_eq!(p.len(), 7);
        let twice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.step("swap_off", Reads::NONE, |_| Ok(Change::Unchanged));
        }));
        assert!(twice.is_err());
    }

    #[test]
    fn the_probe_gathers_what_the_selected_steps_read() {
        const A: Reads = Reads::files(&["/etc/a"]).units(&["a.service"]);
        const B: Reads = Reads::files(&["/etc/b"]).programs(&["b"]);
        let mut p = Plan::new();
        p.step("a", A, |_| Ok(Change::Unchanged));
        p.step("b", [A, B], |_| Ok(Change::Unchanged));
        p.reads(Probe::default().files(&["/home/x/.ssh"]));
        let all = p.probe(&Selection::default());
        assert_eq!(
            all.files.iter().collect::<Vec<_>>(),
            ["/etc/a", "/etc/b", "/home/x/.ssh"]
        );
        let only_a = p.probe(&Selection::new(&["a"], &[]));
        assert!(!only_a.files.contains("/etc/b"));
        assert!(only_a.units.contains("a.service"));
    }

    /// A probe made for the plan, shared by steps, and the questions, gathered with the
    /// constants; the probe follows the plan and the selection.
    #[test]
    fn the_probe_follows_the_plan_and_the_selection() {
        const A: Reads = Reads::files(&["/etc/a"]).queries(&[&["locale", "-a"]]);
        let shared = StepReads::from(Probe::default().files(&["/sys/module/overlay"]));
        let mut p = Plan::new();
        p.step("a", A, |_| Ok(Change::Unchanged));
        p.step("live", shared.clone(), |_| Ok(Change::Unchanged));
        p.step("live again", [A, Reads::NONE], |_| Ok(Change::Unchanged));
        let all = p.probe(&Selection::default());
        assert_eq!(
            all.files.iter().collect::<Vec<_>>(),
            ["/etc/a", "/sys/module/overlay"]
        );
        assert_eq!(
            all.queries.iter().collect::<Vec<_>>(),
            [&vec!["locale".to_string(), "-a".to_string()]]
        );
        p.step("b", Reads::files(&["/etc/b"]), |_| Ok(Change::Unchanged));
        assert!(p.probe(&Selection::default()).files.contains("/etc/b"));
        let only_b = Selection::new(&["b"], &[]);
        assert_eq!(
            p.probe(&only_b).files.iter().collect::<Vec<_>>(),
            ["/etc/b"]
        );
        p.reads(Probe::default().files(&["/home/x/.ssh"]));
        assert!(p.probe(&only_b).files.contains("/home/x/.ssh"));
        // The run reads what its selection reads.
        let (mut cx, _rec) = Fixture::debian().ctx(Mode::Check);
        let probe = p.probe(&Selection::default());
        assert!(p.run(&mut cx, &only_b).error.is_none());
        assert_eq!(cx.records().len(), 1);
        assert!(probe.files.contains("/etc/a"));
    }
}
