//! A mirror joins a network with its own identity key, end to end on the real binaries:
//! `vdbd mirror join` → pending on the masters → the admin approves (or rejects) → the mirror
//! pulls with its key and serves; its own signed changes (maintenance, update, rotate-key,
//! leave), forged and replayed requests, the bounded pending table, replication of requests
//! between two masters, and `docs/join.md` executed as written (`docs.rs`).

mod docs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vdb_client::Admin;
use vdb_proto::{
    JoinState, MaintenanceWindow, MirrorAction, MirrorRecord, MirrorRequest, PublicKey, SecretKey,
    Signed,
};
use vdb_testkit::http::{call, get};
use vdb_testkit::keys::publisher_key;
use vdb_testkit::publish::{publish, test_release};
use vdb_testkit::{Proc, free_port, now, output_text, wait_for};

const ADMIN: &str = "admin-token-0123456789";
const PULL: &str = "pull-token-0123456789";
const NET: &str = "testnet";
const CONTACT: &str = "ops@m1.example";

fn vdbd() -> &'static str {
    env!("CARGO_BIN_EXE_vdbd")
}

/// A master's config in `d` (port 0 unless given; `extra` lines at the end of the top level).
fn master_config(d: &Path, name: &str, port: u16, key: &SecretKey, extra: &str) -> PathBuf {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(d.join(format!("{name}.key")), key.to_text()).unwrap();
    let path = d.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nnetwork = \"{NET}\"\nlisten = \"127.0.0.1:{port}\"\n\
             data_dir = {:?}\nkey_file = {:?}\nadmin_token = \"{ADMIN}\"\n\
             pull_tokens = [\"{PULL}\"]\ntick_ms = 50\npush_backoff_ms = 20\n{extra}\n\
             [[publishers]]\nkey = \"{}\"\ndatabases = [\"test\"]\n",
            d.join(format!("{name}-data")).display().to_string(),
            d.join(format!("{name}.key")).display().to_string(),
            publisher_key().public(),
        ),
    )
    .unwrap();
    path
}

fn start_master(config: &Path) -> (Proc, String) {
    let p = Proc::start_role(vdbd(), "master", config, &config.with_extension("log"));
    let url = p.ready().http_url();
    (p, url)
}

/// A mirror's config: listening on a port picked here (its public URL is in the request).
fn mirror_config(d: &Path, name: &str, masters: &[String], keys: &[PublicKey]) -> (PathBuf, u16) {
    let dir = d.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port("127.0.0.1");
    let path = dir.join("mirror.toml");
    let quoted = |v: Vec<String>| v.join(", ");
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nnetwork = \"{NET}\"\nmasters = [{}]\nmaster_keys = [{}]\n\
             data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\npoll_secs = 3600\n\n\
             [registration]\nbase_urls = [\"http://127.0.0.1:{port}\"]\ncountry = \"DE\"\n\
             region = \"europe\"\nbandwidth_mbps = 1000\nadmin_contact = \"{CONTACT}\"\n",
            quoted(masters.iter().map(|m| format!("{m:?}")).collect()),
            quoted(keys.iter().map(|k| format!("\"{k}\"")).collect()),
            dir.join("data").display().to_string(),
        ),
    )
    .unwrap();
    (path, port)
}

/// `vdbd mirror <args> --config <config>`.
fn mirror_cmd(config: &Path, args: &[&str]) -> Output {
    Command::new(vdbd())
        .arg("mirror")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("VDB_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", output_text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn identity(config: &Path) -> SecretKey {
    let text = std::fs::read_to_string(config.with_file_name("data").join("identity.key")).unwrap();
    SecretKey::from_text(&text).unwrap()
}

fn admin(url: &str) -> Admin {
    Admin::new(url, Some(ADMIN.to_owned()))
}

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

async fn status(url: &str) -> serde_json::Value {
    let (code, body) = call("GET", &format!("{url}/api/v1/status"), &[], None).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The version of `test` a mirror serves (0: none yet).
fn served(port: u16) -> u64 {
    let (_, _, body) = get(
        SocketAddr::from(([127, 0, 0, 1], port)),
        vdb_mirror::STATUS_PATH,
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["databases"]["test"].as_u64().unwrap_or(0)
}

/// A raw GET of one of the master's objects with `auth` as the `Authorization` header.
fn object_status(master: &str, path: &str, auth: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    get(addr(master), path, &headers).0
}

fn signed_pull(key: &SecretKey, name: &str, path: &str) -> String {
    vdb_proto::pull_authorization(key, NET, name, "GET", path, now())
}

/// Posts a signed request body to a mirror's requests endpoint: (status, body).
async fn post_request(master: &str, name: &str, body: String) -> (u16, String) {
    call(
        "POST",
        &format!("{master}/api/v1/mirrors/{name}/requests"),
        &[("Content-Type", "application/json")],
        Some(body.into_bytes()),
    )
    .await
}

fn maintenance(name: &str, at: i64) -> MirrorRequest {
    MirrorRequest::new(
        NET,
        name,
        at,
        MirrorAction::Maintenance(MaintenanceWindow {
            start: now() + 3600,
            end: now() + 7200,
            reason: "forged?".into(),
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_joins_pulls_with_its_key_changes_its_record_rotates_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mkey = SecretKey::from_seed([42; 32]);
    let (_master, url) = start_master(&master_config(d, "ma", 0, &mkey, ""));
    publish(
        std::slice::from_ref(&url),
        &publisher_key(),
        &test_release(1),
        20,
    )
    .await;
    let manifest = admin(&url).manifest(&[mkey.public()]).await.unwrap();
    let object = format!("/api/v1/objects/{}", manifest.files[0].sha256);

    // The mirror operator asks to join; the master holds the request, pending.
    let (cfg, port) = mirror_config(d, "m1", std::slice::from_ref(&url), &[mkey.public()]);
    let out = ok(&mirror_cmd(&cfg, &["join", "--no-wait"]));
    assert!(out.contains("made the identity key"), "{out}");
    assert!(out.contains("pending"), "{out}");
    let key = identity(&cfg);
    let key_file = cfg.with_file_name("data").join("identity.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let s = status(&url).await;
    assert_eq!(s["pending_joins"], 1, "{s}");
    assert_eq!(s["pending_join_names"], serde_json::json!(["m1"]));
    assert!(
        !s.to_string().contains(CONTACT),
        "the status page shows no contact"
    );
    let pending = admin(&url).pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, key.public());
    assert_eq!(pending[0].record.admin_contact.as_deref(), Some(CONTACT));
    assert!(
        admin(&url).list().await.unwrap().is_empty(),
        "not registered yet"
    );
    // Without the admin token nobody sees the requests.
    assert!(Admin::new(&url, None).pending().await.is_err());

    // Before approval its key opens nothing.
    let mirror = Proc::start_role(vdbd(), "mirror", &cfg, &cfg.with_extension("log"));
    assert_eq!(
        object_status(&url, &object, Some(&signed_pull(&key, "m1", &object))),
        403
    );
    assert_eq!(served(port), 0);

    // The admin approves: the record pins the key, the master pushes, the mirror pulls with
    // its key and serves.
    let rec = admin(&url).approve("m1").await.unwrap();
    assert_eq!(rec.identity_key, Some(key.public()));
    assert_eq!(rec.base_urls, vec![format!("http://127.0.0.1:{port}")]);
    assert_eq!(rec.country.as_deref(), Some("DE"));
    let out = ok(&mirror_cmd(
        &cfg,
        &["join", "--poll-secs", "1", "--wait-secs", "30"],
    ));
    assert!(out.contains("approved"), "{out}");
    wait_for("the joined mirror to pull v1 with its key", 30, || {
        (served(port) == 1).then_some(())
    });
    assert_eq!(status(&url).await["pending_joins"], 0);

    // Both ways in, and the wrong ones refused.
    assert_eq!(
        object_status(&url, &object, Some(&signed_pull(&key, "m1", &object))),
        200
    );
    assert_eq!(
        object_status(&url, &object, Some(&format!("Bearer {PULL}"))),
        200,
        "mirrors without a key keep using the pull token"
    );
    assert_eq!(object_status(&url, &object, None), 401);
    assert_eq!(
        object_status(&url, &object, Some("Bearer wrong-token-000000")),
        401
    );
    let stranger = SecretKey::generate();
    assert_eq!(
        object_status(&url, &object, Some(&signed_pull(&stranger, "m1", &object))),
        403
    );
    let other_path = format!("/api/v1/objects/{}", manifest.files[1].sha256);
    assert_eq!(
        object_status(&url, &other_path, Some(&signed_pull(&key, "m1", &object))),
        403,
        "a signature covers its path only"
    );
    let stale = vdb_proto::pull_authorization(&key, NET, "m1", "GET", &object, now() - 3600);
    assert_eq!(object_status(&url, &object, Some(&stale)), 403);

    // Forged and replayed requests.
    let req = maintenance("m1", now());
    let (code, body) = post_request(&url, "m1", Signed::sign(&req, &stranger).to_json()).await;
    assert_eq!((code, body.contains("unknown_key")), (403, true), "{body}");
    let good = Signed::sign(&req, &key).to_json();
    let tampered = good.replace("forged?", "changed");
    assert_ne!(tampered, good);
    let (code, body) = post_request(&url, "m1", tampered).await;
    assert_eq!(
        (code, body.contains("bad_signature")),
        (403, true),
        "{body}"
    );
    let (code, body) = post_request(
        &url,
        "m1",
        Signed::sign(&maintenance("m1", now() - 3600), &key).to_json(),
    )
    .await;
    assert_eq!((code, body.contains("replay")), (409, true), "{body}");
    let (code, body) = post_request(
        &url,
        "nosuch",
        Signed::sign(&maintenance("nosuch", now()), &key).to_json(),
    )
    .await;
    assert_eq!((code, body.contains("no_mirror")), (404, true), "{body}");
    let (code, body) = post_request(&url, "m1", good.clone()).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = post_request(&url, "m1", good).await;
    assert_eq!(
        (code, body.contains("replay")),
        (409, true),
        "a replay: {body}"
    );

    // The mirror admin's own changes, through vdbd.
    let out = ok(&mirror_cmd(
        &cfg,
        &[
            "maintenance",
            "--from",
            "+2h",
            "--until",
            "+3h",
            "--reason",
            "disk swap",
        ],
    ));
    assert!(out.contains("recorded"), "{out}");
    let out = ok(&mirror_cmd(
        &cfg,
        &[
            "update",
            "--contact",
            "new@m1.example",
            "--address",
            "192.0.2.7",
        ],
    ));
    assert!(out.contains("recorded"), "{out}");
    let rec = admin(&url).show("m1").await.unwrap();
    assert!(
        rec.maintenance.iter().any(|w| w.reason == "disk swap"),
        "{rec:?}"
    );
    assert_eq!(rec.admin_contact.as_deref(), Some("new@m1.example"));
    assert_eq!(
        rec.addresses,
        vec!["192.0.2.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(
        !rec.in_maintenance(now()),
        "the announced window is in the future"
    );
    // The admin-side commands still work on a joined mirror.
    admin(&url).drain("m1", false).await.unwrap();

    // Rotate the key: the old one stops at once, the running mirror follows with the new one.
    let out = ok(&mirror_cmd(&cfg, &["rotate-key"]));
    assert!(out.contains("rotated"), "{out}");
    let new_key = identity(&cfg);
    assert_ne!(new_key.public(), key.public());
    assert_eq!(
        admin(&url).show("m1").await.unwrap().identity_key,
        Some(new_key.public())
    );
    assert_eq!(
        object_status(&url, &object, Some(&signed_pull(&key, "m1", &object))),
        403,
        "the old key is refused at once"
    );
    assert_eq!(
        object_status(&url, &object, Some(&signed_pull(&new_key, "m1", &object))),
        200
    );
    publish(
        std::slice::from_ref(&url),
        &publisher_key(),
        &test_release(2),
        20,
    )
    .await;
    wait_for("the mirror to pull v2 with its new key", 30, || {
        (served(port) == 2).then_some(())
    });
    // A change signed by the old key is refused too.
    let (code, _) = post_request(
        &url,
        "m1",
        Signed::sign(&maintenance("m1", now()), &key).to_json(),
    )
    .await;
    assert_eq!(code, 403);

    // Leave: out of the registry, pulls refused, the history shows the whole story.
    let out = ok(&mirror_cmd(
        &cfg,
        &["leave", "--reason", "hardware retired"],
    ));
    assert!(out.contains("left"), "{out}");
    assert!(admin(&url).list().await.unwrap().is_empty());
    assert_eq!(
        object_status(&url, &object, Some(&signed_pull(&new_key, "m1", &object))),
        403
    );
    let history = admin(&url).mirror_history("m1", 100).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "join_request",
        "approve",
        "maintenance",
        "update",
        "undrain",
        "rotate_key",
        "leave",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert_eq!(actions[0], "leave", "newest first");
    assert!(history[0].detail.contains("hardware retired"));
    assert_eq!(history[0].actor, new_key.public().to_string());
    drop(mirror);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_join_says_why_and_pulls_stay_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mkey = SecretKey::from_seed([43; 32]);
    let (_master, url) = start_master(&master_config(d, "ma", 0, &mkey, ""));
    let (cfg, _) = mirror_config(d, "m2", std::slice::from_ref(&url), &[mkey.public()]);
    ok(&mirror_cmd(&cfg, &["join", "--no-wait"]));
    // The operator waits; the admin rejects meanwhile.
    let waiting = Command::new(vdbd())
        .args([
            "mirror",
            "join",
            "--poll-secs",
            "1",
            "--wait-secs",
            "60",
            "--config",
        ])
        .arg(&cfg)
        .env("VDB_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: the command gives up after 60 s on its own.
    let waited = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap());
    admin(&url)
        .reject("m2", "we have enough mirrors in DE")
        .await
        .unwrap();
    let out = waited.await.unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("we have enough mirrors in DE"),
        "{}",
        output_text(&out)
    );
    // Running join again reports the decision instead of asking again.
    let again = mirror_cmd(&cfg, &["join", "--no-wait"]);
    assert!(!again.status.success());
    assert!(
        output_text(&again).contains("--resubmit"),
        "{}",
        output_text(&again)
    );
    let st = Admin::new(&url, None).join_status("m2").await.unwrap();
    assert_eq!(st.state, JoinState::Rejected);
    assert_eq!(st.reason.as_deref(), Some("we have enough mirrors in DE"));
    assert!(admin(&url).list().await.unwrap().is_empty());
    assert!(
        admin(&url).approve("m2").await.is_err(),
        "a decided request cannot be approved"
    );
    let key = identity(&cfg);
    let manifest_path = "/api/v1/objects/00";
    assert_eq!(
        object_status(
            &url,
            manifest_path,
            Some(&signed_pull(&key, "m2", manifest_path))
        ),
        403
    );
    let history = admin(&url).mirror_history("m2", 10).await.unwrap();
    assert_eq!(history[0].action, "reject");
    // Asking again is explicit.
    ok(&mirror_cmd(&cfg, &["join", "--no-wait", "--resubmit"]));
    assert_eq!(status(&url).await["pending_joins"], 1);

    // The network's status page (the monitor's) names the pending request, nothing more.
    let mon_cfg = d.join("monitor.toml");
    std::fs::write(
        &mon_cfg,
        format!(
            "name = \"mon\"\nnetwork = \"{NET}\"\nmasters = [\"{url}\"]\n\
             master_keys = [\"{}\"]\nlisten = \"127.0.0.1:0\"\ndatabase = {:?}\n\
             check_interval_secs = 1\n",
            mkey.public(),
            d.join("monitor.sqlite").display().to_string(),
        ),
    )
    .unwrap();
    let monitor = Proc::start_role(vdbd(), "monitor", &mon_cfg, &d.join("monitor.log"));
    let page_url = format!("{}/", monitor.ready().http_url());
    let page = vdb_testkit::wait_for_async(
        "the monitor's page to list the pending join",
        30,
        || async {
            let (code, body) = call("GET", &page_url, &[], None).await;
            (code == 200 && body.contains("id=\"pending-joins\"")).then_some(body)
        },
    )
    .await;
    assert!(
        page.contains("(<code>vdb mirror pending</code>): m2</p>"),
        "{page}"
    );
    assert!(
        !page.contains(CONTACT),
        "no contact on the public page: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_join_requests_is_bounded_and_garbage_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mkey = SecretKey::from_seed([44; 32]);
    let (_master, url) = start_master(&master_config(d, "ma", 0, &mkey, "join_max_pending = 3"));
    let join = |name: &str, key: &SecretKey, at: i64| {
        let mut r = MirrorRecord::new(name, format!("http://{name}.example"));
        r.identity_key = Some(key.public());
        Signed::sign(
            &MirrorRequest::new(NET, name, at, MirrorAction::Join(r)),
            key,
        )
    };
    let anon = Admin::new(&url, None);
    for i in 0..3 {
        let k = SecretKey::generate();
        anon.join(&join(&format!("f{i}"), &k, now())).await.unwrap();
    }
    let k = SecretKey::generate();
    let e = anon.join(&join("f3", &k, now())).await.unwrap_err();
    assert!(e.to_string().contains("too_many_pending"), "{e}");
    // Re-sending one's own request replaces it; the count stays.
    let k0 = SecretKey::generate();
    let e = anon.join(&join("f0", &k0, now())).await.unwrap_err();
    assert!(
        e.to_string().contains("exists"),
        "another key cannot take a pending name: {e}"
    );
    assert_eq!(status(&url).await["pending_joins"], 3);
    // Deciding frees a place.
    admin(&url).reject("f1", "flood").await.unwrap();
    anon.join(&join("f3", &k, now())).await.unwrap();

    // Garbage: too large, not JSON, wrong network, stale, replayed.
    let big = "x".repeat(vdb_proto::MAX_REQUEST_BYTES + 1);
    let post = |body: String| {
        let url = url.clone();
        async move {
            call(
                "POST",
                &format!("{url}/api/v1/join"),
                &[("Content-Type", "application/json")],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    assert_eq!(post(big).await.0, 413);
    assert_eq!(post("{not json".into()).await.0, 400);
    let k5 = SecretKey::generate();
    let mut wrong = MirrorRecord::new("f5", "http://f5.example");
    wrong.identity_key = Some(k5.public());
    let other_net = Signed::sign(
        &MirrorRequest::new("othernet", "f5", now(), MirrorAction::Join(wrong)),
        &k5,
    );
    assert_eq!(post(other_net.to_json()).await.0, 400);
    let (code, body) = post(join("f5", &k5, now() - 7200).to_json()).await;
    assert_eq!((code, body.contains("replay")), (409, true), "{body}");
    // A join that pins a key other than its signer's.
    let k6 = SecretKey::generate();
    let (code, _) = post(
        join("f6", &k6, now())
            .to_json()
            .replace(&k6.public().to_string(), &k5.public().to_string()),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(status(&url).await["pending_joins"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_requests_replicate_between_masters_and_either_decides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ka, kb) = (
        SecretKey::from_seed([45; 32]),
        SecretKey::from_seed([46; 32]),
    );
    let (pa, pb) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let peer = |port: u16, k: &SecretKey| {
        format!(
            "replicate_secs = 1\n\n[[peers]]\nurl = \"http://127.0.0.1:{port}\"\nkey = \"{}\"\ntoken = \"{PULL}\"\n",
            k.public()
        )
    };
    // `[[peers]]` must come after the top-level keys: put it in `extra`, publishers follow.
    let (_a, url_a) = start_master(&master_config(d, "a", pa, &ka, &peer(pb, &kb)));
    let (_b, url_b) = start_master(&master_config(d, "b", pb, &kb, &peer(pa, &ka)));
    let (cfg, _) = mirror_config(
        d,
        "m3",
        &[url_a.clone(), url_b.clone()],
        &[ka.public(), kb.public()],
    );
    // Sent to master A only.
    ok(&mirror_cmd(
        &cfg,
        &["join", "--no-wait", "--master", &url_a],
    ));
    let key = identity(&cfg).public();
    wait_for_async_pending(&url_b).await;
    // Approved on B: A learns it with the registry, and the waiting mirror with it.
    admin(&url_b).approve("m3").await.unwrap();
    let out = ok(&mirror_cmd(
        &cfg,
        &[
            "join",
            "--master",
            &url_a,
            "--poll-secs",
            "1",
            "--wait-secs",
            "30",
        ],
    ));
    assert!(out.contains("approved"), "{out}");
    vdb_testkit::wait_for_async("master A to hold m3's key", 30, || {
        let a = admin(&url_a);
        async move {
            let r = a.show("m3").await.ok()?;
            (r.identity_key == Some(key)).then_some(())
        }
    })
    .await;
    vdb_testkit::wait_for_async("A's history to show B's approval", 30, || {
        let a = admin(&url_a);
        async move {
            let h = a.mirror_history("m3", 10).await.ok()?;
            h.iter()
                .any(|e| e.action == "approve" && e.id.starts_with("b:"))
                .then_some(())
        }
    })
    .await;
}

async fn wait_for_async_pending(url: &str) {
    vdb_testkit::wait_for_async("the join request to replicate to master B", 30, || {
        let url = url.to_owned();
        async move {
            let s = status(&url).await;
            (s["pending_join_names"] == serde_json::json!(["m3"])).then_some(())
        }
    })
    .await;
}
