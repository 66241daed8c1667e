//! File writes: a file replaced atomically (its script checks the byte count), backed up
//! first; scratch files; removals.

use super::{Action, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::host::Cmd;
use crate::state::FileState;

impl Ctx {
    /// Replaces a file atomically: written to a temporary file beside it, mode and owner set,
    /// then renamed over it. A crash leaves either the old file or the new one, never half of
    /// one. The old file is backed up first when backups are on.
    pub fn write_file(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Result<()> {
        self.write(path, content, mode, owner, group, true)
    }

    /// As [`Ctx::write_file`], for a scratch file (a candidate configuration checked before it
    /// replaces the live one): never backed up.
    pub fn write_scratch(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Result<()> {
        self.write(path, content, mode, owner, group, false)
    }

    /// Removes a scratch file (`rm -f`, no backup: a candidate checked or refused); the cache
    /// then knows it absent.
    pub fn remove_scratch(&mut self, path: &str) -> Result<()> {
        check_path(path)?;
        self.apply(&["rm", "-f", path])?;
        self.state.files.insert(path.to_string(), None);
        Ok(())
    }

    fn write(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
        backup: bool,
    ) -> Result<()> {
        check_path(path)?;
        self.record_action(Action::Write {
            path: path.into(),
            mode,
            owner: owner.into(),
            group: group.into(),
        });
        if !self.check_mode() {
            let backup = match self.state.files.get(path) {
                Some(Some(_)) | None if backup && self.opts.backup => {
                    format!("/var/backups/nodeprep{path}.{}", self.stamp)
                }
                _ => String::new(),
            };
            let mode_s = format!("{mode:04o}");
            let cmd = Cmd::new(&[
                "sh",
                "-c",
                WRITE_SCRIPT,
                "nodeprep-write",
                path,
                &mode_s,
                owner,
                group,
                &backup,
                &content.len().to_string(),
            ])
            .stdin(content.to_vec());
            self.lock_before_change()?;
            self.send(&cmd, true)?;
        }
        self.written(path, content, mode, owner, group);
        Ok(())
    }

    /// `path` as a write left it, into the cache (and the listing of its directory).
    pub(super) fn written(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
    ) {
        self.state.unread.remove(path);
        self.state.files.insert(
            path.to_string(),
            Some(FileState {
                mode,
                owner: owner.into(),
                group: group.into(),
                is_dir: false,
                content: content.to_vec(),
            }),
        );
        self.listed(path);
    }

    /// Removes a file, backed up first as [`Ctx::write_file`] backs up a file it replaces. An
    /// absent file is left absent.
    pub fn remove_file(&mut self, path: &str) -> Result<()> {
        check_path(path)?;
        self.record_action(Action::Remove { path: path.into() });
        if !self.check_mode() {
            let backup = if self.opts.backup {
                format!("/var/backups/nodeprep{path}.{}", self.stamp)
            } else {
                String::new()
            };
            let cmd = Cmd::new(&["sh", "-c", REMOVE_SCRIPT, "nodeprep-remove", path, &backup]);
            self.lock_before_change()?;
            self.send(&cmd, true)?;
        }
        self.state.files.insert(path.to_string(), None);
        Ok(())
    }
}

/// Paths tasks write must be absolute and plain.
pub(super) fn check_path(path: &str) -> Result<()> {
    if !path.starts_with('/')
        || path.contains('\n')
        || path.split('/').any(|c| c == "..")
        || path.ends_with('/')
    {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("refusing to write to {path:?}: not a plain absolute path"),
        ));
    }
    Ok(())
}

/// `sh -c WRITE_SCRIPT nodeprep-write PATH MODE OWNER GROUP BACKUP SIZE`, contents on stdin.
/// The byte count guards against a connection cut mid-stream: stdin then ends early, and a
/// short file must never replace the real one. The directory must be the writer's own (root's,
/// or the user's for a file written as its user, OWNER and GROUP then empty: no chown), not a
/// link: no one else can then swap the temporary file between its creation and the `chown -h`
/// and `chmod` by name (created 0600 by mktemp, it is never readable by others meanwhile).
pub(super) const WRITE_SCRIPT: &str = r#"set -eu
umask 022
p=$1; d=$(dirname -- "$p")
mkdir -p -- "$d"
if [ -L "$d" ] || [ ! -O "$d" ]; then echo "nodeprep: $d is not a directory of the writing user ($(id -un)): refusing to write $p there" >&2; exit 1; fi
t=$(mktemp -- "$d/.nodeprep.XXXXXX")
trap 'rm -f -- "$t"' EXIT INT TERM HUP
cat > "$t"
n=$(wc -c < "$t")
if [ "$n" -ne "$6" ]; then echo "nodeprep: got $n of $6 bytes for $p; the file is left as it was" >&2; exit 1; fi
sync -- "$t" 2>/dev/null || true
if [ -n "$3" ]; then chown -h -- "$3:$4" "$t"; fi
chmod -- "$2" "$t"
if [ -n "$5" ] && [ -f "$p" ]; then mkdir -p -- "$(dirname -- "$5")"; cp -p -- "$p" "$5"; fi
mv -f -- "$t" "$p"
trap - EXIT INT TERM HUP
"#;

/// `sh -c REMOVE_SCRIPT nodeprep-remove PATH BACKUP`: the file copied to BACKUP (when given),
/// then removed.
const REMOVE_SCRIPT: &str = r#"set -eu
p=$1
if [ -n "$2" ] && [ -f "$p" ]; then mkdir -p -- "$(dirname -- "$2")"; cp -p -- "$p" "$2"; fi
rm -f -- "$p"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Options;
    use crate::host::Host;

    /// The write script on a real shell: a whole write lands; a short stream (a cut connection)
    /// leaves the old file and no temporary file.
    #[test]
    fn write_script_never_installs_a_short_file() {
        use crate::host::Local;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("conf");
        std::fs::write(&target, "old\n").unwrap();
        let path = target.display().to_string();
        let run = |content: &[u8], size: usize| {
            let size = size.to_string();
            Local::new("t")
                .exec(
                    &Cmd::new(&[
                        "sh",
                        "-c",
                        WRITE_SCRIPT,
                        "w",
                        &path,
                        "0640",
                        "root",
                        "root",
                        "",
                        &size,
                    ])
                    .stdin(content.to_vec()),
                )
                .unwrap()
        };
        let short = run(b"new con", 12);
        assert!(!short.success());
        assert!(
            String::from_utf8_lossy(&short.stderr).contains("got 7 of 12 bytes"),
            "{short:?}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        let whole = run(b"new content\n", 12);
        assert!(whole.success(), "{whole:?}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new content\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["conf"], "temporary files left behind");
    }

    /// Root writes only in a directory of its own: in one another user owns (where that user
    /// could swap the temporary file for a link), or through a link, the script refuses.
    #[test]
    fn write_script_refuses_a_directory_not_its_own() {
        use crate::host::Local;
        if crate::host::current_uid() != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        for d in [&theirs, &link] {
            let path = d.join("authorized_keys").display().to_string();
            let out = Local::new("t")
                .exec(
                    &Cmd::new(&[
                        "sh",
                        "-c",
                        WRITE_SCRIPT,
                        "w",
                        &path,
                        "0600",
                        "root",
                        "root",
                        "",
                        "2",
                    ])
                    .stdin(b"k\n".to_vec()),
                )
                .unwrap();
            assert!(!out.success(), "{out:?}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("refusing to write"),
                "{out:?}"
            );
        }
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    }

    /// A scratch file is never backed up; removing it leaves it known absent.
    #[test]
    fn scratch_files_are_not_backed_up() {
        let f = crate::testing::Fixture::photon().file("/etc/x.new", "old\n", 0o600);
        let rec = std::sync::Arc::new(crate::testing::Recorder::new("t"));
        let opts = Options {
            backup: true,
            ..Options::default()
        };
        let mut cx = Ctx::with_state(Box::new(rec.clone()), f.facts, f.state, opts);
        cx.write_scratch("/etc/x.new", b"new\n", 0o600, "root", "root")
            .unwrap();
        cx.write_file("/etc/x", b"live\n", 0o644, "root", "root")
            .unwrap();
        cx.remove_scratch("/etc/x.new").unwrap();
        assert_eq!(cx.file("/etc/x.new").unwrap(), None);
        let backups: Vec<String> = rec
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.contains("/var/backups/nodeprep"))
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        assert!(
            backups[0].contains("/var/backups/nodeprep/etc/x.") && !backups[0].contains("x.new"),
            "{backups:?}"
        );
        assert_eq!(
            cx.actions().last().map(|a| a.to_string()).as_deref(),
            Some("run rm -f /etc/x.new")
        );
    }

    /// The remove script on a real shell: the file is gone, its copy kept at the backup path;
    /// an absent file is no error.
    #[test]
    fn remove_script_keeps_a_backup() {
        use crate::host::Local;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("10-cloud-init-eth0.network");
        std::fs::write(&target, "[Match]\nName=eth0\n").unwrap();
        let backup = dir.path().join("backups/sub/10-cloud-init-eth0.network.1");
        let run = |backup: &std::path::Path| {
            Local::new("t")
                .exec(&Cmd::new(&[
                    "sh",
                    "-c",
                    REMOVE_SCRIPT,
                    "r",
                    &target.display().to_string(),
                    &backup.display().to_string(),
                ]))
                .unwrap()
        };
        assert!(run(&backup).success());
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_to_string(&backup).unwrap(),
            "[Match]\nName=eth0\n"
        );
        let again = run(std::path::Path::new(""));
        assert!(again.success(), "{again:?}");
    }

    #[test]
    fn write_path_checked() {
        assert!(check_path("etc/x").is_err());
        assert!(check_path("/etc/../x").is_err());
        // `..` is refused wherever it stands, at the end too.
        for p in ["/etc/..", "/..", "/../etc/x", "/etc/kubernetes/.."] {
            assert!(check_path(p).is_err(), "{p}");
        }
        assert!(check_path("/etc/..hidden/x..y").is_ok());
        assert!(check_path("/etc/x\ny").is_err());
        assert!(check_path("/etc/sysctl.d/99-kubernetes-cri.conf").is_ok());
    }
}
