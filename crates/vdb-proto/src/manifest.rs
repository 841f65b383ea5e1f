//! The master's signed manifest: what every mirror must serve.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::FileRef;
use crate::signed::{DocKind, Document};

/// Where masters and mirrors serve the signed manifest (JSON envelope).
pub const MANIFEST_PATH: &str = "/.well-known/vdbnet/manifest.json";

/// Largest file whose content a master carries in its manifest ([`Manifest::inline`]).
pub const INLINE_MAX: u64 = 1024;
/// Most content bytes one manifest carries in all (every mirror fetches the manifest whole).
pub const INLINE_TOTAL: u64 = 64 * 1024;

/// The current state of one database in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseState {
    /// Current version.
    pub version: u32,
    /// Build time of that version (Unix seconds).
    pub built_at: i64,
    /// The release id (SHA-256 of the publisher's signed statement) that brought it.
    pub release: String,
}

/// The fields of ClamAV's `current.cvd` TXT record that are not database versions, configured
/// once for the network (on the masters) and signed into every manifest, so that the `dns.txt`
/// every mirror serves and the directory's TXT record are the same bytes for the same serial
/// ([`Manifest::dns_txt`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRecord {
    /// Field 0: the newest ClamAV release (`1.4.6`); older clients may warn that they are
    /// outdated.
    pub clamav_version: String,
    /// Field 4: whether clients older than `clamav_version` warn ("OUTDATED").
    pub version_warning: bool,
    /// Field 5: the recommended functionality level.
    pub flevel: u32,
}

impl Default for VersionRecord {
    fn default() -> Self {
        Self {
            clamav_version: "1.4.6".to_owned(),
            version_warning: true,
            flevel: 216,
        }
    }
}

impl VersionRecord {
    /// Checks the values: a version without `:`, ASCII, at most 32 bytes.
    pub fn check(&self) -> Result<(), String> {
        let v = &self.clamav_version;
        if v.is_empty()
            || v.len() > 32
            || !v
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':' && b != b'"' && b != b'\\')
        {
            return Err(format!("a version like 1.4.6 is needed, got {v:?}"));
        }
        Ok(())
    }

    /// The `current.cvd` record with these fields, `versions` (database → version; missing
    /// ones are 0) and the record time `time`.
    pub fn current(
        &self,
        versions: &BTreeMap<String, u32>,
        time: i64,
    ) -> vdb_format::dnstxt::CurrentRecord {
        let v = |db: &str| versions.get(db).copied().unwrap_or(0);
        vdb_format::dnstxt::CurrentRecord {
            clamav_version: self.clamav_version.clone(),
            main: v("main"),
            daily: v("daily"),
            time,
            version_warning: self.version_warning,
            flevel: self.flevel,
            safebrowsing: v("safebrowsing"),
            bytecode: v("bytecode"),
        }
    }
}

/// `{network, serial, issued_at, expires_at, databases, files}`, signed by a master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The network's name; a manifest for another network is refused.
    pub network: String,
    /// Monotonic serial: bumped on every change of `databases` or `files`.
    pub serial: u64,
    /// The master that signed it (its configured name).
    pub master: String,
    /// When it was signed (Unix seconds).
    pub issued_at: i64,
    /// After this (Unix seconds) nobody may take it: a mirror frozen on old data is detectable.
    pub expires_at: i64,
    /// Current version of each database.
    pub databases: BTreeMap<String, DatabaseState>,
    /// Every file a mirror must serve, sorted by name.
    pub files: Vec<FileRef>,
    /// The version record's other fields (absent in manifests of masters older than this
    /// field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_record: Option<VersionRecord>,
    /// The content of each listed file of at most [`INLINE_MAX`] bytes, base64 (standard
    /// alphabet, padded), by SHA-256: a mirror takes these from the manifest instead of
    /// fetching each as an object, so a release costs it a request, a file and an fsync less
    /// per small file (`timestamp`, `dns.txt`, the checksum lists). Absent in manifests of
    /// masters older than the field; mirrors older than it ignore it and fetch the objects,
    /// which masters still serve.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inline: BTreeMap<String, String>,
}

impl Document for Manifest {
    const KIND: DocKind = DocKind::Manifest;
}

/// How a candidate manifest relates to the one held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A higher serial with no database going down: take it.
    Newer,
    /// The same serial and content, signed later (a heartbeat re-signing): take it; no file
    /// changes.
    Refreshed,
    /// The same document, or the same content signed earlier: nothing to do.
    Same,
}

/// Why a manifest is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Signed for another network.
    #[error("manifest is for network {got:?}, this is {want:?}")]
    WrongNetwork {
        /// The manifest's network.
        got: String,
        /// Ours.
        want: String,
    },
    /// `expires_at` has passed.
    #[error(
        "manifest serial {serial} expired at {expires_at} (now {now}): the master has not re-signed it"
    )]
    Expired {
        /// Its serial.
        serial: u64,
        /// Its expiry.
        expires_at: i64,
        /// The time it was checked.
        now: i64,
    },
    /// Lower serial than held: a rollback or a replay.
    #[error("manifest serial {got} is older than the held serial {held} (rollback refused)")]
    OlderSerial {
        /// Offered.
        got: u64,
        /// Held.
        held: u64,
    },
    /// A database would go down in version.
    #[error(
        "manifest serial {serial} moves {db} from version {held} down to {got} (rollback refused)"
    )]
    Downgrade {
        /// The candidate's serial.
        serial: u64,
        /// Which database.
        db: String,
        /// Held version.
        held: u32,
        /// Offered version.
        got: u32,
    },
    /// Same serial, different content: two masters disagree, or a key is misused.
    #[error(
        "manifest serial {0} differs from the held manifest with the same serial (equivocation)"
    )]
    Equivocation(u64),
    /// Internal inconsistency: a file listed twice, an unsafe name, a bad hash.
    #[error("malformed manifest: {0}")]
    Malformed(String),
}

impl Manifest {
    /// Each database's version.
    pub fn versions(&self) -> BTreeMap<String, u32> {
        self.databases
            .iter()
            .map(|(db, d)| (db.clone(), d.version))
            .collect()
    }

    /// The `current.cvd` TXT record of this manifest: its [`VersionRecord`], its database
    /// versions, and its signing time as the record time. The masters write it (plus a
    /// newline) as `dns.txt`; the directory answers it. `None` without a version record.
    pub fn dns_txt(&self) -> Option<vdb_format::dnstxt::CurrentRecord> {
        Some(
            self.version_record
                .as_ref()?
                .current(&self.versions(), self.issued_at),
        )
    }

    /// Carries `data`, the content of listed file `f`, in the manifest when it is at most
    /// [`INLINE_MAX`] bytes and the manifest's [`INLINE_TOTAL`] allows (a master calls this
    /// while building a manifest, smallest files first).
    pub fn carry(&mut self, f: &FileRef, data: &[u8]) {
        use base64::Engine as _;
        let fits = self.carried_bytes() + f.size <= INLINE_TOTAL;
        if f.size <= INLINE_MAX && data.len() as u64 == f.size && fits {
            let text = base64::engine::general_purpose::STANDARD.encode(data);
            self.inline.insert(f.sha256.clone(), text);
        }
    }

    /// Content bytes carried in all (by the listed sizes).
    fn carried_bytes(&self) -> u64 {
        (self.files.iter())
            .filter(|f| self.carries(f))
            .map(|f| f.size)
            .sum()
    }

    /// Whether the manifest carries the content of `f` (valid once [`Manifest::check`] passed).
    pub fn carries(&self, f: &FileRef) -> bool {
        self.inline.contains_key(&f.sha256)
    }

    /// The listed files the manifest does not carry: those a holder fetches and keeps as files.
    pub fn object_files(&self) -> impl Iterator<Item = &FileRef> {
        self.files.iter().filter(|f| !self.carries(f))
    }

    /// The content of `f` carried in the manifest: `None` unless it is there, decodes, and has
    /// `f`'s size (at most [`INLINE_MAX`]) and SHA-256.
    pub fn inline_content(&self, f: &FileRef) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let text = self.inline.get(&f.sha256)?;
        if f.size > INLINE_MAX || text.len() as u64 > INLINE_MAX.div_ceil(3) * 4 {
            return None;
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        (data.len() as u64 == f.size && crate::sha256_hex(&data) == f.sha256).then_some(data)
    }

    /// The file entry called `name`.
    pub fn file(&self, name: &str) -> Option<&FileRef> {
        self.files
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Checks the document on its own: network, expiry, sorted unique safe names, hashes.
    pub fn check(&self, network: &str, now: i64) -> Result<(), ManifestError> {
        if self.network != network {
            return Err(ManifestError::WrongNetwork {
                got: self.network.clone(),
                want: network.to_owned(),
            });
        }
        if now >= self.expires_at {
            return Err(ManifestError::Expired {
                serial: self.serial,
                expires_at: self.expires_at,
                now,
            });
        }
        for w in self.files.windows(2) {
            if w[0].name >= w[1].name {
                return Err(ManifestError::Malformed(format!(
                    "files not sorted or {:?} listed twice",
                    w[1].name
                )));
            }
        }
        for f in &self.files {
            f.check()
                .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        }
        // Carried content is that of listed files, each of its file's size and hash (one pass
        // over the files, one lookup each).
        let mut listed = std::collections::BTreeSet::new();
        for f in self.files.iter().filter(|f| self.carries(f)) {
            if self.inline_content(f).is_none() {
                return Err(ManifestError::Malformed(format!(
                    "inline content of {} is not {} bytes (at most {INLINE_MAX}) with its hash",
                    f.name, f.size
                )));
            }
            listed.insert(f.sha256.as_str());
        }
        if let Some(sha) = self.inline.keys().find(|k| !listed.contains(k.as_str())) {
            return Err(ManifestError::Malformed(format!(
                "inline content {sha} is not that of a listed file"
            )));
        }
        if self.carried_bytes() > INLINE_TOTAL {
            return Err(ManifestError::Malformed(format!(
                "more than {INLINE_TOTAL} bytes of inline content"
            )));
        }
        for db in self.databases.keys() {
            if !crate::is_safe_db_name(db) {
                return Err(ManifestError::Malformed(format!("database name {db:?}")));
            }
        }
        Ok(())
    }

    /// Refuses a candidate (`self`) that brings a database below `floor`: the highest version
    /// of each database ever held, kept by the holder across manifests. [`Manifest::freshness`]
    /// compares with the held manifest only, so a manifest that drops a database and a later
    /// one that brings it back lower would pass it; the floor closes that.
    pub fn check_floor(&self, floor: &BTreeMap<String, u32>) -> Result<(), ManifestError> {
        for (db, c) in &self.databases {
            if let Some(&held) = floor.get(db)
                && c.version < held
            {
                return Err(ManifestError::Downgrade {
                    serial: self.serial,
                    db: db.clone(),
                    held,
                    got: c.version,
                });
            }
        }
        Ok(())
    }

    /// Raises `floor` to this manifest's versions (see [`Manifest::check_floor`]).
    pub fn raise_floor(&self, floor: &mut BTreeMap<String, u32>) {
        for (db, st) in &self.databases {
            let v = floor.entry(db.clone()).or_insert(st.version);
            *v = (*v).max(st.version);
        }
    }

    /// Compares a candidate (`self`) with the held manifest: the anti-rollback rule of
    /// DESIGN.md §4.2. Call [`Manifest::check`] first.
    pub fn freshness(&self, held: &Self) -> Result<Freshness, ManifestError> {
        for (db, h) in &held.databases {
            if let Some(c) = self.databases.get(db)
                && c.version < h.version
            {
                return Err(ManifestError::Downgrade {
                    serial: self.serial,
                    db: db.clone(),
                    held: h.version,
                    got: c.version,
                });
            }
        }
        match self.serial.cmp(&held.serial) {
            Ordering::Less => Err(ManifestError::OlderSerial {
                got: self.serial,
                held: held.serial,
            }),
            Ordering::Greater => Ok(Freshness::Newer),
            Ordering::Equal => {
                if self.databases != held.databases
                    || self.files != held.files
                    || self.version_record != held.version_record
                {
                    Err(ManifestError::Equivocation(self.serial))
                } else if self.issued_at > held.issued_at {
                    Ok(Freshness::Refreshed)
                } else {
                    Ok(Freshness::Same)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(serial: u64, daily: u32) -> Manifest {
        Manifest {
            network: "n".into(),
            serial,
            master: "a".into(),
            issued_at: 10,
            expires_at: 100,
            databases: [(
                "daily".to_owned(),
                DatabaseState {
                    version: daily,
                    built_at: 1,
                    release: "r".into(),
                },
            )]
            .into(),
            files: vec![
                FileRef {
                    name: "daily.cvd".into(),
                    size: 1,
                    sha256: "a".repeat(64),
                    segments: None,
                },
                FileRef {
                    name: "timestamp".into(),
                    size: 1,
                    sha256: "b".repeat(64),
                    segments: None,
                },
            ],
            version_record: None,
            inline: Default::default(),
        }
    }

    /// A manifest listing `files` (name, content), sorted.
    fn with_files(files: &[(&str, &[u8])]) -> Manifest {
        let mut man = m(1, 1);
        man.files = files
            .iter()
            .map(|(name, data)| FileRef {
                name: (*name).to_owned(),
                size: data.len() as u64,
                sha256: crate::sha256_hex(data),
                segments: None,
            })
            .collect();
        man.files.sort();
        man
    }

    #[test]
    fn small_files_are_carried_and_anything_else_in_the_carried_map_is_refused() {
        let big = vec![7u8; INLINE_MAX as usize + 1];
        let edge = vec![9u8; INLINE_MAX as usize];
        let files: [(&str, &[u8]); 4] = [
            ("daily.cvd", &big),
            ("edge", &edge),
            ("empty", b""),
            ("timestamp", b"1700000000\n"),
        ];
        let mut man = with_files(&files);
        for (f, (_, data)) in man.files.clone().iter().zip(files) {
            man.carry(f, data);
        }
        // Carried: the small ones (up to INLINE_MAX bytes, empty included), not the large one;
        // a mismatching size is not carried.
        let carried: Vec<&str> = (man.files.iter())
            .filter(|f| man.carries(f))
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(carried, ["edge", "empty", "timestamp"]);
        man.carry(&man.files[3].clone(), b"other length");
        assert_eq!(man.inline_content(&man.files[3]).unwrap(), b"1700000000\n");
        assert_eq!(man.check("n", 50), Ok(()));
        // The document survives its JSON round trip (what a mirror verifies and loads).
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&man).unwrap()).unwrap();
        assert_eq!(back, man);
        assert_eq!(back.inline_content(&back.files[1]).unwrap(), edge);

        // Refused by `check`, and never handed out as content: other bytes under a hash, bytes
        // of no listed file, a large file, text that is not base64.
        let ts = man.files[3].clone();
        let tampered = |text: &str, sha: &str| {
            let mut t = man.clone();
            t.inline.insert(sha.to_owned(), text.to_owned());
            t
        };
        let other = tampered("MTcwMDAwMDAwMQo=", &ts.sha256); // "1700000001\n", same length
        assert!(other.inline_content(&ts).is_none());
        let unlisted = tampered("eA==", &crate::sha256_hex(b"x"));
        use base64::Engine as _;
        let big_text = base64::engine::general_purpose::STANDARD.encode(&big);
        let large = tampered(&big_text, &man.files[0].sha256);
        assert!(large.inline_content(&man.files[0]).is_none());
        let garbage = tampered("not base64!", &ts.sha256);
        // The budget: files past INLINE_TOTAL in all are not carried, and a manifest carrying
        // more is refused.
        let many: Vec<(String, Vec<u8>)> = (0..INLINE_TOTAL / INLINE_MAX + 1)
            .map(|i| (format!("f{i:03}"), vec![i as u8; INLINE_MAX as usize]))
            .collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
        let mut full = with_files(&refs);
        for (f, (_, data)) in full.files.clone().iter().zip(&refs) {
            full.carry(f, data);
        }
        assert_eq!(full.inline.len() as u64, INLINE_TOTAL / INLINE_MAX);
        assert_eq!(full.check("n", 50), Ok(()));
        let last = full.files.last().unwrap().clone();
        let over = {
            let mut t = full.clone();
            let text = base64::engine::general_purpose::STANDARD.encode(&many.last().unwrap().1);
            t.inline.insert(last.sha256.clone(), text);
            t
        };
        assert!(over.inline_content(&last).is_some());
        assert!(garbage.inline_content(&ts).is_none());
        // A second listed file with the carried hash but another size.
        let twin = {
            let mut t = man.clone();
            let mut f = ts.clone();
            f.name = "timestamq".into();
            f.size += 1;
            t.files.insert(4, f);
            t
        };
        assert_eq!(man.check("n", 50), Ok(()));
        for (what, t) in [
            ("a twin of another size", twin),
            ("other bytes", other),
            ("unlisted", unlisted),
            ("large", large),
            ("garbage", garbage),
            ("over the budget", over),
        ] {
            assert!(
                matches!(t.check("n", 50), Err(ManifestError::Malformed(_))),
                "{what}: {:?}",
                t.check("n", 50)
            );
        }
    }

    #[test]
    fn a_database_dropped_and_brought_back_lower_is_a_rollback() {
        let mut dropped = m(3, 1);
        dropped.databases.clear();
        // The held manifest alone lets it through: serial 3 has no daily to compare.
        let lower = m(4, 1);
        assert_eq!(lower.freshness(&dropped), Ok(Freshness::Newer));
        // The floor does not.
        let mut floor = BTreeMap::new();
        m(2, 2).raise_floor(&mut floor);
        dropped.raise_floor(&mut floor);
        assert_eq!(floor.get("daily"), Some(&2));
        assert!(matches!(
            lower.check_floor(&floor),
            Err(ManifestError::Downgrade {
                held: 2,
                got: 1,
                ..
            })
        ));
        assert_eq!(m(5, 2).check_floor(&floor), Ok(()));
    }

    #[test]
    fn rules() {
        assert_eq!(m(1, 1).check("n", 50), Ok(()));
        assert!(matches!(
            m(1, 1).check("x", 50),
            Err(ManifestError::WrongNetwork { .. })
        ));
        assert!(matches!(
            m(1, 1).check("n", 100),
            Err(ManifestError::Expired { .. })
        ));
        assert_eq!(m(2, 2).freshness(&m(1, 1)), Ok(Freshness::Newer));
        assert!(matches!(
            m(1, 2).freshness(&m(2, 2)),
            Err(ManifestError::OlderSerial { .. })
        ));
        assert!(matches!(
            m(3, 1).freshness(&m(2, 2)),
            Err(ManifestError::Downgrade { .. })
        ));
        assert!(matches!(
            m(2, 3).freshness(&m(2, 2)),
            Err(ManifestError::Equivocation(2))
        ));
        assert_eq!(m(2, 2).freshness(&m(2, 2)), Ok(Freshness::Same));
        let mut later = m(2, 2);
        later.issued_at = 20;
        assert_eq!(later.freshness(&m(2, 2)), Ok(Freshness::Refreshed));
        let mut unsorted = m(1, 1);
        unsorted.files.reverse();
        assert!(matches!(
            unsorted.check("n", 0),
            Err(ManifestError::Malformed(_))
        ));
        assert!(m(1, 1).file("timestamp").is_some());
        assert!(m(1, 1).file("main.cvd").is_none());
        // Another version record with the same serial is an equivocation too.
        let mut other = m(2, 2);
        other.version_record = Some(VersionRecord::default());
        assert!(matches!(
            other.freshness(&m(2, 2)),
            Err(ManifestError::Equivocation(2))
        ));
    }

    #[test]
    fn dns_txt_is_the_version_record_with_the_signing_time() {
        let mut man = m(3, 27004);
        assert_eq!(man.dns_txt(), None);
        man.version_record = Some(VersionRecord {
            clamav_version: "1.4.3".into(),
            version_warning: false,
            flevel: 212,
        });
        assert_eq!(
            man.dns_txt().unwrap().to_string(),
            "1.4.3:0:27004:10:0:212:0:0"
        );
        // A manifest without the field (an older master) still parses; the field round-trips.
        let json = serde_json::to_string(&m(1, 1)).unwrap();
        assert!(!json.contains("version_record"));
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&man).unwrap()).unwrap();
        assert_eq!(back, man);
        assert!(VersionRecord::default().check().is_ok());
        for bad in ["", "1:2", "1.4 6", &"9".repeat(33)] {
            let r = VersionRecord {
                clamav_version: bad.to_owned(),
                ..VersionRecord::default()
            };
            assert!(r.check().is_err(), "{bad:?}");
        }
    }
}
