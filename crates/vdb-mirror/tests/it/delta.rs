//! Delta transfer against the master double (real HTTP with `Range`): a mirror holding release
//! N rebuilds N+1 from it plus the cdiff and the segment map, fetching only the header; a map
//! that lies or ranges that come back wrong fall back to the whole file, and the served bytes
//! are always the master's.

use std::collections::BTreeMap;

use vdb_format::Kind;
use vdb_format::build::{BuildSpec, ENGINE_FLEVEL_146, build};
use vdb_format::cdiff::Cdiff;
use vdb_format::segment::segment_map;
use vdb_proto::ObjectRef;
use vdb_testkit::keys::{NETWORK, master_key};

use super::{NOW, body, setup, start, sync, url, wait_serial};

/// An unpacked `daily` database of about `lines` signature lines, edited per `version`.
fn database(version: u32, lines: usize) -> BTreeMap<String, Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hdb = String::new();
    for i in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Scattered edits per version: every 5000th line changes, and lines are appended.
        let tag = if i % 5000 == 0 { version } else { 0 };
        hdb.push_str(&format!(
            "{x:016x}{:016x}:{}:Delta.Test-{i}-{tag}\n",
            x.rotate_left(9),
            100 + i
        ));
    }
    for v in 0..version {
        hdb.push_str(&format!("{:032x}:77:Delta.Appended-{v}\n", v));
    }
    let mut files = BTreeMap::new();
    files.insert("COPYING".to_owned(), b"test\n".to_vec());
    files.insert("daily.hdb".to_owned(), hdb.into_bytes());
    files
}

fn cud(version: u32) -> Vec<u8> {
    let spec = BuildSpec {
        db_name: "daily".into(),
        kind: Kind::Cud,
        version,
        flevel: 200,
        builder: "delta".into(),
        build_secs: 1_700_000_000 + u64::from(version),
        signatures: None,
        engine_flevel: ENGINE_FLEVEL_146,
    };
    build(&spec, &database(version, 45_000), None).unwrap().0
}

fn members(file: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let keys = vdb_format::KeySet::official();
    vdb_format::container::read_to_map(file, Kind::Cud, &keys, &Default::default())
        .unwrap()
        .1
}

/// The cdiff from `old` to `new` (a placeholder signature: mirrors hold no ClamAV keys; the
/// rebuilt file is checked against the signed manifest's hash).
fn cdiff(old: &[u8], new: &[u8], version: u32) -> Vec<u8> {
    let script = vdb_format::cdiff::diff(&members(old), &members(new)).unwrap();
    Cdiff::write(
        version,
        script.to_text().as_bytes(),
        |_| Ok("A".repeat(330)),
    )
    .unwrap()
}

/// Publishes serial `serial`: `daily.cud` at `version` (with its segment map, or `map`
/// instead when given) and the cdiffs `cdiffs`.
fn publish(
    master: &vdb_testkit::MasterDouble,
    serial: u64,
    version: u32,
    file: &[u8],
    map: Option<Vec<u8>>,
    cdiffs: &[(String, Vec<u8>)],
) {
    let map = map.unwrap_or_else(|| segment_map(file, 1 << 32).unwrap().to_json());
    let mut files: Vec<(String, Vec<u8>)> = cdiffs.to_vec();
    files.push(("daily.cud".to_owned(), file.to_vec()));
    // Objects first, then the manifest naming them.
    master.publish(&master_key(), serial, NOW, &[("daily", version)], &files);
    master.put_object(map.clone());
    let mut m = vdb_testkit::keys::manifest(NETWORK, serial, NOW, &[("daily", version)], &files);
    for f in &mut m.files {
        if f.name == "daily.cud" {
            f.segments = Some(ObjectRef {
                sha256: vdb_proto::sha256_hex(&map),
                size: map.len() as u64,
            });
        }
    }
    master.set_manifest_raw(vdb_testkit::keys::signed(&m, &master_key()));
}

async fn metric(m: &vdb_mirror::Running, series: &str) -> f64 {
    let text = vdb_testkit::http::get_text(&url(m, "/metrics")).await;
    vdb_testkit::http::metric(&text, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_rebuilds_the_next_release_and_falls_back_when_anything_is_off() {
    let s = setup();
    let v1 = cud(1);
    let v2 = cud(2);
    let v3 = cud(3);
    let v4 = cud(4);
    assert!(v1.len() > 1 << 20, "{} bytes", v1.len());
    let c2 = ("daily-2.cdiff".to_owned(), cdiff(&v1, &v2, 2));
    let c3 = ("daily-3.cdiff".to_owned(), cdiff(&v2, &v3, 3));
    let c4 = ("daily-4.cdiff".to_owned(), cdiff(&v3, &v4, 4));

    publish(&s.master, 1, 1, &v1, None, &[]);
    let m = start(&s, &[s.master.url()], "").await;
    wait_serial(&m, 1).await;
    assert_eq!(body(&m, "/daily.cud").await, v1);

    // N → N+1 by delta: only the cdiff, the map and the 512-byte header are pulled.
    let pulled = metric(&m, "vdb_mirror_pulled_bytes_total").await;
    publish(&s.master, 2, 2, &v2, None, std::slice::from_ref(&c2));
    sync(&m).await.unwrap();
    assert_eq!(m.serial(), Some(2));
    assert_eq!(body(&m, "/daily.cud").await, v2, "served byte for byte");
    let update = metric(&m, "vdb_mirror_pulled_bytes_total").await - pulled;
    assert!(
        update <= 0.05 * v2.len() as f64,
        "pulled {update} bytes for a {}-byte file",
        v2.len()
    );
    let reused = metric(&m, "vdb_mirror_delta_reused_bytes_total").await;
    assert_eq!(reused, (v2.len() - 512) as f64);

    // A map that lies (a segment's hash): the delta is refused, the whole file is fetched.
    let mut lying = segment_map(&v3, 1 << 32).unwrap();
    lying.segments[1].sha256 = "0".repeat(64);
    let pulled = metric(&m, "vdb_mirror_pulled_bytes_total").await;
    publish(
        &s.master,
        3,
        3,
        &v3,
        Some(lying.to_json()),
        &[c2.clone(), c3.clone()],
    );
    sync(&m).await.unwrap();
    assert_eq!(body(&m, "/daily.cud").await, v3);
    let update = metric(&m, "vdb_mirror_pulled_bytes_total").await - pulled;
    assert!(
        update >= v3.len() as f64,
        "fell back to the whole file: {update}"
    );

    // Ranges that come back garbled: refused, whole file, right bytes.
    s.master.corrupt_ranges(true);
    let pulled = metric(&m, "vdb_mirror_pulled_bytes_total").await;
    publish(&s.master, 4, 4, &v4, None, &[c3.clone(), c4.clone()]);
    sync(&m).await.unwrap();
    assert_eq!(body(&m, "/daily.cud").await, v4);
    let update = metric(&m, "vdb_mirror_pulled_bytes_total").await - pulled;
    assert!(
        update >= v4.len() as f64,
        "fell back to the whole file: {update}"
    );
    assert_eq!(
        metric(&m, "vdb_mirror_delta_reused_bytes_total").await,
        reused,
        "no delta counted for the refused ones"
    );
    m.shutdown().await;
}
