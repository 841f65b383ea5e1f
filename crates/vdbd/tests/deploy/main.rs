//! `docs/deploy.md` is executable: every ```` ```toml ```` block that starts with `# file:` is a
//! role's real configuration. This test takes them from the document, maps the example's hosts
//! to loopback (fresh keys, temporary directories, ports picked here; TLS and the GeoIP file,
//! which need material the test cannot have, are left out and say so below), starts each role
//! with the real `vdbd`, registers the mirror and publishes a release the way the document
//! says, and checks that the release flows through to the mirror and into the directory.

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

/// The `# file:` blocks of the document: file name → text.
fn blocks() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```toml" {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let first = body.first().copied().unwrap_or_default();
        let name = first
            .strip_prefix("# file: ")
            .unwrap_or_else(|| panic!("a toml block without `# file:`: {first:?}"));
        out.insert(name.rsplit('/').next().unwrap().to_owned(), body.join("\n"));
    }
    out
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
    let dir_cfg = swap(&dir_cfg, "0.0.0.0:53", "127.0.0.1:0");
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
}
