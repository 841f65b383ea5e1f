//! `docs/deploy.md` is executable: every ```` ```toml ```` block that starts with `# file:` is a
//! role's real configuration. This test takes them from the document, maps the example's hosts
//! to loopback (fresh keys, temporary directories, ports picked here; TLS and the GeoIP file,
//! which need material the test cannot have, are left out and say so below), starts each role
//! with the real `vdbd`, registers the mirror and publishes a release the way the document
//! says, and checks that the release flows through to the mirror and into the directory. Then
//! the clients of §10: `vdb-update` from the documented `vdb-update.toml`, with the directory as
//! its `dns_server`, and the real `freshclam` from the documented `freshclam.conf`, resolving
//! through the directory in a private mount namespace (root only: port 53 and `mount --bind`
//! over `/etc/resolv.conf`; CI runs as root).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use vdb_client::{Admin, ReleaseFile};
use vdb_proto::{MirrorRecord, SecretKey};
use vdb_testkit::checks::version_at;
use vdb_testkit::http::{block_on, fetch};
use vdb_testkit::publish::publish_once;
use vdb_testkit::{Proc, fixtures, free_port, wait_for};

const DOC: &str = include_str!("../../../../docs/deploy.md");

/// The `# file:` blocks of the document: file name → text. Every ```` ```toml ```` block is
/// one; a ```` ```text ```` block is one when it starts with `# file:` (`freshclam.conf`).
fn blocks() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let toml = line.trim() == "```toml";
        if !toml && line.trim() != "```text" {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let first = body.first().copied().unwrap_or_default();
        let Some(name) = first.strip_prefix("# file: ") else {
            assert!(!toml, "a toml block without `# file:`: {first:?}");
            continue;
        };
        out.insert(name.rsplit('/').next().unwrap().to_owned(), body.join("\n"));
    }
    out
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The version of `db` in a database directory (`.cld` or `.cvd`), 0 if none.
fn local_version(dir: &Path, db: &str) -> u32 {
    ["cld", "cvd"]
        .iter()
        .filter_map(|ext| std::fs::read(dir.join(format!("{db}.{ext}"))).ok())
        .find_map(|bytes| vdb_format::Header::parse(&bytes[..512.min(bytes.len())]).ok())
        .map_or(0, |h| h.version)
}

/// Starts a role from a config of the document (its log beside it).
fn start(role: &str, config: &Path) -> Proc {
    Proc::start_role(
        env!("CARGO_BIN_EXE_vdbd"),
        role,
        config,
        &config.with_extension("log"),
    )
}

fn port() -> u16 {
    free_port("127.0.0.1")
}

/// Replaces every occurrence, insisting that the document still contains `from`.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "docs/deploy.md no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// Drops the lines starting with any of `keys` (TLS and GeoIP material).
fn without(text: &str, keys: &[&str]) -> String {
    text.lines()
        .filter(|l| !keys.iter().any(|k| l.trim_start().starts_with(k)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_role_starts_from_the_documented_configs_and_a_release_flows_through() {
    let b = blocks();
    for name in [
        "master-a.toml",
        "mirror.toml",
        "directory.toml",
        "monitor.toml",
        "vdb-update.toml",
        "freshclam.conf",
    ] {
        assert!(b.contains_key(name), "docs/deploy.md has no {name} block");
    }
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let var = tmp.path().join("var");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&var).unwrap();

    // Fresh keys in place of the example's.
    let (ka, kb, kp) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    std::fs::write(etc.join("master-a.key"), ka.to_text()).unwrap();
    std::fs::write(etc.join("master-b.key"), kb.to_text()).unwrap();
    let (pa, pb, pm) = (port(), port(), port());
    let url_a = format!("http://127.0.0.1:{pa}");
    let url_b = format!("http://127.0.0.1:{pb}");
    let url_m = format!("http://127.0.0.1:{pm}");
    let example_key = |text: &str, nth: usize| -> String {
        // The example's public keys, in order of first appearance.
        let mut seen: Vec<String> = Vec::new();
        for w in text.split('"') {
            if w.starts_with("ed25519:") && !seen.contains(&w.to_owned()) {
                seen.push(w.to_owned());
            }
        }
        seen[nth].clone()
    };
    let common = |text: &str| -> String {
        let t = text
            .replace("/etc/vdbnet/", &format!("{}/", etc.display()))
            .replace("/var/lib/vdbnet/", &format!("{}/", var.display()))
            .replace("https://master-a.example.net", &url_a)
            .replace("https://master-b.example.net", &url_b)
            .replace("https://monitor.example.net:8090", &url_m);
        // Not checkable here: TLS material and the GeoIP database (see the module docs).
        without(&t, &["tls_", "geoip_db", "webhook_url"])
    };

    // Master A as documented; master B "the same file with name b, its own key, A as peer".
    let doc_a = &b["master-a.toml"];
    let (publisher_example, peer_example) = (example_key(doc_a, 0), example_key(doc_a, 1));
    let a = common(doc_a);
    let a = swap(&a, "0.0.0.0:443", &format!("127.0.0.1:{pa}"));
    let a = swap(&a, &publisher_example, &kp.public().to_string());
    let a = swap(&a, &peer_example, &kb.public().to_string());
    // The documented publisher may publish daily/main/bytecode; the fixture is `test`.
    let a = swap(
        &a,
        r#"databases = ["daily", "main", "bytecode"]"#,
        r#"databases = ["*"]"#,
    );
    let b_cfg = a
        .replace("name = \"a\"", "name = \"b\"")
        .replace("master-a.key", "master-b.key")
        .replace(&format!("127.0.0.1:{pa}"), &format!("127.0.0.1:{pb}"))
        .replace(&url_b, &url_a)
        .replace(&kb.public().to_string(), &ka.public().to_string());
    let a = a.replace("/master\"", "/master-a\"");
    let b_cfg = b_cfg.replace("/master\"", "/master-b\"");
    std::fs::write(etc.join("master-a.toml"), &a).unwrap();
    std::fs::write(etc.join("master-b.toml"), &b_cfg).unwrap();
    let master_a = start("master", &etc.join("master-a.toml"));
    let master_b = start("master", &etc.join("master-b.toml"));
    assert_eq!(master_a.ready().http_url(), url_a);
    assert_eq!(master_b.ready().http_url(), url_b);

    // The mirror.
    let doc_m = &b["mirror.toml"];
    let m = common(doc_m);
    let m = swap(&m, &example_key(doc_m, 0), &ka.public().to_string());
    let m = swap(&m, &example_key(doc_m, 1), &kb.public().to_string());
    let m = swap(&m, "0.0.0.0:80", "127.0.0.1:0");
    std::fs::write(etc.join("mirror.toml"), &m).unwrap();
    let mirror = start("mirror", &etc.join("mirror.toml"));
    let mirror_url = mirror.ready().http_url();

    // The monitor and the directory.
    let doc_mon = &b["monitor.toml"];
    let mon = common(doc_mon);
    let mon = swap(&mon, &example_key(doc_mon, 0), &ka.public().to_string());
    let mon = swap(&mon, &example_key(doc_mon, 1), &kb.public().to_string());
    let mon = swap(&mon, "0.0.0.0:8090", &format!("127.0.0.1:{pm}"));
    let mon = swap(&mon, "check_interval_secs = 300", "check_interval_secs = 1");
    std::fs::write(etc.join("monitor.toml"), &mon).unwrap();
    let _monitor = start("monitor", &etc.join("monitor.toml"));
    // The directory trusts the key the monitor made at its first start (`key_file`).
    let monitor_key = vdb_proto::SecretKey::load_or_create(&var.join("monitor/monitor.key"))
        .map(|(k, made)| {
            assert!(!made, "the monitor made its key file");
            k.public()
        })
        .unwrap();
    let doc_dir = &b["directory.toml"];
    let dir_cfg = common(doc_dir);
    let dir_cfg = swap(&dir_cfg, &example_key(doc_dir, 0), &monitor_key.to_string());
    // As root, port 53 of a loopback address of our own, so that freshclam's resolver (which
    // knows no ports) can ask it; otherwise any port.
    let root = is_root();
    let pid = std::process::id();
    let dns_ip = format!("127.53.{}.{}", (pid >> 8) & 0xff, (pid & 0xff).max(1));
    let dns_listen = if root {
        format!("{dns_ip}:53")
    } else {
        "127.0.0.1:0".to_owned()
    };
    let dir_cfg = swap(&dir_cfg, "0.0.0.0:53", &dns_listen);
    let dir_cfg = swap(&dir_cfg, "0.0.0.0:8080", "127.0.0.1:0");
    let dir_cfg = swap(&dir_cfg, "poll_secs = 5", "poll_secs = 1");
    std::fs::write(etc.join("directory.toml"), &dir_cfg).unwrap();
    let directory = start("directory", &etc.join("directory.toml"));

    // Register the mirror (what `vdb mirror add` sends) and publish (what `vdb publish` sends).
    let token = a
        .lines()
        .find_map(|l| l.strip_prefix("admin_token = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let mut rec = MirrorRecord::new("mirror1", &mirror_url);
    rec.push_url = Some(format!("{mirror_url}{}", vdb_proto::paths::PUSH));
    rec.addresses = vec!["127.0.0.1".parse().unwrap()];
    rec.country = Some("DE".into());
    rec.region = Some("europe".into());
    block_on(Admin::new(&url_a, Some(token)).add(&rec)).expect("register the mirror");
    let files = vec![ReleaseFile {
        name: "test.cvd".into(),
        path: fixtures::path("test-6.cvd"),
    }];
    block_on(publish_once(&[url_a.clone(), url_b.clone()], &kp, &files))
        .expect("publish through the documented masters");

    // It reaches the mirror (pushed) and the directory hands the mirror out.
    let keys = [ka.public(), kb.public()];
    let directory_url = directory.ready().http_url();
    wait_for(
        "the release to flow through to the mirror and the directory",
        30,
        || {
            let served = version_at(&mirror_url, &keys, "test") == 6;
            let listed = fetch(&format!("{directory_url}/api/v1/mirrors"))
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| {
                    v["mirrors"].as_array().is_some_and(|ms| {
                        // Handed out because the monitor's signed verdict says it is in
                        // service (not by the fail-static rule).
                        ms.iter().any(|m| {
                            m["name"] == "mirror1"
                                && m["handed_out"] == true
                                && m["states"] == serde_json::json!(["in_service"])
                        })
                    })
                });
            eprintln!("mirror serves it: {served}, directory lists the mirror: {listed}");
            (served && listed).then_some(())
        },
    );

    // §11: what `dig` shows.
    let dns = directory.ready().dns_addr();
    let zone = "db.example.net";
    let txt = vdb_testkit::dig::query(dns, &format!("test.cvd.{zone}"), "TXT")
        .run()
        .short();
    assert!(
        txt.first().is_some_and(|t| t.starts_with("\"6:")),
        "{txt:?}"
    );
    let a = vdb_testkit::dig::query(dns, &format!("database.{zone}"), "A")
        .run()
        .short();
    assert_eq!(a, ["127.0.0.1"]);
    let mirror_port = mirror_url.rsplit(':').next().unwrap().to_owned();
    // The example's mirrors speak HTTPS on 443; here the mirror is plain HTTP on its port.
    let mirror_by_name = format!("http://database.{zone}:{mirror_port}");

    // §10: vdb-update from the documented file, the directory as its DNS server.
    let doc_u = &b["vdb-update.toml"];
    let u = swap(
        doc_u,
        "\"/var/lib/clamav\"",
        &format!("{:?}", tmp.path().join("db-vdb-update")),
    );
    let u = swap(
        &u,
        "\"https://database.db.example.net\"",
        &format!("{mirror_by_name:?}"),
    );
    let u = swap(&u, &example_key(doc_u, 0), &ka.public().to_string());
    let u = swap(&u, &example_key(doc_u, 1), &kb.public().to_string());
    // The test network carries the fixture database `test`, whose record is in the zone.
    let u =
        format!("{u}\ndns_server = \"{dns}\"\ndatabases = [\"test\"]\ndb_txt_zone = \"{zone}\"\n");
    std::fs::create_dir_all(tmp.path().join("db-vdb-update")).unwrap();
    std::fs::write(etc.join("vdb-update.toml"), &u).unwrap();
    let out = std::process::Command::new(vdb_testkit::exe_beside(
        env!("CARGO_BIN_EXE_vdbd"),
        "vdb-update",
    ))
    .arg("--config")
    .arg(etc.join("vdb-update.toml"))
    .output()
    .unwrap();
    let text = vdb_testkit::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        local_version(&tmp.path().join("db-vdb-update"), "test"),
        6,
        "{text}"
    );

    // §10: the real freshclam from the documented freshclam.conf.
    assert!(
        root,
        "the freshclam part of this test needs root: it binds port 53 on a loopback address and \
         uses unshare -m to give freshclam a resolv.conf naming the directory"
    );
    let fdb = tmp.path().join("db-freshclam");
    std::fs::create_dir_all(&fdb).unwrap();
    let doc_f = &b["freshclam.conf"];
    let f = swap(doc_f, "/var/lib/clamav", &fdb.display().to_string());
    let f = swap(&f, "DatabaseOwner clamav", "DatabaseOwner root");
    let f = swap(&f, "https://database.db.example.net", &mirror_by_name);
    // No clamd here; a log to read on failure.
    let f = without(&f, &["NotifyClamd"]);
    let f = format!(
        "{f}\nUpdateLogFile {}\nLogVerbose yes\nLogFileMaxSize 0\nMaxAttempts 1\n",
        tmp.path().join("freshclam.log").display()
    );
    std::fs::write(etc.join("freshclam.conf"), &f).unwrap();
    std::fs::write(
        etc.join("resolv.conf"),
        format!("nameserver {dns_ip}\noptions timeout:2 attempts:2\n"),
    )
    .unwrap();
    let script = format!(
        "mount --bind {etc}/resolv.conf /etc/resolv.conf && exec freshclam --config-file={etc}/freshclam.conf --update-db=test",
        etc = etc.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare runs (util-linux)");
    let text = vdb_testkit::output_text(&out);
    assert!(out.status.success(), "freshclam failed:\n{text}");
    assert_eq!(local_version(&fdb, "test"), 6, "{text}");
}
