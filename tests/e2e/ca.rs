//! The CA bundle on Debian: `system.ca_files` lands in /usr/local/share/ca-certificates and in
//! the bundle applications read (`/etc/ssl/certs/ca-certificates.crt`); a bundle rebuilt
//! without it (its block removed, the file still in place) is drift the next run repairs with
//! `update-ca-certificates`, and `run --check` reports before that.

use nodeprep_tests::{Testbed, lab, outcome, worker_only};

use crate::worker::run_json_at;

const HOST: &str = "prdk8swok557";
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The certificate's base64 body without line breaks (how the bundle is compared).
fn body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

/// Runs `args` and checks its exit code and the outcome of the "ca certificates" step.
fn run_expect(inv: &std::path::Path, args: &[&str], code: i32, step: &str) {
    let (got, events) = run_json_at(inv, args);
    assert_eq!(got, code, "{events:#?}");
    assert_eq!(outcome(&events, "ca certificates"), step, "{events:#?}");
}

fn bundle_holds(bundle: &str, pem: &str) -> bool {
    bundle
        .split("-----END CERTIFICATE-----")
        .any(|block| body(block).ends_with(&body(pem)) && !body(pem).is_empty())
}

#[test]
fn bundle_rebuilt_without_the_ca_is_repaired() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    // A self-signed CA made on the container (openssl comes with ca-certificates).
    let pem = lab
        .sh(
            HOST,
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout /dev/null -subj /CN=corp-root \
             -days 30 -out /tmp/corp-root.crt 2>/dev/null && cat /tmp/corp-root.crt && rm /tmp/corp-root.crt",
        )
        .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let cert = lab.dir().join("corp-root.crt");
    std::fs::write(&cert, &pem).unwrap();
    let inv = lab
        .write_inventory(&format!("[system]\nca_files = [\"{}\"]\n", cert.display()))
        .unwrap();
    let args = worker_only("run", HOST, &["ca certificates"]);

    run_expect(&inv, &args, 0, "changed");
    assert!(bundle_holds(&lab.read_file(HOST, BUNDLE).unwrap(), &pem));

    // The bundle rebuilt without it: its block removed, its file and link still in place.
    let first = pem.lines().nth(1).unwrap();
    lab.sh(
        HOST,
        &format!(
            "awk -v mark='{first}' '
                /-----BEGIN CERTIFICATE-----/ {{ buf = $0 \"\\n\"; inb = 1; next }}
                inb {{ buf = buf $0 \"\\n\"; if (/-----END CERTIFICATE-----/) {{ if (index(buf, mark) == 0) printf \"%s\", buf; inb = 0 }}; next }}
                {{ print }}' {BUNDLE} > /tmp/bundle && cat /tmp/bundle > {BUNDLE} && rm /tmp/bundle"
        ),
    )
    .unwrap();
    let drifted = lab.read_file(HOST, BUNDLE).unwrap();
    assert!(!bundle_holds(&drifted, &pem), "the block is still there");
    assert!(
        drifted.matches("-----BEGIN CERTIFICATE-----").count() > 10,
        "the other CAs are kept"
    );
    assert!(
        lab.read_file(HOST, "/usr/local/share/ca-certificates/corp-root.crt")
            .is_some()
    );

    // Drift: `run --check` says so (exit 5), the next run repairs it.
    run_expect(&inv, &[&args[..], &["--check"]].concat(), 5, "changed");
    run_expect(&inv, &args, 0, "changed");
    assert!(bundle_holds(&lab.read_file(HOST, BUNDLE).unwrap(), &pem));
    run_expect(&inv, &args, 0, "ok");
}
