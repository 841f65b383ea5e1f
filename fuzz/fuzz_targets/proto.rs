//! vdb-proto's signed envelopes on arbitrary bytes: `Signed::from_json` for each document kind
//! (manifests, release statements, push notices, monitors' verdict reports, registry exports,
//! mirrors' signed requests), a mirror's signed pull header,
//! verification against a fixed trusted key, and on a valid payload the document's own checks.
//! Nothing may panic, and an envelope that parses must re-serialise to one that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb_proto::{
    Manifest, MirrorRequest, PublicKey, PullAuth, PushNotice, RegistryExport, ReleaseStatement,
    ReplayGuard, Signed, VerdictReport,
};

fn trusted() -> PublicKey {
    // Any valid point will do: fuzzed signatures never verify, but the untrusted-key,
    // bad-signature and payload paths all run.
    "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
        .parse()
        .expect("valid key")
}

fuzz_target!(|data: &[u8]| {
    let key = trusted();
    if let Ok(m) = Signed::<Manifest>::from_json(data) {
        let again = Signed::<Manifest>::from_json(m.to_json().as_bytes()).expect("round trip");
        assert_eq!(again, m);
        if let Ok(doc) = m.verify(&[key, m.signer()]) {
            let _ = doc.check(&doc.network, doc.issued_at);
            let _ = doc.freshness(&doc);
        }
    }
    if let Ok(r) = Signed::<ReleaseStatement>::from_json(data)
        && let Ok(doc) = r.verify(&[key])
    {
        let _ = doc.check();
    }
    if let Ok(p) = Signed::<PushNotice>::from_json(data)
        && let Ok(doc) = p.verify(&[key])
    {
        let _ = ReplayGuard::new("n", 300, 16).accept(&doc, doc.issued_at);
    }
    if let Ok(v) = Signed::<VerdictReport>::from_json(data) {
        let again = Signed::<VerdictReport>::from_json(v.to_json().as_bytes()).expect("round trip");
        assert_eq!(again, v);
        let _ = v.verify(&[key]);
    }
    if let Ok(r) = Signed::<RegistryExport>::from_json(data) {
        let again =
            Signed::<RegistryExport>::from_json(r.to_json().as_bytes()).expect("round trip");
        assert_eq!(again, r);
        let _ = r.verify(&[key]);
    }
    if let Ok(r) = Signed::<MirrorRequest>::from_json(data) {
        let again = Signed::<MirrorRequest>::from_json(r.to_json().as_bytes()).expect("round trip");
        assert_eq!(again, r);
        if let Ok(doc) = r.verify(&[key, r.signer()]) {
            let _ = doc.check(&r.signer(), &doc.network, doc.issued_at, 300);
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(a) = PullAuth::parse(text)
    {
        let _ = a.verify(&key, "n", "GET", "/", a.at, 120);
    }
    // The payload parsers on their own, as a verified payload would reach them.
    if let Ok(doc) = serde_json::from_slice::<Manifest>(data) {
        let _ = doc.check("n", 0);
        let _ = doc.freshness(&doc);
        let _ = doc.file("daily.cvd");
        for f in &doc.files {
            let _ = doc.inline_content(f);
        }
    }
    if let Ok(doc) = serde_json::from_slice::<ReleaseStatement>(data) {
        let _ = doc.check();
    }
    if let Ok(doc) = serde_json::from_slice::<MirrorRequest>(data) {
        let _ = doc.check(&key, &doc.network, doc.issued_at, 300);
    }
});
