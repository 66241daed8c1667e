//! Locale and keyboard, as four steps a playbook names separately:
//!
//! | step | function | Photon | Debian | RHEL |
//! |---|---|---|---|---|
//! | locale packages | [`locale_packages`] | `kbd glibc-i18n` | `locales kbd` | `glibc-langpack-<lang> kbd` |
//! | locale generated | [`locale_generated`] | line in /etc/locale-gen.conf, then `localedef` as `locale-gen.sh` runs it for that line | line in /etc/locale.gen (the commented one uncommented), then `localedef` as `locale-gen` runs it for that line | nothing: langpacks ship compiled locales |
//! | locale set | [`locale_set`] | /etc/locale.conf | /etc/default/locale | /etc/locale.conf |
//! | keymap set | [`keymap_set`] | /etc/vconsole.conf | /etc/vconsole.conf and, when present, /etc/default/keyboard | /etc/vconsole.conf |
//!
//! The locale is built when its configuration file changed, or when `locale -a` does not list
//! it (a generation that failed earlier is done again). Only that locale is built: Photon's
//! `locale-gen.sh` and Debian's `locale-gen` first remove every compiled locale, then build
//! each one the file lists, one `localedef` each; nodeprep runs the one `localedef` they run
//! for the line it listed ([`localedef_argv`]), which adds it to the locale archive and leaves
//! the others as they are. The line stays in the file, so a later `locale-gen` builds it too. "locale set" writes the file
//! `localectl set-locale LANG=.. LC_CTYPE=..` would write, without needing dbus or
//! systemd-localed; new logins read it. The keymap is written for the next boot (and the next
//! start of systemd-vconsole-setup); it is not loaded on the live console, which an ssh session
//! does not have.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, Result};
use crate::facts::OsFamily;
use crate::file::{self, Perm};
use crate::pkg;
use crate::reads::Reads;

/// Photon's locale-gen.sh configuration.
pub const LOCALE_GEN_CONF: &str = "/etc/locale-gen.conf";
/// Debian's locale-gen configuration.
pub const LOCALE_GEN: &str = "/etc/locale.gen";
/// glibc's locale sources (`localedef -i NAME` finds NAME there).
pub const LOCALE_SOURCES: &str = "/usr/share/i18n/locales";
/// Locale sources of the site, which Debian's locale-gen prefers to glibc's.
pub const USER_LOCALE_SOURCES: &str = "/usr/local/share/i18n/locales";
/// The alias file locale-gen gives localedef.
pub const LOCALE_ALIAS: &str = "/usr/share/locale/locale.alias";
/// The system locale on Photon and RHEL (what systemd-localed writes).
pub const LOCALE_CONF: &str = "/etc/locale.conf";
/// The system locale on Debian (read by pam_env; Debian's localed writes it).
pub const DEFAULT_LOCALE: &str = "/etc/default/locale";
pub const VCONSOLE_CONF: &str = "/etc/vconsole.conf";
/// Debian's console-setup / keyboard-configuration settings.
pub const DEFAULT_KEYBOARD: &str = "/etc/default/keyboard";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[
    LOCALE_GEN_CONF,
    LOCALE_GEN,
    LOCALE_CONF,
    DEFAULT_LOCALE,
    VCONSOLE_CONF,
    DEFAULT_KEYBOARD,
])
.queries(&[&LOCALE_LIST]);

/// A locale name split into its parts: `fr_FR.UTF-8` → lang `fr`, charset `UTF-8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale {
    /// The name as given (`fr_FR.UTF-8`).
    pub name: String,
    /// The language (`fr`); `C` for the built-in locales.
    pub lang: String,
    /// The charset (`UTF-8`); `utf8` spellings are written `UTF-8`.
    pub charset: String,
}

impl Locale {
    /// Parses and validates `lang[_TERRITORY].CHARSET[@modifier]`, or `C`, `POSIX`, `C.UTF-8`.
    pub fn parse(name: &str) -> Result<Locale> {
        let bad = || {
            Error::invalid(format!(
                "invalid locale {name:?}: expected language_TERRITORY.CHARSET such as fr_FR.UTF-8 (or C.UTF-8)"
            ))
        };
        if matches!(name, "C" | "POSIX") {
            return Ok(Locale {
                name: name.into(),
                lang: "C".into(),
                charset: String::new(),
            });
        }
        let (base, _modifier) = match name.split_once('@') {
            Some((b, m)) if !m.is_empty() && m.bytes().all(|c| c.is_ascii_alphanumeric()) => {
                (b, Some(m))
            }
            Some(_) => return Err(bad()),
            None => (name, None),
        };
        let (lt, charset) = base.split_once('.').ok_or_else(bad)?;
        let (lang, territory) = match lt.split_once('_') {
            Some((l, t)) => (l, Some(t)),
            None => (lt, None),
        };
        let lang_ok = lang == "C"
            || ((2..=3).contains(&lang.len()) && lang.bytes().all(|c| c.is_ascii_lowercase()));
        let territory_ok =
            territory.is_none_or(|t| t.len() == 2 && t.bytes().all(|c| c.is_ascii_uppercase()));
        let charset_ok = !charset.is_empty()
            && charset
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-');
        if !(lang_ok && territory_ok && charset_ok) || (lang == "C" && territory.is_some()) {
            return Err(bad());
        }
        Ok(Locale {
            name: name.into(),
            lang: lang.into(),
            charset: canonical_charset(charset),
        })
    }

    /// C, POSIX, C.UTF-8: built into glibc, nothing to install or generate.
    pub fn builtin(&self) -> bool {
        self.lang == "C"
    }

    /// The line of /etc/locale-gen.conf or /etc/locale.gen: `fr_FR.UTF-8 UTF-8`.
    pub fn gen_line(&self) -> String {
        format!("{} {}", canonical_name(&self.name), self.charset)
    }
}

fn canonical_charset(charset: &str) -> String {
    if charset.eq_ignore_ascii_case("utf8") || charset.eq_ignore_ascii_case("utf-8") {
        "UTF-8".into()
    } else {
        charset.into()
    }
}

/// `fr_FR.utf8` → `fr_FR.UTF-8` (the modifier kept).
fn canonical_name(name: &str) -> String {
    let (base, modifier) = match name.split_once('@') {
        Some((b, m)) => (b, format!("@{m}")),
        None => (name, String::new()),
    };
    match base.split_once('.') {
        Some((lt, cs)) => format!("{lt}.{}{modifier}", canonical_charset(cs)),
        None => name.into(),
    }
}

/// The packages the locale and the keymap need on this host (see the module table): what
/// [`locale_packages`] ensures, for the plan's one transaction.
pub fn packages(cx: &mut Ctx, locale: &str) -> Result<Vec<String>> {
    let locale = Locale::parse(locale)?;
    let names = match cx.facts().os {
        OsFamily::Photon => vec!["kbd".into(), "glibc-i18n".into()],
        OsFamily::Debian => vec!["locales".into(), "kbd".into()],
        OsFamily::Rhel if locale.builtin() => vec!["kbd".into()],
        OsFamily::Rhel => vec![format!("glibc-langpack-{}", locale.lang), "kbd".into()],
    };
    Ok(names)
}

/// Step "locale packages": what the locale and the keymap need (see the module table).
pub fn locale_packages(cx: &mut Ctx, locale: &str) -> Result<Change> {
    let wanted = packages(cx, locale)?;
    let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let os = cx.facts().os;
    let locales_new = match os {
        OsFamily::Debian => !pkg::is_installed(cx, "locales")?,
        OsFamily::Photon | OsFamily::Rhel => false,
    };
    let c = pkg::installed(cx, &names)?;
    if locales_new && !cx.check_mode() {
        // The package's postinst writes /etc/locale.gen (and may write /etc/default/locale):
        // what the probe saw is gone.
        cx.forget(&[LOCALE_GEN, DEFAULT_LOCALE]);
    }
    Ok(c)
}

/// Step "locale generated": the locale is listed for generation, and built when the list
/// changed or `locale -a` lacks it: the one `localedef` that `locale-gen.sh` (Photon) or
/// `locale-gen` (Debian) runs for its line ([`localedef_argv`]), not the whole list again. On
/// RHEL the langpack already holds it compiled: nothing to do. Run after [`locale_packages`].
pub fn locale_generated(cx: &mut Ctx, locale: &str) -> Result<Change> {
    let locale = Locale::parse(locale)?;
    if locale.builtin() {
        return Ok(Change::Unchanged);
    }
    let path = match cx.facts().os {
        OsFamily::Photon => LOCALE_GEN_CONF,
        OsFamily::Debian => LOCALE_GEN,
        OsFamily::Rhel => return Ok(Change::Unchanged),
    };
    let line = locale.gen_line();
    let c = file::edit(cx, path, None, |old| {
        Ok(with_gen_line(old.unwrap_or(""), &line))
    })?;
    // Listed but not generated (a generation that failed, a list edited by hand): generated
    // now. When `locale -a` cannot tell, only a changed list is a reason.
    let missing = !c.changed() && locale_available(cx, &locale)? == Some(false);
    if c.changed() || missing {
        cx.progress_doing_or_would(
            format!("generating locale {}", locale.name),
            format!("would generate locale {}", locale.name),
        );
        let argv = localedef_argv(cx, &locale)?;
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        // 1: built, with warnings (`-c` writes it all the same); locale-gen goes on too.
        if let Some(out) = cx.apply_unchecked(&argv)?
            && !matches!(out.status, Some(0 | 1))
        {
            return Err(crate::host::command_failed(
                &crate::host::Cmd::new(&argv),
                &out,
            ));
        }
        cx.note_done_or_would(
            format!("locale {} generated (localedef)", locale.name),
            format!("would generate locale {} (localedef)", locale.name),
        );
        // What `locale -a` lists from now on (in check mode: would list): the listing read
        // earlier in the run with this locale added, or, when none was read, this locale
        // (all a later step of the run asks it about).
        let known = cx
            .state()
            .answers
            .get(LOCALE_LIST.map(String::from).as_slice())
            .cloned()
            .unwrap_or_default();
        cx.answer_changed(
            &LOCALE_LIST,
            format!("{known}{}\n", normalized(&locale.name)),
        );
    }
    Ok(c | Change::from_bool(missing))
}

/// The `localedef` that the OS's locale-gen runs for `locale`'s line (`NAME CHARSET`, as
/// [`Locale::gen_line`] writes it): `localedef -i INPUT -c -f CHARSET -A
/// /usr/share/locale/locale.alias NAME`, the output going into the locale archive. INPUT is
/// chosen as they choose it: NAME when glibc's sources have a file of that name, else NAME
/// without its charset (`fr_FR`, `sr_RS@latin`); Debian's locale-gen prefers a source of that
/// name under /usr/local/share/i18n/locales, by its path. The files it looks at are
/// [`source_files`], which the playbook declares.
pub fn localedef_argv(cx: &mut Ctx, locale: &Locale) -> Result<Vec<String>> {
    let name = canonical_name(&locale.name);
    let stem = source_stem(&name);
    // Only Debian's locale-gen looks under /usr/local/share/i18n/locales.
    let user_sources = match cx.facts().os {
        OsFamily::Debian => true,
        OsFamily::Photon | OsFamily::Rhel => false,
    };
    let exists = |cx: &mut Ctx, path: String| -> Result<bool> { Ok(cx.file(&path)?.is_some()) };
    let input = if user_sources && exists(cx, format!("{USER_LOCALE_SOURCES}/{name}"))? {
        format!("{USER_LOCALE_SOURCES}/{name}")
    } else if exists(cx, format!("{LOCALE_SOURCES}/{name}"))? {
        name.clone()
    } else if user_sources && exists(cx, format!("{USER_LOCALE_SOURCES}/{stem}"))? {
        format!("{USER_LOCALE_SOURCES}/{stem}")
    } else {
        stem
    };
    Ok([
        "localedef",
        "-i",
        &input,
        "-c",
        "-f",
        &locale.charset,
        "-A",
        LOCALE_ALIAS,
        &name,
    ]
    .map(String::from)
    .to_vec())
}

/// A locale name without its charset, the modifier kept: `fr_FR.UTF-8` → `fr_FR`,
/// `sr_RS.UTF-8@latin` → `sr_RS@latin` (the name of its source file).
fn source_stem(name: &str) -> String {
    let (base, modifier) = match name.split_once('@') {
        Some((b, m)) => (b, format!("@{m}")),
        None => (name, String::new()),
    };
    let base = base.split_once('.').map_or(base, |(b, _)| b);
    format!("{base}{modifier}")
}

/// The files [`localedef_argv`] looks at for `locale` (none for an invalid or built-in one):
/// for the playbook to declare, as they depend on the inventory.
pub fn source_files(locale: &str) -> Vec<String> {
    let Ok(l) = Locale::parse(locale) else {
        return Vec::new();
    };
    if l.builtin() {
        return Vec::new();
    }
    let name = canonical_name(&l.name);
    let stem = source_stem(&name);
    vec![
        format!("{USER_LOCALE_SOURCES}/{name}"),
        format!("{LOCALE_SOURCES}/{name}"),
        format!("{USER_LOCALE_SOURCES}/{stem}"),
    ]
}

/// Whether `locale -a` (read-only) lists the locale, under any spelling of its charset;
/// `None` when the command cannot tell.
pub fn locale_available(cx: &mut Ctx, locale: &Locale) -> Result<Option<bool>> {
    let listing = match cx.query_once(&LOCALE_LIST) {
        Ok(listing) => listing,
        Err(e) if e.kind() == crate::error::ErrorKind::Command => return Ok(None),
        Err(e) => return Err(e),
    };
    let want = normalized(&locale.name);
    Ok(Some(listing.lines().any(|l| normalized(l.trim()) == want)))
}

/// The read-only command that lists the generated locales (asked once per run).
const LOCALE_LIST: [&str; 2] = ["locale", "-a"];

/// A locale name as glibc stores it: the charset lowercased with everything but letters and
/// digits dropped (`fr_FR.UTF-8` → `fr_FR.utf8`, `de_DE.ISO-8859-1` → `de_DE.iso88591`), the
/// language, territory and modifier kept.
pub fn normalized(name: &str) -> String {
    let (base, modifier) = match name.split_once('@') {
        Some((b, m)) => (b, format!("@{m}")),
        None => (name, String::new()),
    };
    match base.split_once('.') {
        Some((lt, cs)) => {
            let mut cs: String = cs
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            if !cs.is_empty() && cs.bytes().all(|b| b.is_ascii_digit()) {
                cs.insert_str(0, "iso");
            }
            format!("{lt}.{cs}{modifier}")
        }
        None => name.to_string(),
    }
}

/// The locale-gen list with `line` (`locale charset`) active: already active (whatever the
/// spacing) → as is; present commented out (`# fr_FR.UTF-8 UTF-8`, Debian's list) → that line
/// uncommented; else appended.
pub fn with_gen_line(text: &str, line: &str) -> String {
    let want: Vec<&str> = line.split_whitespace().collect();
    let same = |l: &str| {
        let words: Vec<String> = l.split_whitespace().map(canonical_name).collect();
        words.len() == 2 && words[0] == want[0] && canonical_charset(&words[1]) == want[1]
    };
    if text
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && same(l))
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    let mut done = false;
    for l in text.split_inclusive('\n') {
        let bare = l.trim_end_matches('\n');
        if !done
            && bare.trim_start().starts_with('#')
            && same(bare.trim_start().trim_start_matches('#'))
        {
            out.push_str(line);
            out.push('\n');
            done = true;
        } else {
            out.push_str(l);
        }
    }
    if done {
        out
    } else {
        file::with_line(text, line)
    }
}

/// The system locale file's contents: `LANG` and `LC_CTYPE`.
pub fn render_locale_conf(locale: &str) -> String {
    format!("LANG={locale}\nLC_CTYPE={locale}\n")
}

/// Step "locale set": LANG and LC_CTYPE in /etc/locale.conf (Photon, RHEL) or
/// /etc/default/locale (Debian), the whole file as `localectl set-locale` leaves it, mode 0644.
pub fn locale_set(cx: &mut Ctx, locale: &str) -> Result<Change> {
    Locale::parse(locale)?;
    let path = match cx.facts().os {
        OsFamily::Debian => DEFAULT_LOCALE,
        OsFamily::Photon | OsFamily::Rhel => LOCALE_CONF,
    };
    file::content(cx, path, &render_locale_conf(locale), Perm::CONFIG)
}

/// A console keymap name (`fr`, `de-latin1`, `fr-bepo`).
pub fn validate_keymap(keymap: &str) -> Result<()> {
    let ok = !keymap.is_empty()
        && keymap.len() <= 64
        && keymap
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid keymap {keymap:?}: expected a name such as fr or de-latin1"
        )))
    }
}

/// Step "keymap set": `KEYMAP=` in /etc/vconsole.conf (other settings kept). On Debian, whose
/// console-setup reads /etc/default/keyboard instead, `XKBLAYOUT` there too when that file
/// exists: the keymap's first part (`fr-latin9` → `fr`; the variant is left alone).
pub fn keymap_set(cx: &mut Ctx, keymap: &str) -> Result<Change> {
    validate_keymap(keymap)?;
    let mut c = file::edit(cx, VCONSOLE_CONF, None, |old| {
        Ok(with_var(old.unwrap_or(""), "KEYMAP", keymap))
    })?;
    // console-setup, Debian's: the other families have no /etc/default/keyboard to follow.
    let console_setup = match cx.facts().os {
        OsFamily::Debian => cx.file(DEFAULT_KEYBOARD)?.is_some(),
        OsFamily::Photon | OsFamily::Rhel => false,
    };
    if console_setup {
        let layout = keymap.split('-').next().unwrap_or(keymap);
        let quoted = format!("\"{layout}\"");
        let layout_set = |old: Option<&str>| {
            let old = old.unwrap_or("");
            // Quoted or not, the same value is the same setting.
            let current = old
                .lines()
                .find_map(|l| l.trim().strip_prefix("XKBLAYOUT="));
            if current.map(|v| v.trim_matches('"')) == Some(layout) {
                Ok(old.to_string())
            } else {
                Ok(with_var(old, "XKBLAYOUT", &quoted))
            }
        };
        c |= file::edit(cx, DEFAULT_KEYBOARD, None, layout_set)?;
    }
    Ok(c)
}

/// `KEY=value` in a shell-style variables file: the first active `KEY=` line replaced (later
/// ones dropped), else appended.
pub fn with_var(text: &str, key: &str, value: &str) -> String {
    let wanted = format!("{key}={value}");
    let prefix = format!("{key}=");
    let mut out = String::with_capacity(text.len() + wanted.len() + 1);
    let mut done = false;
    for l in text.split_inclusive('\n') {
        if l.trim_start().starts_with(&prefix) {
            if !done {
                out.push_str(&wanted);
                out.push('\n');
                done = true;
            }
        } else {
            out.push_str(l);
        }
    }
    if done {
        out
    } else {
        file::with_line(text, &wanted)
    }
}

/// All four steps in order (for callers that want one step; playbooks name them separately).
pub fn locale(cx: &mut Ctx, locale: &str, keymap: Option<&str>) -> Result<Change> {
    let mut c = locale_packages(cx, locale)?;
    c |= locale_generated(cx, locale)?;
    c |= locale_set(cx, locale)?;
    if let Some(k) = keymap {
        c |= keymap_set(cx, k)?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, actions as strings, ok, photon_files};
    use expect_test::expect;

    fn cached(cx: &mut Ctx, path: &str) -> String {
        cx.file(path).unwrap().map(|f| f.text()).unwrap_or_default()
    }

    /// A Debian 12 /etc/locale.gen as the locales package writes it (abridged).
    const DEBIAN_LOCALE_GEN: &str = "# This file lists locales that you wish to have built.\n#\n\n# en_US.UTF-8 UTF-8\n# fr_FR ISO-8859-1\n# fr_FR.UTF-8 UTF-8\n# fr_FR@euro ISO-8859-15\n";

    #[test]
    fn locale_names() {
        let l = Locale::parse("fr_FR.UTF-8").unwrap();
        assert_eq!(
            (l.lang.as_str(), l.charset.as_str(), l.gen_line()),
            ("fr", "UTF-8", "fr_FR.UTF-8 UTF-8".into())
        );
        assert_eq!(
            Locale::parse("de_DE.utf8").unwrap().gen_line(),
            "de_DE.UTF-8 UTF-8"
        );
        assert_eq!(
            Locale::parse("sr_RS.UTF-8@latin").unwrap().gen_line(),
            "sr_RS.UTF-8@latin UTF-8"
        );
        assert!(Locale::parse("C.UTF-8").unwrap().builtin());
        for bad in [
            "",
            "fr_FR",
            "FR_fr.UTF-8",
            "fr_FR.UTF-8; rm",
            "fr_FR.UTF-8\nLANG=x",
            "C_FR.UTF-8",
        ] {
            assert!(Locale::parse(bad).is_err(), "{bad:?}");
        }
        assert!(validate_keymap("de-latin1").is_ok());
        assert!(validate_keymap("fr\nKEYMAP=us").is_err());
    }

    #[test]
    fn gen_lines() {
        let photon = with_gen_line(photon_files::LOCALE_GEN, "fr_FR.UTF-8 UTF-8");
        let tail: Vec<&str> = photon.lines().rev().take(3).collect();
        expect![[r#"
            [
                "fr_FR.UTF-8 UTF-8",
                "en_US.UTF-8\tUTF-8",
                "en_US\t\tISO-8859-1",
            ]
        "#]]
        .assert_debug_eq(&tail);
        assert_eq!(with_gen_line(&photon, "fr_FR.UTF-8 UTF-8"), photon);
        // Already there with a tab: as is.
        assert_eq!(
            with_gen_line(photon_files::LOCALE_GEN, "en_US.UTF-8 UTF-8"),
            photon_files::LOCALE_GEN
        );
        let debian = with_gen_line(DEBIAN_LOCALE_GEN, "fr_FR.UTF-8 UTF-8");
        expect![[r#"
            # This file lists locales that you wish to have built.
            #

            # en_US.UTF-8 UTF-8
            # fr_FR ISO-8859-1
            fr_FR.UTF-8 UTF-8
            # fr_FR@euro ISO-8859-15
        "#]]
        .assert_eq(&debian);
        assert_eq!(with_gen_line(&debian, "fr_FR.UTF-8 UTF-8"), debian);
        assert_eq!(
            with_gen_line("", "fr_FR.UTF-8 UTF-8"),
            "fr_FR.UTF-8 UTF-8\n"
        );
    }

    #[test]
    fn vars() {
        expect![[r#"
            KEYMAP=fr
            FONT=eurlatgr
        "#]]
        .assert_eq(&with_var(
            "KEYMAP=us\nFONT=eurlatgr\nKEYMAP=de\n",
            "KEYMAP",
            "fr",
        ));
        assert_eq!(with_var("", "KEYMAP", "fr"), "KEYMAP=fr\n");
        assert_eq!(
            with_var("# KEYMAP=us\n", "KEYMAP", "fr"),
            "# KEYMAP=us\nKEYMAP=fr\n"
        );
        assert_eq!(
            render_locale_conf("fr_FR.UTF-8"),
            "LANG=fr_FR.UTF-8\nLC_CTYPE=fr_FR.UTF-8\n"
        );
    }

    #[test]
    fn photon_plan() {
        let (mut cx, rec) = Fixture::photon()
            .absent(LOCALE_CONF)
            .absent(VCONSOLE_CONF)
            .complete()
            .ctx(Mode::Apply);
        // After the install the package list is read again.
        let rpm = b"glibc 2.36-16.ph5\nkbd 2.2.0-3.ph5\nglibc-i18n 2.36-16.ph5\n".to_vec();
        rec.reply(
            "sh -c 'if command -v rpm",
            crate::host::Output {
                status: Some(0),
                stdout: rpm,
                stderr: Vec::new(),
            },
        );
        assert_eq!(
            locale(&mut cx, "fr_FR.UTF-8", Some("fr")).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "run tdnf install -y --quiet glibc-i18n",
                "write /etc/locale-gen.conf 0644 root:root",
                "run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8",
                "write /etc/locale.conf 0644 root:root",
                "write /etc/vconsole.conf 0644 root:root",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert_eq!(cached(&mut cx, VCONSOLE_CONF), "KEYMAP=fr\n");
        // Second run in the same state (the locale generated): nothing.
        rec.reply(
            "locale -a",
            ok("C\nC.utf8\nPOSIX\nen_US.utf8\nfr_FR.utf8\n"),
        );
        let n = cx.actions().len();
        assert_eq!(
            locale(&mut cx, "fr_FR.UTF-8", Some("fr")).unwrap(),
            Change::Unchanged
        );
        assert_eq!(cx.actions().len(), n);
    }

    #[test]
    fn photon_no_change() {
        let (mut cx, rec) = Fixture::photon()
            .packages(&[("kbd", "2.2.0-3.ph5"), ("glibc-i18n", "2.36-16.ph5")])
            .file(
                LOCALE_GEN_CONF,
                &format!("{}fr_FR.UTF-8\tUTF-8\n", photon_files::LOCALE_GEN),
                0o644,
            )
            .file(
                LOCALE_CONF,
                "LANG=fr_FR.UTF-8\nLC_CTYPE=fr_FR.UTF-8\n",
                0o644,
            )
            .file(VCONSOLE_CONF, "KEYMAP=fr\n", 0o644)
            .ctx(Mode::Apply);
        rec.reply(
            "locale -a",
            ok("C\nC.utf8\nen_US.utf8\nfr_FR.utf8\nPOSIX\n"),
        );
        assert_eq!(
            locale_packages(&mut cx, "fr_FR.UTF-8").unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            locale_generated(&mut cx, "fr_FR.UTF-8").unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            locale_set(&mut cx, "fr_FR.UTF-8").unwrap(),
            Change::Unchanged
        );
        assert_eq!(keymap_set(&mut cx, "fr").unwrap(), Change::Unchanged);
        assert!(cx.actions().is_empty());
        // One read-only question: is it generated?
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert_eq!(sent, ["locale -a"]);
    }

    /// Listed in the configuration but not generated (a generation that failed): generated
    /// again, though the list did not change.
    #[test]
    fn missing_locale_generated_again() {
        let listed = format!("{}fr_FR.UTF-8\tUTF-8\n", photon_files::LOCALE_GEN);
        let (mut cx, rec) = Fixture::photon()
            .file(LOCALE_GEN_CONF, &listed, 0o644)
            .complete()
            .ctx(Mode::Apply);
        rec.reply("locale -a", ok("C\nC.utf8\nen_US.utf8\nPOSIX\n"));
        assert_eq!(
            locale_generated(&mut cx, "fr_FR.UTF-8").unwrap(),
            Change::Changed
        );
        assert_eq!(
            strings(&cx),
            ["run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8"]
        );
        // `locale -a` unavailable: only a changed list would be a reason.
        let (mut cx, rec) = Fixture::debian()
            .file(LOCALE_GEN, "fr_FR.UTF-8 UTF-8\n", 0o644)
            .ctx(Mode::Apply);
        rec.reply(
            "locale -a",
            crate::host::Output {
                status: Some(127),
                ..Default::default()
            },
        );
        assert_eq!(
            locale_generated(&mut cx, "fr_FR.UTF-8").unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty());
    }

    #[test]
    fn names_as_glibc_lists_them() {
        assert_eq!(normalized("fr_FR.UTF-8"), "fr_FR.utf8");
        assert_eq!(normalized("fr_FR.utf8"), "fr_FR.utf8");
        assert_eq!(normalized("de_DE.ISO-8859-1"), "de_DE.iso88591");
        assert_eq!(normalized("sr_RS.UTF-8@latin"), "sr_RS.utf8@latin");
        assert_eq!(normalized("ja_JP.eucJP"), "ja_JP.eucjp");
        assert_eq!(normalized("C"), "C");
        assert_ne!(normalized("fr_CA.UTF-8"), normalized("fr_FR.UTF-8"));
    }

    #[test]
    fn debian_check_mode() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("kbd", "2.5.1-1")])
            .file(LOCALE_GEN, DEBIAN_LOCALE_GEN, 0o644)
            .absent(DEFAULT_LOCALE)
            .file(VCONSOLE_CONF, "KEYMAP=us\n", 0o644)
            .file(
                DEFAULT_KEYBOARD,
                "XKBMODEL=\"pc105\"\nXKBLAYOUT=\"us\"\nXKBVARIANT=\"\"\n",
                0o644,
            )
            .complete()
            .ctx(Mode::Check);
        assert_eq!(
            locale(&mut cx, "fr_FR.UTF-8", Some("fr-latin9")).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "run apt-get update -q -o DPkg::Lock::Timeout=120",
                "run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 locales",
                "write /etc/locale.gen 0644 root:root",
                "run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8",
                "write /etc/default/locale 0644 root:root",
                "write /etc/vconsole.conf 0644 root:root",
                "write /etc/default/keyboard 0644 root:root",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert!(
            rec.commands().is_empty(),
            "check mode ran {:?}",
            rec.commands()
        );
        assert!(cached(&mut cx, DEFAULT_KEYBOARD).contains("\nXKBLAYOUT=\"fr\"\n"));
    }

    /// The source localedef builds from, chosen as each OS's locale-gen chooses it: glibc's
    /// source of the locale's own name when there is one, else the name without its charset;
    /// on Debian a site source under /usr/local first, given by its path (Photon's
    /// locale-gen.sh does not look there).
    #[test]
    fn localedef_input_as_locale_gen_chooses_it() {
        let argv = |f: Fixture, locale: &str| {
            let (mut cx, _rec) = f.complete().ctx(Mode::Check);
            localedef_argv(&mut cx, &Locale::parse(locale).unwrap())
                .unwrap()
                .join(" ")
        };
        let alias = "-A /usr/share/locale/locale.alias";
        assert_eq!(
            argv(Fixture::debian(), "fr_FR.UTF-8"),
            format!("localedef -i fr_FR -c -f UTF-8 {alias} fr_FR.UTF-8")
        );
        assert_eq!(
            argv(Fixture::photon(), "sr_RS.utf8@latin"),
            format!("localedef -i sr_RS@latin -c -f UTF-8 {alias} sr_RS.UTF-8@latin")
        );
        assert_eq!(
            argv(Fixture::debian(), "de_DE.ISO-8859-1"),
            format!("localedef -i de_DE -c -f ISO-8859-1 {alias} de_DE.ISO-8859-1")
        );
        let named = |f: Fixture| f.file("/usr/share/i18n/locales/fr_FR.UTF-8", "LC_CTYPE\n", 0o644);
        assert_eq!(
            argv(named(Fixture::photon()), "fr_FR.UTF-8"),
            format!("localedef -i fr_FR.UTF-8 -c -f UTF-8 {alias} fr_FR.UTF-8")
        );
        let site = |f: Fixture| f.file("/usr/local/share/i18n/locales/fr_FR", "LC_CTYPE\n", 0o644);
        assert_eq!(
            argv(site(Fixture::debian()), "fr_FR.UTF-8"),
            format!(
                "localedef -i /usr/local/share/i18n/locales/fr_FR -c -f UTF-8 {alias} fr_FR.UTF-8"
            )
        );
        assert_eq!(
            argv(site(Fixture::photon()), "fr_FR.UTF-8"),
            format!("localedef -i fr_FR -c -f UTF-8 {alias} fr_FR.UTF-8")
        );
        assert_eq!(
            argv(site(named(Fixture::debian())), "fr_FR.UTF-8"),
            format!("localedef -i fr_FR.UTF-8 -c -f UTF-8 {alias} fr_FR.UTF-8")
        );
        // What the playbook declares is what is looked at.
        assert_eq!(
            source_files("fr_FR.UTF-8"),
            [
                "/usr/local/share/i18n/locales/fr_FR.UTF-8",
                "/usr/share/i18n/locales/fr_FR.UTF-8",
                "/usr/local/share/i18n/locales/fr_FR",
            ]
        );
        assert!(source_files("C.UTF-8").is_empty() && source_files("nonsense").is_empty());
    }

    /// localedef's 1 (warnings, the locale written all the same with `-c`) is a generation;
    /// 4 (nothing written) fails the step with localedef's words.
    #[test]
    fn localedef_warnings_pass_errors_fail() {
        for (status, fails) in [(0, false), (1, false), (4, true)] {
            let (mut cx, rec) = Fixture::debian()
                .packages(&[("locales", "2.36-9+deb12u9")])
                .file(LOCALE_GEN, DEBIAN_LOCALE_GEN, 0o644)
                .complete()
                .ctx(Mode::Apply);
            rec.reply(
                "localedef",
                crate::host::Output {
                    status: Some(status),
                    stdout: Vec::new(),
                    stderr: b"[error] character map `UTF-8' is not ASCII compatible\n".to_vec(),
                },
            );
            let got = locale_generated(&mut cx, "fr_FR.UTF-8");
            assert_eq!(got.is_err(), fails, "{status}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("exit status 4"), "{e}");
                assert!(e.stderr_tail().contains("not ASCII compatible"), "{e}");
            }
            // Only this locale is built: no locale-gen, which would rebuild the whole list.
            assert!(
                rec.commands()
                    .iter()
                    .all(|c| !c.display().contains("locale-gen")),
                "{:?}",
                rec.commands()
            );
        }
    }

    #[test]
    fn debian_no_change() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("kbd", "2.5.1-1"), ("locales", "2.36-9+deb12u9")])
            .file(
                LOCALE_GEN,
                &with_gen_line(DEBIAN_LOCALE_GEN, "fr_FR.UTF-8 UTF-8"),
                0o644,
            )
            .file(
                DEFAULT_LOCALE,
                "LANG=fr_FR.UTF-8\nLC_CTYPE=fr_FR.UTF-8\n",
                0o644,
            )
            .file(VCONSOLE_CONF, "KEYMAP=fr-latin9\n", 0o644)
            .file(DEFAULT_KEYBOARD, "XKBMODEL=pc105\nXKBLAYOUT=fr\n", 0o644)
            .ctx(Mode::Apply);
        rec.reply("locale -a", ok("C\nC.utf8\nfr_FR.utf8\nPOSIX\n"));
        assert_eq!(
            locale(&mut cx, "fr_FR.UTF-8", Some("fr-latin9")).unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty(), "{:?}", cx.actions());
        assert_eq!(rec.commands().len(), 1, "locale -a");
    }

    #[test]
    fn rhel_plan() {
        let (mut cx, _rec) = Fixture::rhel()
            .file(LOCALE_CONF, "LANG=en_US.UTF-8\n", 0o644)
            .file(VCONSOLE_CONF, "KEYMAP=us\nFONT=eurlatgr\n", 0o644)
            .ctx(Mode::Apply);
        assert_eq!(
            locale(&mut cx, "fr_FR.UTF-8", Some("fr")).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "run dnf install -y --quiet glibc-langpack-fr kbd",
                "write /etc/locale.conf 0644 root:root",
                "write /etc/vconsole.conf 0644 root:root",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert_eq!(cached(&mut cx, VCONSOLE_CONF), "KEYMAP=fr\nFONT=eurlatgr\n");
    }
}
