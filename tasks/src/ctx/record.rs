//! What a run records and tells: the outcome of each step, its actions and diffs, and the
//! events the runner hears.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::error::{ErrorKind, Result};

/// What a task did. `#[must_use]`: a handler decides on it (`if c.changed() { restart }`).
#[must_use = "a Change tells whether handlers must run"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Changed,
    /// Not done, with the reason (e.g. the kernel belongs to a container's host).
    Skipped(String),
}

impl Change {
    pub fn changed(&self) -> bool {
        matches!(self, Change::Changed)
    }

    pub fn from_bool(changed: bool) -> Change {
        if changed {
            Change::Changed
        } else {
            Change::Unchanged
        }
    }
}

impl std::ops::BitOr for Change {
    type Output = Change;
    /// Changed wins over Skipped, which wins over Unchanged.
    fn bitor(self, rhs: Change) -> Change {
        match (self, rhs) {
            (Change::Changed, _) | (_, Change::Changed) => Change::Changed,
            (Change::Skipped(a), _) => Change::Skipped(a),
            (_, Change::Skipped(b)) => Change::Skipped(b),
            _ => Change::Unchanged,
        }
    }
}

impl std::ops::BitOrAssign for Change {
    fn bitor_assign(&mut self, rhs: Change) {
        *self = std::mem::replace(self, Change::Unchanged) | rhs;
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Changed,
    Skipped(String),
    Failed(String),
    /// Only someone outside the host can satisfy it (see [`ErrorKind::Operator`]): a warning
    /// with its fix, not a failure.
    Operator(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Changed => "changed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
            Outcome::Operator(_) => "operator",
        }
    }
}

/// A modifying action, in the order it was (or, in check mode, would have been) taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A command that changes the host.
    Run(String),
    /// A file replaced (or created) with this mode and owner.
    Write {
        path: String,
        mode: u32,
        owner: String,
        group: String,
    },
    /// A file removed.
    Remove { path: String },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Run(cmd) => write!(f, "run {cmd}"),
            Action::Write {
                path,
                mode,
                owner,
                group,
            } => write!(f, "write {path} {mode:04o} {owner}:{group}"),
            Action::Remove { path } => write!(f, "remove {path}"),
        }
    }
}

/// One step of a playbook, as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub outcome: Outcome,
    pub duration: Duration,
    /// Unified diffs of the files the step changed (or would change).
    pub diffs: Vec<String>,
    pub actions: Vec<Action>,
}

/// What the runner hears while a playbook runs.
#[derive(Debug, Clone)]
pub enum Event {
    StepStarted {
        host: String,
        name: String,
    },
    StepFinished {
        host: String,
        record: Record,
    },
    /// A long operation (package install, system update) is under way.
    Progress {
        host: String,
        message: String,
    },
}

pub type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

pub(super) struct Current {
    pub(super) name: String,
    pub(super) diffs: Vec<String>,
    pub(super) actions: Vec<Action>,
}

impl Ctx {
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The steps recorded so far, taken (the context records the next ones anew).
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// Every modifying action of the run, in order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Runs one named step, records its outcome and duration, and tells the sink.
    pub fn step(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Ctx) -> Result<Change>,
    ) -> Result<Change> {
        let start = Instant::now();
        // The host's and the step's names are made once: told to the sink with the start,
        // kept while the step runs, then in its record and with the finish.
        let started = Event::StepStarted {
            host: self.host_name().to_string(),
            name: name.to_string(),
        };
        self.emit_ref(&started);
        let Event::StepStarted { host, name: step } = started else {
            unreachable!("made above as a start")
        };
        self.current = Some(Current {
            name: step,
            diffs: Vec::new(),
            actions: Vec::new(),
        });
        let result = f(self);
        let cur = self.current.take().unwrap_or_else(|| Current {
            name: name.to_string(),
            diffs: Vec::new(),
            actions: Vec::new(),
        });
        let outcome = match &result {
            Ok(Change::Unchanged) => Outcome::Ok,
            Ok(Change::Changed) => Outcome::Changed,
            Ok(Change::Skipped(why)) => Outcome::Skipped(why.clone()),
            Err(e) if e.kind() == ErrorKind::Operator => Outcome::Operator(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let record = Record {
            name: cur.name,
            outcome,
            duration: start.elapsed(),
            diffs: cur.diffs,
            actions: cur.actions,
        };
        // Told to the sink, then kept: the event hands the record back, no copy made.
        let finished = Event::StepFinished { host, record };
        self.emit_ref(&finished);
        if let Event::StepFinished { record, .. } = finished {
            self.records.push(record);
        }
        result.map_err(|e| e.on_host(self.host.name()))
    }

    /// Reports progress of a long operation.
    pub fn progress(&self, message: impl Into<String>) {
        self.emit(Event::Progress {
            host: self.host_name().to_string(),
            message: message.into(),
        });
    }

    /// Reports progress of a long operation that changes the host: `doing` when it does
    /// (`installing kbd`), `would` in check mode, where nothing is done (`would install kbd`).
    pub fn progress_doing_or_would(&self, doing: impl Into<String>, would: impl Into<String>) {
        self.progress(if self.check_mode() {
            would.into()
        } else {
            doing.into()
        });
    }

    fn emit(&self, event: Event) {
        self.emit_ref(&event);
    }

    fn emit_ref(&self, event: &Event) {
        if let Some(sink) = &self.opts.sink {
            sink(event);
        }
    }

    /// Says in one line, for `--diff`, what a change made by commands did (`user ops: added
    /// to group wheel`, `installed: kbd glibc-i18n`); recorded with the step's diffs when
    /// diffs are wanted. Never a secret: the line is printed and logged as it is.
    pub fn note_change(&mut self, line: impl Into<String>) {
        if self.diff_wanted() {
            let mut line = line.into();
            if !line.ends_with('\n') {
                line.push('\n');
            }
            self.record_diff(line);
        }
    }

    /// [`Ctx::note_change`] for a change made by commands: `done` when the run made it
    /// (`restarted containerd.service`), `would` in check mode, where the commands are only
    /// recorded (`would restart containerd.service`): a check never says it did what it did not.
    pub fn note_done_or_would(&mut self, done: impl Into<String>, would: impl Into<String>) {
        let line = if self.check_mode() {
            would.into()
        } else {
            done.into()
        };
        self.note_change(line);
    }

    pub(super) fn record_action(&mut self, action: Action) {
        if let Some(cur) = &mut self.current {
            cur.actions.push(action.clone());
        }
        self.actions.push(action);
    }

    pub(crate) fn record_diff(&mut self, diff: String) {
        if let Some(cur) = &mut self.current {
            cur.diffs.push(diff);
        }
    }

    pub fn diff_wanted(&self) -> bool {
        self.opts.diff || self.check_mode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Options;

    #[test]
    fn change_combines() {
        assert_eq!(Change::Unchanged | Change::Changed, Change::Changed);
        assert_eq!(
            Change::Skipped("x".into()) | Change::Unchanged,
            Change::Skipped("x".into())
        );
        assert_eq!(
            Change::Skipped("x".into()) | Change::Changed,
            Change::Changed
        );
        let mut c = Change::Unchanged;
        c |= Change::Unchanged;
        assert!(!c.changed());
    }

    /// A change made by commands is said in one line when diffs are wanted, not otherwise.
    #[test]
    fn note_change_only_when_diffs_are_wanted() {
        for (diff, want) in [
            (true, vec!["enabled x.service\n".to_string()]),
            (false, vec![]),
        ] {
            let f = crate::testing::Fixture::photon();
            let rec = std::sync::Arc::new(crate::testing::Recorder::new("t"));
            let opts = Options {
                diff,
                ..Options::default()
            };
            let mut cx = Ctx::with_state(Box::new(rec), f.facts, f.state, opts);
            let c = cx
                .step("s", |cx| {
                    cx.note_change("enabled x.service");
                    Ok(Change::Changed)
                })
                .unwrap();
            assert!(c.changed());
            assert_eq!(cx.records()[0].diffs, want);
        }
    }
}
