//! The `vdb-update` package's files (`packaging/vdb-update/`): the configuration it ships in
//! `/etc/vdbnet` is the example of `docs/deploy.md` (below a header) and loads through the
//! loader the service's command line selects (`--config` = vdb-update's TOML), with the
//! network's manifest checks on; the service runs the packaged binary on that file.

use std::path::Path;

use vdb_update::config::Settings;

const DOC: &str = include_str!("../../../docs/deploy.md");
const SERVICE: &str = include_str!("../../../packaging/vdb-update/systemd/vdb-update.service");

#[test]
fn the_shipped_config_is_the_documented_one_and_loads() {
    let shipped_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/vdb-update/etc/vdb-update.toml");
    let shipped = std::fs::read_to_string(&shipped_path).unwrap();
    let marker = "```toml\n# file: /etc/vdbnet/vdb-update.toml\n";
    let start = DOC
        .find(marker)
        .expect("docs/deploy.md has the vdb-update.toml block")
        + marker.len();
    let documented = &DOC[start..start + DOC[start..].find("```").unwrap()];
    let header = shipped
        .strip_suffix(documented)
        .expect("etc/vdb-update.toml differs from its docs/deploy.md block");
    assert!(
        header.lines().all(|l| l.starts_with('#')),
        "only comments above it"
    );

    let s = Settings::load_toml(&shipped_path).expect("the shipped config loads");
    assert_eq!(s.database_directory, Path::new("/var/lib/clamav"));
    assert_eq!(s.mirrors, ["https://database.db.example.net"]);
    assert_eq!(s.dns_domain.as_deref(), Some("current.cvd.db.example.net"));
    let net = s.vdbnet.expect("manifest checks are on");
    assert_eq!(
        (net.network.as_str(), net.master_keys.len()),
        ("example", 2)
    );

    // The service reads that file with the TOML loader, from the packaged binary, into the
    // directory it may write (StateDirectory=clamav).
    assert!(
        SERVICE
            .lines()
            .any(|l| l == "ExecStart=/usr/bin/vdb-update --config /etc/vdbnet/vdb-update.toml"),
        "vdb-update.service runs the packaged binary on the shipped config"
    );
    assert!(SERVICE.lines().any(|l| l == "StateDirectory=clamav"));
}
