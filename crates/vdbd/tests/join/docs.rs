//! `docs/join.md` is executable: its `# file:` mirror configuration and its `sh` blocks, run in
//! the order of their `# step N` lines with the real `vdbd` and `vdb`, against a real master on
//! loopback (the example's host names, paths and key mapped to the test's).

use std::process::Command;

use vdb_proto::SecretKey;
use vdb_testkit::{Proc, exe_beside, free_port, output_text, wait_for};

use crate::{ADMIN, served};

const DOC: &str = include_str!("../../../../docs/join.md");

/// The example master's key in the document.
const EXAMPLE_KEY: &str =
    "ed25519:4f8ee63184d69d429e1d5f03f2bc5a7fd790b1b12a6208397ef17c266efc79e8";

/// The fenced blocks of `lang`, each as its lines.
fn blocks(lang: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if line.trim() != format!("```{lang}") {
            continue;
        }
        out.push(
            lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .map(str::to_owned)
                .collect(),
        );
    }
    out
}

/// The `sh` blocks as (step, commands), continuation lines joined, sorted by step.
fn steps() -> Vec<(u32, Vec<String>)> {
    let mut out: Vec<(u32, Vec<String>)> = blocks("sh")
        .into_iter()
        .map(|b| {
            let first = b.first().cloned().unwrap_or_default();
            let step: u32 = first
                .strip_prefix("# step ")
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| {
                    panic!("an sh block of docs/join.md without `# step N`: {first:?}")
                });
            let mut cmds = Vec::new();
            let mut cur = String::new();
            for l in b.iter().skip(1) {
                let l = l.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                match l.strip_suffix('\\') {
                    Some(part) => cur.push_str(part),
                    None => {
                        cur.push_str(l);
                        cmds.push(std::mem::take(&mut cur));
                    }
                }
            }
            (step, cmds)
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out
}

fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "docs/join.md no longer contains {from:?}"
    );
    text.replace(from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_walk_of_docs_join_md_runs_as_written() {
    let vdbd = env!("CARGO_BIN_EXE_vdbd");
    let vdb = exe_beside(vdbd, "vdb");
    let bin_dir = vdb.parent().unwrap().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let (etc, var) = (tmp.path().join("etc"), tmp.path().join("var"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&var).unwrap();

    // The network: one master of network "example".
    let mkey = SecretKey::generate();
    let mcfg = crate::master_config(tmp.path(), "master-a", 0, &mkey, "");
    let text = std::fs::read_to_string(&mcfg)
        .unwrap()
        .replace("network = \"testnet\"", "network = \"example\"");
    std::fs::write(&mcfg, text).unwrap();
    let (_master, url) = crate::start_master(&mcfg);
    vdb_testkit::publish::publish(
        std::slice::from_ref(&url),
        &vdb_testkit::keys::publisher_key(),
        &vdb_testkit::publish::test_release(1),
        20,
    )
    .await;

    // The documented mirror configuration, on loopback.
    let toml = blocks("toml");
    assert_eq!(toml.len(), 1, "docs/join.md has one configuration");
    assert_eq!(toml[0][0], "# file: /etc/vdbnet/mirror.toml");
    let port = free_port("127.0.0.1");
    let mirror_url = format!("http://127.0.0.1:{port}");
    let map = |t: &str| -> String {
        t.replace("/etc/vdbnet/", &format!("{}/", etc.display()))
            .replace("/var/lib/vdbnet/", &format!("{}/", var.display()))
            .replace("https://master-a.example.net", &url)
    };
    let cfg_text = map(&toml[0].join("\n"));
    let cfg_text = swap(&cfg_text, EXAMPLE_KEY, &mkey.public().to_string());
    let cfg_text = swap(&cfg_text, "0.0.0.0:80", &format!("127.0.0.1:{port}"));
    let cfg_text = swap(&cfg_text, "https://mirror1.example.org", &mirror_url);
    let cfg = etc.join("mirror.toml");
    std::fs::write(&cfg, cfg_text).unwrap();

    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |cmd: &str| -> String {
        let cmd = map(cmd);
        let out = Command::new("sh")
            .args(["-c", &cmd])
            .env("PATH", &path)
            .env("VDB_ADMIN_TOKEN", ADMIN)
            .env("VDB_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let walk = steps();
    assert_eq!(
        walk.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    let mut mirror: Option<Proc> = None;
    let key_file = var.join("mirror/identity.key");
    for (n, cmds) in walk {
        let out: String = cmds.iter().map(|c| run(c)).collect();
        match n {
            1 => assert!(out.contains("pending"), "{out}"),
            2 => {
                let key = SecretKey::from_text(&std::fs::read_to_string(&key_file).unwrap())
                    .unwrap()
                    .public();
                assert!(
                    out.contains(&key.to_string()),
                    "the pending request shows the key: {out}"
                );
            }
            4 => {
                assert!(out.contains("approved"), "{out}");
                // The operator starts the mirror: it pulls with its key (no pull token).
                let p = Proc::start_role(vdbd, "mirror", &cfg, &cfg.with_extension("log"));
                wait_for("the mirror of docs/join.md to serve v1", 30, || {
                    (served(port) == 1).then_some(())
                });
                mirror = Some(p);
            }
            9 => {
                for a in [
                    "leave",
                    "rotate_key",
                    "update",
                    "maintenance",
                    "approve",
                    "join_request",
                ] {
                    assert!(out.contains(&format!("\"action\":\"{a}\"")), "{a}: {out}");
                }
            }
            _ => {}
        }
    }
    assert!(mirror.is_some(), "step 4 started the mirror");
}
