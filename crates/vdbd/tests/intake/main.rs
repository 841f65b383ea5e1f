//! `vdbd intake` end to end, with the real binaries: the form in headless Chromium (WebDriver),
//! the API, the real `clamscan` against ClamAV's own signed test database, `vdb db build` for the
//! release that adds a detection, `vdb samples …` for the team, and the bounds.

mod harness;

use std::path::Path;
use std::process::Command;

use harness::*;
use serde_json::Value;

/// A scanner database directory with ClamAV's signed `test-6.cvd` (it detects EICAR).
fn clamdb(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("clamdb");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::copy(Path::new(FIXTURES).join("test-6.cvd"), db.join("test.cvd")).unwrap();
    db
}

fn scanner(db: &Path) -> String {
    format!("\n[scanner]\ndatabase = {:?}\n", db.display().to_string())
}

/// The sample's bytes, decrypted from a quarantine ZIP by Python's own ZIP reader.
fn unzip_infected(zip: &Path) -> (String, Vec<u8>) {
    let out = Command::new(tool("python3"))
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nn = z.namelist()\nassert len(n) == 1, n\n\
             sys.stderr.write(n[0])\nsys.stdout.buffer.write(z.read(n[0], pwd=b'infected'))",
        ])
        .arg(zip)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout,
    )
}

fn admin(url: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--intake", url, "--token", ADMIN_TOKEN]);
    let out = vdb(&all);
    assert!(out.status.success(), "vdb {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn eicar_through_the_api_is_already_detected_and_a_resubmission_is_deduplicated() {
    tool("clamscan");
    let dir = tempfile::tempdir().unwrap();
    let db = clamdb(dir.path());
    let (hook, mut hooks) = webhook_sink().await;
    let intake = Intake::start(
        dir.path(),
        &format!("{}\n[notify]\nwebhook_url = {hook:?}\n", scanner(&db)),
    );
    let base = &intake.url;

    // Through the API, as a tool would (vdb samples submit streams the file).
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let out = vdb(&[
        "samples",
        "submit",
        eicar.to_str().unwrap(),
        "--detection",
        "Eicar-Test-Signature",
        "--note",
        "from the EICAR site",
        "--intake",
        base,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let receipt: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = vdb_proto::sha256_hex(EICAR);
    assert_eq!(receipt["sha256"], sha.as_str());
    assert_eq!(receipt["duplicate"], false);
    let id1 = receipt["tracking_id"].as_str().unwrap().to_owned();
    assert_eq!(id1.len(), 32);

    // Triage by the real clamscan: already detected, and as what.
    let st = scanned(base, &id1).await;
    assert_eq!(st["state"], "already_detected", "{st}");
    assert_eq!(st["detected_as"], "Eicar-Test-Signature", "{st}");
    let ev = next(&mut hooks, "webhook").await;
    assert_eq!(ev["event"], "sample", "{ev}");
    assert_eq!(ev["sha256"], sha.as_str());
    assert_eq!(ev["scan"]["outcome"], "found", "{ev}");
    assert_eq!(ev["scan"]["engine"], "clamscan", "{ev}");

    // The same bytes again: a second submitter on the same record, a tracking id of its own.
    let (code, r2) = submit(base, "eicar-again.txt", EICAR.to_vec()).await;
    assert_eq!(code, 200, "{r2}");
    assert_eq!(r2["duplicate"], true);
    let id2 = r2["tracking_id"].as_str().unwrap();
    assert_ne!(id2, id1);
    let (_, st2) = status(base, id2).await;
    assert_eq!(st2["state"], "already_detected", "{st2}");

    // The team's view.
    let rec = admin(base, &["samples", "show", &sha]);
    assert_eq!(rec["submission_count"], 2, "{rec}");
    assert_eq!(rec["submissions"][0]["claimed"], "Eicar-Test-Signature");
    assert_eq!(rec["submissions"][0]["file_name"], "eicar.com");
    assert_eq!(rec["submissions"][1]["file_name"], "eicar-again.txt");
    assert_eq!(rec["scan"]["detail"], "Eicar-Test-Signature");
    let out = vdb(&[
        "samples",
        "list",
        "--state",
        "already-detected",
        "--intake",
        base,
        "--token",
        ADMIN_TOKEN,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // Without the token, nothing.
    let out = vdb(&[
        "samples",
        "list",
        "--intake",
        base,
        "--token",
        "wrong-token-wrong-token",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("bad_token"), "{}", text(&out));

    // `get` writes the quarantined form, and stdout carries no sample.
    let zip = dir.path().join("got.zip");
    let out = vdb(&[
        "samples",
        "get",
        &sha,
        "-o",
        zip.to_str().unwrap(),
        "--intake",
        base,
        "--token",
        ADMIN_TOKEN,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty());
    let bytes = std::fs::read(&zip).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"));
    assert!(
        !bytes.windows(16).any(|w| w == &EICAR[..16]),
        "the sample is not in clear in its ZIP"
    );
    let (entry, clear) = unzip_infected(&zip);
    assert_eq!((entry.as_str(), clear.as_slice()), (sha.as_str(), EICAR));
    // At rest, the same ZIP; nothing else in the data directory holds the sample in clear.
    let at_rest = dir.path().join(format!("data/quarantine/{sha}.zip"));
    assert_eq!(std::fs::read(&at_rest).unwrap(), bytes);
    for e in walk(&dir.path().join("data")) {
        let b = std::fs::read(&e).unwrap();
        assert!(
            !b.windows(16).any(|w| w == &EICAR[..16]),
            "{} holds the sample in clear",
            e.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_form_in_chromium_then_a_release_that_detects_it_then_resolve() {
    let clamscan = tool("clamscan");
    let dir = tempfile::tempdir().unwrap();
    let db = clamdb(dir.path());
    let smtp = vdb_testkit::SmtpSink::start().await;
    let intake = Intake::start(
        dir.path(),
        &format!(
            "{}\n[notify.smtp]\nserver = \"{}\"\nfrom = \"intake@vdbnet.test\"\nto = [\"team@vdbnet.test\"]\n",
            scanner(&db),
            smtp.addr
        ),
    );
    let base = &intake.url;
    // A sample nothing detects (bytes of this test run only).
    let mut sample = b"MZ\x90\x00 vdbnet intake test sample ".to_vec();
    sample.extend(std::process::id().to_le_bytes());
    sample.extend(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    sample.extend((0..4000u32).map(|i| (i * 7 % 251) as u8));
    let file = dir.path().join("invoice.pdf.exe");
    std::fs::write(&file, &sample).unwrap();
    let sha = vdb_proto::sha256_hex(&sample);

    // The form, in a real browser, without JavaScript of ours.
    let browser = Browser::start().await;
    browser.goto(&format!("{base}/")).await;
    browser.type_into("#file", file.to_str().unwrap()).await;
    browser
        .type_into("#detection", "Win.Trojan.Unknown-1")
        .await;
    browser
        .type_into("#note", "came as an e-mail attachment")
        .await;
    browser.type_into("#email", "victim@example.org").await;
    browser.click("#send").await;
    let page = wait_for_async("the answer page", 60, || async {
        let src = browser.source().await;
        (src.contains("tracking-id") || src.contains("id=\"error\"")).then_some(src)
    })
    .await;
    assert!(page.contains("tracking-id"), "the form was refused: {page}");
    let tracking = browser.text("#tracking-id").await;
    assert!(browser.current_url().await.ends_with("/submit"));
    assert_eq!(tracking.len(), 32, "{tracking}");
    let link = browser.attr("#status-link", "href").await;
    assert!(link.ends_with(&format!("/status/{tracking}")), "{link}");

    // Triage: clamscan finds nothing; the status page says received.
    let st = scanned(base, &tracking).await;
    assert_eq!(st["state"], "received", "{st}");
    assert_eq!(st["sha256"], sha.as_str());
    assert!(st["detected_as"].is_null());
    let team = smtp.wait(1, "the team's mail").await.remove(0);
    assert_eq!(team.to, vec!["team@vdbnet.test".to_owned()]);
    assert!(
        team.data.contains(&sha) && team.data.contains("not detected"),
        "{}",
        team.data
    );
    browser.goto(&format!("{base}{link}")).await;
    assert_eq!(browser.attr("#state", "data-state").await, "received");
    let rec = admin(base, &["samples", "show", &sha]);
    assert_eq!(rec["submissions"][0]["file_name"], "invoice.pdf.exe");
    assert_eq!(rec["submissions"][0]["email"], "victim@example.org");
    assert_eq!(rec["scan"]["outcome"], "clean");

    // The team writes a signature and releases it: a .cud built by `vdb db build`, which the
    // real clamscan loads and which detects the sample.
    let src = dir.path().join("release");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("COPYING"), "vdbnet intake test release\n").unwrap();
    std::fs::write(
        src.join("vdbtest.hdb"),
        format!(
            "{}:{}:Vdbnet.Test.Sample-1\n",
            md5_hex(&sample),
            sample.len()
        ),
    )
    .unwrap();
    let cud = db.join("vdbtest.cud");
    let out = vdb(&[
        "db",
        "build",
        src.to_str().unwrap(),
        "-o",
        cud.to_str().unwrap(),
        "--unsigned",
        "--version",
        "7",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let scan = Command::new(&clamscan)
        .arg("--no-summary")
        .arg(format!("--database={}", db.display()))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        // (ClamAV marks signatures from unsigned databases `.UNOFFICIAL`.)
        String::from_utf8_lossy(&scan.stdout).contains("Vdbnet.Test.Sample-1.UNOFFICIAL FOUND"),
        "the release detects the sample: {}",
        text(&scan)
    );

    // Resolve: the submitter's status page shows the version, and they get a mail.
    let rec = admin(
        base,
        &[
            "samples",
            "resolve",
            &sha,
            "--db",
            "vdbtest",
            "--version",
            "7",
            "--detection",
            "Vdbnet.Test.Sample-1",
        ],
    );
    assert_eq!(rec["state"], "signature_published", "{rec}");
    let (_, st) = status(base, &tracking).await;
    assert_eq!(st["state"], "signature_published", "{st}");
    assert_eq!(st["published"]["db"], "vdbtest");
    assert_eq!(st["published"]["version"], 7);
    browser.goto(&format!("{base}{link}")).await;
    assert_eq!(
        browser.attr("#state", "data-state").await,
        "signature_published"
    );
    let shown = browser.text("#state").await;
    assert!(shown.contains("vdbtest version 7"), "{shown}");
    assert!(shown.contains("Vdbnet.Test.Sample-1"), "{shown}");
    // The team's mail about the resolution, and the submitter's answer.
    let mut got_answer = false;
    for m in &smtp.wait(3, "the resolution's two mails").await[1..] {
        let (to, body) = (&m.to, &m.data);
        if *to == vec!["victim@example.org".to_owned()] {
            assert!(body.contains("vdbtest version 7"), "{body}");
            assert!(!body.contains(&tracking), "no tracking id in mail");
            got_answer = true;
        }
    }
    assert!(got_answer, "the submitter was told");
    // A forged tracking id shows nothing.
    browser
        .goto(&format!("{base}/status/{}", "0".repeat(32)))
        .await;
    assert_eq!(
        browser.attr("#error", "data-code").await,
        "unknown_tracking_id"
    );
}

fn md5_hex(b: &[u8]) -> String {
    let out = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..32].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bounds_each_refused_clearly_and_nothing_stored_beyond_them() {
    tool("clamscan");
    let dir = tempfile::tempdir().unwrap();
    let db = clamdb(dir.path());
    const CAP: usize = 256 << 10;
    const PER_HOUR: usize = 12;
    let intake = Intake::start(
        dir.path(),
        &format!(
            "{}\n[limits]\nmax_sample_bytes = {CAP}\nsubmissions_per_hour = {PER_HOUR}\n",
            scanner(&db)
        ),
    );
    let base = &intake.url;
    let mut attempts = 0;
    let check = async |name: &str, bytes: Vec<u8>, want: u16, code: &str| {
        let (got, v) = submit(base, name, bytes).await;
        assert_eq!(
            (got, v["code"].as_str()),
            (want, Some(code)),
            "{name:?}: {v}"
        );
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{v}");
    };
    check("empty.bin", Vec::new(), 400, "empty_file").await;
    check("big.bin", vec![b'A'; CAP + 1], 413, "too_large").await;
    check("../../etc/cron.d/x", b"x".to_vec(), 400, "name_with_path").await;
    check("C:\\evil.exe", b"x".to_vec(), 400, "name_with_path").await;
    // A control character in the part's header is refused by the multipart parser itself.
    check("a\u{1b}[2Jb.exe", b"x".to_vec(), 400, "bad_form").await;
    attempts += 5;

    // Over the cap without a Content-Length: cut while streaming.
    let chunks = (0..(2 * CAP / 16384)).map(|_| Ok::<_, std::io::Error>(vec![b'B'; 16384]));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream(body).file_name("s.bin"),
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/samples"))
        .multipart(form)
        .send()
        .await;
    attempts += 1;
    // The intake answers 413 as soon as the cap is passed; it may close the upload before the
    // client finished sending, which the client may see as a reset instead.
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "too_large");
    }

    // Forged and malformed tracking ids.
    let (code, v) = status(base, &"ab".repeat(16)).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (404, Some("unknown_tracking_id"))
    );
    let (code, v) = status(base, "..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!((code, v["code"].as_str()), (400, Some("bad_tracking_id")));

    // An archive bomb: stored as sent, never unpacked by the intake; clamscan stops at its
    // limits and the sample is marked not fully scanned, not "detected".
    let bomb_path = dir.path().join("bomb.zip");
    let out = Command::new(tool("python3"))
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n  \
             z.writestr('zeros.bin', b'\\0' * (64 << 20))",
        ])
        .arg(&bomb_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let bomb = std::fs::read(&bomb_path).unwrap();
    assert!(bomb.len() < CAP, "{}", bomb.len());
    let (code, v) = submit(base, "bomb.zip", bomb.clone()).await;
    attempts += 1;
    assert_eq!(code, 200, "{v}");
    let st = scanned(base, v["tracking_id"].as_str().unwrap()).await;
    assert_eq!(st["state"], "received", "{st}");
    let rec = admin(base, &["samples", "show", &vdb_proto::sha256_hex(&bomb)]);
    // clamscan skips what is beyond its limits (1.4.6 reports this bomb clean; with other
    // limits it says Heuristics.Limits.Exceeded): never "detected", and the scan ended.
    let outcome = rec["scan"]["outcome"].as_str().unwrap_or_default();
    assert!(matches!(outcome, "clean" | "limit_exceeded"), "{rec}");
    let (_, clear) = unzip_infected(&dir.path().join(format!(
        "data/quarantine/{}.zip",
        vdb_proto::sha256_hex(&bomb)
    )));
    assert_eq!(clear, bomb, "kept as sent");
    for f in walk(&dir.path().join("data")) {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len < 4 * CAP as u64, "{} is {len} bytes", f.display());
    }

    // A flood from one address: accepted up to the hourly bound, then 429 with Retry-After.
    let mut accepted = 1; // the bomb
    loop {
        let n = attempts;
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/samples"))
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(format!("flood {n}").into_bytes()).file_name("f"),
            ))
            .send()
            .await
            .unwrap();
        attempts += 1;
        if r.status().as_u16() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "rate_limited", "{v}");
            break;
        }
        assert_eq!(r.status().as_u16(), 200);
        accepted += 1;
        assert!(attempts <= PER_HOUR, "no limit after {attempts} attempts");
    }
    assert_eq!(attempts, PER_HOUR + 1, "every attempt counts");
    // Nothing beyond the bounds was stored, and no upload left a temporary file.
    let out = vdb(&["samples", "list", "--intake", base, "--token", ADMIN_TOKEN]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        accepted
    );
    let zips = std::fs::read_dir(dir.path().join("data/quarantine"))
        .unwrap()
        .count();
    assert_eq!(zips, accepted);
    let status: Value = reqwest::get(format!("{base}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["staging_files"], 0, "{status}");
    assert_eq!(status["accepted"], accepted, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_config_starts_and_triages() {
    tool("clamscan");
    let doc = include_str!("../../../../docs/deploy.md");
    let block = doc
        .split("```toml\n")
        .find(|b| b.starts_with("# file: /etc/vdbnet/intake.toml"))
        .expect("docs/deploy.md has an intake.toml block")
        .split("```")
        .next()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = clamdb(dir.path());
    // Loopback, temporary directories, the test token; no mail relay or chat to talk to.
    let mut config = String::new();
    let mut skip = false;
    for line in block.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if line.starts_with('[') {
            skip = line.starts_with("[notify");
        }
        let line = match key {
            "listen" => "listen = \"127.0.0.1:0\"".to_owned(),
            "data_dir" => format!(
                "data_dir = {:?}",
                dir.path().join("data").display().to_string()
            ),
            "database" => format!("database = {:?}", db.display().to_string()),
            "admin_token" => format!("admin_token = {ADMIN_TOKEN:?}"),
            _ => line.to_owned(),
        };
        if !skip {
            config.push_str(&line);
            config.push('\n');
        }
    }
    let path = dir.path().join("intake.toml");
    std::fs::write(&path, &config).unwrap();
    let intake = Intake::start_with(dir.path(), &path);
    let (code, r) = submit(&intake.url, "eicar.com", EICAR.to_vec()).await;
    assert_eq!(code, 200, "{r}");
    let st = scanned(&intake.url, r["tracking_id"].as_str().unwrap()).await;
    assert_eq!(st["detected_as"], "Eicar-Test-Signature", "{st}");
}
