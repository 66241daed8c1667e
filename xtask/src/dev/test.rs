//! `cargo xtask test-image` and `cargo xtask test`.

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use super::image::{BASE_ENV, Base};
use crate::runner::{EXIT_FAILED, EXIT_OK};

pub fn image(args: &super::ImageArgs) -> Result<u8> {
    let sh = Shell::new()?;
    super::prereq::ensure(&sh, super::prereq::Need::Lab)?;
    let tag = if args.hardened {
        super::image::hardened::ensure(&sh)?
    } else if args.netsvc {
        super::image::netsvc::ensure(&sh)?
    } else {
        super::image::ensure_base(&sh, Base::or_env(args.base)?)?
    };
    println!("{tag}");
    Ok(EXIT_OK)
}

/// Builds the image of the chosen base, the hardened image and the network services image,
/// then runs every test of the workspace with nextest (profile `ci`), the integration tests
/// using this very binary as the runner and those images for their lab containers.
pub fn test(args: &super::TestArgs) -> Result<u8> {
    let base = Base::or_env(args.base)?;
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    super::prereq::ensure(&sh, super::prereq::Need::Tests)?;
    let tag = match std::env::var("NODEPREP_TEST_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(given) => given,
        None => super::image::ensure_base(&sh, base)?,
    };
    // The hardened image's tests run on Debian whatever the base.
    let hardened = match std::env::var("NODEPREP_TEST_HARDENED_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(given) => given,
        None => super::image::hardened::ensure(&sh)?,
    };
    // The offline lab's proxy and mirror (tests/e2e/proxy.rs), on Debian whatever the base.
    let netsvc = match std::env::var("NODEPREP_TEST_NETSVC_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(given) => given,
        None => super::image::netsvc::ensure(&sh)?,
    };
    // Lab containers fetch Debian's packages through one apt-cacher-ng kept between runs, so
    // that repeated first runs download each package once (`--no-apt-cache`: straight from
    // the archive).
    let apt_cache = if args.no_apt_cache {
        String::new()
    } else {
        super::offline::ensure_apt_cache(&sh, &netsvc)?
    };
    let bin = std::env::current_exe().context("locating the runner binary")?;
    let extra = &args.nextest_args;
    let status = cmd!(
        sh,
        "cargo nextest run --workspace --profile ci --no-tests=fail {extra...}"
    )
    .env("NODEPREP_TEST_IMAGE", &tag)
    .env("NODEPREP_TEST_HARDENED_IMAGE", &hardened)
    .env("NODEPREP_TEST_NETSVC_IMAGE", &netsvc)
    .env(super::apt_cache::APT_CACHE_ENV, &apt_cache)
    .env(BASE_ENV, base.name())
    .env("NODEPREP_BIN", &bin)
    .quiet()
    .run();
    Ok(if status.is_ok() { EXIT_OK } else { EXIT_FAILED })
}

/// The workspace root: where this crate's manifest's parent is.
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
