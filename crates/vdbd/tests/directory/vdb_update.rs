//! `vdb-update` as a client of the directory, with `dns_server` naming it: the TXT records and
//! the mirror's host name (`database.<zone>`) are both looked up there, so a scanner host needs
//! no change to its system resolver to use a network's directory.

use vdb_testkit::{exe_beside, output_text};

use crate::freshclam::{fresh_db, local_version, mirror_double};
use crate::harness::{start_directory, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdb_update_finds_the_mirror_named_database_zone_through_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let doubles = mirror_double(&work.join("www")).await;
    let port = doubles.url.rsplit(':').next().unwrap().to_owned();
    let zone = "db.example.test";
    let cfg = write(
        &work.join("directory.toml"),
        &format!(
            "zone = \"{zone}\"\ndns_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             masters = [\"{u}\"]\nmonitors = [\"{u}\"]\npoll_secs = 1\n",
            u = doubles.url
        ),
    );
    let dir = start_directory(&cfg, &work.join("directory.log"));
    let txt = crate::harness::dig_short(dir.dns, &format!("test.cvd.{zone}"), "TXT").await;
    assert!(
        txt.first().is_some_and(|t| t.starts_with("\"6:")),
        "{txt:?}"
    );

    fresh_db(work);
    let conf = write(
        &work.join("vdb-update.toml"),
        &format!(
            "database_directory = \"{db}\"\n\
             mirrors = [\"http://database.{zone}:{port}\"]\n\
             dns_txt = \"current.cvd.{zone}\"\n\
             db_txt_zone = \"{zone}\"\n\
             dns_server = \"{dns}\"\n\
             databases = [\"test\"]\n\
             max_attempts = 1\nretry_delay_secs = 0\n",
            db = work.join("db").display(),
            dns = dir.dns,
        ),
    );
    let out = tokio::process::Command::new(exe_beside(env!("CARGO_BIN_EXE_vdbd"), "vdb-update"))
        .arg("--config")
        .arg(&conf)
        .output()
        .await
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(local_version(&work.join("db")), 6, "{text}");
    // The version came from the directory's TXT record (no header probe), the files from the
    // mirror it named.
    let files: Vec<String> = doubles
        .log()
        .into_iter()
        .filter(|r| !r.starts_with("/api/") && !r.starts_with("/.well-known/"))
        .collect();
    assert_eq!(
        files,
        [2, 3, 4, 5, 6].map(|v| format!("/test-{v}.cdiff range=no")),
        "{text}"
    );
    // And the mirror's address was asked of the directory.
    let metrics = crate::harness::http_get(&format!("{}/metrics", dir.http)).await;
    vdb_testkit::assert_contains(&metrics, r#"qtype="A""#);
}
