//! What a task module reads from a host, declared beside its tasks as a constant (`READS`):
//! the plan gathers the selected steps' declarations into the host's one probe.

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
    /// Read-only commands the probe runs, their output then known to
    /// [`Ctx::query_once`](crate::Ctx::query_once) without a round trip of its own.
    pub queries: &'static [&'static [&'static str]],
}

impl Reads {
    pub const NONE: Reads = Reads {
        files: &[],
        units: &[],
        programs: &[],
        dirs: &[],
        queries: &[],
    };

    pub const fn files(files: &'static [&'static str]) -> Reads {
        Reads {
            files,
            units: &[],
            programs: &[],
            dirs: &[],
            queries: &[],
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

    pub const fn queries(self, queries: &'static [&'static [&'static str]]) -> Reads {
        Reads { queries, ..self }
    }
}

impl From<Reads> for Probe {
    fn from(r: Reads) -> Probe {
        Probe::default()
            .files(r.files)
            .units(r.units)
            .programs(r.programs)
            .dirs(r.dirs)
            .queries(r.queries)
    }
}

impl<const N: usize> From<[Reads; N]> for Probe {
    fn from(rs: [Reads; N]) -> Probe {
        rs.into_iter()
            .fold(Probe::default(), |p, r| p.merge(&Probe::from(r)))
    }
}

impl Reads {
    /// The same declaration (the same constant): its lists are the same slices.
    pub(crate) fn same(&self, other: &Reads) -> bool {
        std::ptr::eq(self.files, other.files)
            && std::ptr::eq(self.units, other.units)
            && std::ptr::eq(self.programs, other.programs)
            && std::ptr::eq(self.dirs, other.dirs)
            && std::ptr::eq(self.queries, other.queries)
    }

    /// The same names read (the same declaration, or one written alike).
    pub(crate) fn alike(&self, other: &Reads) -> bool {
        self.same(other)
            || (self.files == other.files
                && self.units == other.units
                && self.programs == other.programs
                && self.dirs == other.dirs
                && self.queries == other.queries)
    }
}
