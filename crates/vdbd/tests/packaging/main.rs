//! The `vdbnet` package's files (`packaging/vdbnet/`): every example configuration it ships in
//! `/etc/vdbnet` is the example of `docs/deploy.md` (below a header) and passes the real loader
//! through the command line the systemd unit runs before each start (`vdbd <role> --config …
//! --check`); a broken one is refused with the file and the field named. `scripts/packages.sh`
//! checks the built packages themselves (dpkg, `systemd-analyze verify`). The Prometheus
//! alerting rules (`packaging/prometheus/`) load and pass their unit tests in `promtool`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DOC: &str = include_str!("../../../../docs/deploy.md");
const UNIT: &str = include_str!("../../../../packaging/vdbnet/systemd/vdbd@.service");
const ROLES: [&str; 5] = ["master", "mirror", "directory", "monitor", "intake"];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/vdbnet")
}

/// The body of the document's ```` ```toml ```` block for `/etc/vdbnet/<name>`, without its
/// `# file:` line.
fn doc_block(name: &str) -> String {
    let marker = format!("```toml\n# file: /etc/vdbnet/{name}\n");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/deploy.md has no block for /etc/vdbnet/{name}"))
        + marker.len();
    let len = DOC[start..].find("```").expect("the block ends");
    DOC[start..start + len].to_owned()
}

/// The unit's `Exec…=` command for `role`, with `/etc/vdbnet` moved to `etc`, as arguments.
fn unit_command(key: &str, role: &str, etc: &Path) -> Vec<String> {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("vdbd@.service has no {key}="));
    line.replace("%i", role)
        .replace("/etc/vdbnet", &etc.display().to_string())
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn run(args: &[String]) -> Output {
    assert_eq!(
        args[0], "/usr/bin/vdbd",
        "the unit runs the packaged binary"
    );
    Command::new(env!("CARGO_BIN_EXE_vdbd"))
        .args(&args[1..])
        .output()
        .expect("run vdbd")
}

#[test]
fn every_shipped_config_is_the_documented_one_and_passes_the_units_check() {
    let etc = tempfile::tempdir().unwrap();
    for role in ROLES {
        let shipped = std::fs::read_to_string(packaging().join(format!("etc/{role}.toml")))
            .unwrap_or_else(|e| panic!("packaging/vdbnet/etc/{role}.toml: {e}"));
        // `master.toml` is the document's master A.
        let documented = doc_block(&if role == "master" {
            "master-a.toml".to_owned()
        } else {
            format!("{role}.toml")
        });
        let header: Vec<&str> = shipped
            .strip_suffix(&documented)
            .unwrap_or_else(|| panic!("etc/{role}.toml differs from its docs/deploy.md block"))
            .lines()
            .collect();
        assert!(
            header.iter().all(|l| l.starts_with('#')) && header.len() >= 2,
            "etc/{role}.toml: only comment lines above the documented block"
        );
        std::fs::write(etc.path().join(format!("{role}.toml")), &shipped).unwrap();

        let out = run(&unit_command("ExecStartPre", role, etc.path()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with(&format!("config ok: {role} ")),
            "vdbd {role} --check refused the shipped config: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The server's own command line names the same file.
        let start = unit_command("ExecStart", role, etc.path());
        assert_eq!(
            &start[1..],
            [
                "--log-format".into(),
                "json".into(),
                role.to_owned(),
                "--config".into(),
                format!("{}/{role}.toml", etc.path().display()),
            ]
        );
    }
}

#[test]
fn check_refuses_a_broken_config_and_names_the_file_and_the_field() {
    let etc = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(packaging().join("etc/mirror.toml")).unwrap();
    let broken = shipped.replace("poll_secs = 300", "poll_secs = 0");
    assert_ne!(
        broken, shipped,
        "the shipped mirror.toml sets poll_secs = 300"
    );
    let path = etc.path().join("mirror.toml");
    std::fs::write(&path, broken).unwrap();
    let out = run(&unit_command("ExecStartPre", "mirror", etc.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a mirror with poll_secs = 0 was accepted"
    );
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("poll_secs"),
        "the error names the file and the field: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing said ok: {:?}", out.stdout);

    let out = run(&unit_command(
        "ExecStartPre",
        "monitor",
        &etc.path().join("missing"),
    ));
    assert!(!out.status.success(), "a missing config passed the check");
}

#[test]
fn only_the_roles_that_bind_low_ports_get_a_capability() {
    assert!(
        UNIT.lines().any(|l| l == "CapabilityBoundingSet=")
            && UNIT.lines().any(|l| l == "AmbientCapabilities="),
        "the template drops every capability"
    );
    for role in ROLES {
        let dropin = packaging().join(format!("systemd/vdbd@{role}.service.d/vdbnet.conf"));
        let text = std::fs::read_to_string(&dropin).unwrap_or_default();
        let binds_low = matches!(role, "master" | "mirror" | "directory");
        assert_eq!(
            text.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE")
                && text.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE"),
            binds_low,
            "{role}: CAP_NET_BIND_SERVICE only for ports 53, 80, 443"
        );
    }
}

/// The shipped alerting rules load (`promtool check rules`) and fire as their unit tests say
/// (`promtool test rules`: each alert after its `for`, none before). The network test checks
/// that every metric they name is one the real roles export.
#[test]
fn the_prometheus_rules_load_and_pass_their_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/prometheus");
    for args in [
        ["check", "rules", "vdbnet.rules.yml"],
        ["test", "rules", "vdbnet.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect(
                "promtool is installed (apt-get install prometheus; scripts/test-deps.sh does)",
            );
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
