//! A playbook's steps, each declared once: its name, what it reads, and the function that runs
//! it. The runner lists a plan's steps (`cargo xtask playbooks`, `--only`/`--skip`), gathers
//! what the selected steps read into the host's one probe, then runs them in order over a
//! [`Ctx`].
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

pub use crate::ctx::StepRef;
use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::state::Probe;

/// What a task reads from a host, declared beside the task as a constant. The engine gathers
/// the reads of a run's steps into its one probe; whatever a task reads that is not declared
/// still works, at the cost of one more round trip (a "miss", logged at `-vv`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reads {
    pub files: &'static [&'static str],
    pub units: &'static [&'static str],
    pub programs: &'static [&'static str],
    /// Directories listed, with every regular file in them read (see [`Probe::dirs`]).
    pub dirs: &'static [&'static str],
}

impl Reads {
    pub const NONE: Reads = Reads {
        files: &[],
        units: &[],
        programs: &[],
        dirs: &[],
    };

    pub const fn files(files: &'static [&'static str]) -> Reads {
        Reads {
            files,
            units: &[],
            programs: &[],
            dirs: &[],
        }
    }

    pub const fn units(self, units: &'static [&'static str]) -> Reads {
        Reads { units, ..self }
    }

    pub const fn programs(self, programs: &'static [&'static str]) -> Reads {
        Reads { programs, ..self }
    }

    pub const fn dirs(self, dirs: &'static [&'static str]) -> Reads {
        Reads { dirs, ..self }
    }
}

impl From<Reads> for Probe {
    fn from(r: Reads) -> Probe {
        Probe::default()
            .files(r.files)
            .units(r.units)
            .programs(r.programs)
            .dirs(r.dirs)
    }
}

impl<const N: usize> From<[Reads; N]> for Probe {
    fn from(rs: [Reads; N]) -> Probe {
        rs.into_iter()
            .fold(Probe::default(), |p, r| p.merge(&Probe::from(r)))
    }
}

type StepFn<'a> = Box<dyn FnOnce(&mut Ctx) -> Result<Change> + 'a>;
type FinallyFn<'a> = Box<dyn FnOnce(&mut Ctx) -> Result<()> + 'a>;

struct Step<'a> {
    name: String,
    reads: Probe,
    /// A failure is recorded and the next steps still run (checks, not preparations).
    keep_going: bool,
    run: StepFn<'a>,
}

/// The steps of one playbook for one host, in order.
#[derive(Default)]
pub struct Plan<'a> {
    steps: Vec<Step<'a>>,
    /// Run after the steps when none stopped the plan; not a step (nothing is recorded).
    finally: Vec<FinallyFn<'a>>,
    /// Read by the playbook as a whole (files known only from the inventory, ...).
    reads: Probe,
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

    /// Declares a step: its name (unique in the plan), what it reads, and what it does.
    pub fn step(
        &mut self,
        name: &str,
        reads: impl Into<Probe>,
        run: impl FnOnce(&mut Ctx) -> Result<Change> + 'a,
    ) -> StepRef {
        self.push(name, reads.into(), false, Box::new(run))
    }

    /// Declares a check: as [`Plan::step`], but a failure does not stop the steps after it.
    pub fn check(
        &mut self,
        name: &str,
        reads: impl Into<Probe>,
        run: impl FnOnce(&mut Ctx) -> Result<Change> + 'a,
    ) -> StepRef {
        self.push(name, reads.into(), true, Box::new(run))
    }

    fn push(&mut self, name: &str, reads: Probe, keep_going: bool, run: StepFn<'a>) -> StepRef {
        assert!(
            !self.steps.iter().any(|s| s.name == name),
            "step `{name}` declared twice in one plan"
        );
        self.steps.push(Step {
            name: name.to_string(),
            reads,
            keep_going,
            run,
        });
        StepRef(self.steps.len() - 1)
    }

    /// Work after the last step that is not a step of its own: nothing is recorded or
    /// printed for it (gathering what a later stage needs, such as `verify`'s identities).
    /// It runs only when no step stopped the plan; its error stops the host like a step's.
    pub fn finally(&mut self, f: impl FnOnce(&mut Ctx) -> Result<()> + 'a) {
        self.finally.push(Box::new(f));
    }

    /// Files, units or programs the playbook reads beyond its steps' own declarations
    /// (files whose names come from the inventory).
    pub fn reads(&mut self, reads: impl Into<Probe>) {
        self.reads = std::mem::take(&mut self.reads).merge(&reads.into());
    }

    /// The steps' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.name.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// What the selected steps read: the probe of a run.
    pub fn probe(&self, sel: &Selection) -> Probe {
        self.steps
            .iter()
            .filter(|s| sel.selects(&s.name))
            .fold(self.reads.clone(), |p, s| p.merge(&s.reads))
    }

    /// Runs the selected steps in order. A failed step stops the plan (a failed check does
    /// not); steps left out are neither run nor recorded.
    pub fn run(self, cx: &mut Ctx, sel: &Selection) -> Ran {
        let mut not_selected = 0;
        cx.set_reads(self.probe(sel));
        for (i, step) in self.steps.into_iter().enumerate() {
            if !sel.selects(&step.name) {
                not_selected += 1;
                continue;
            }
            match cx.step(&step.name, step.run) {
                Ok(change) => {
                    if change.changed() {
                        cx.mark_changed(StepRef(i));
                    }
                }
                Err(_) if step.keep_going => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Fixture;
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
}
