//! Delta transfer of large containers: a mirror that holds release N of `daily.cvd` rebuilds
//! release N+1 from its own copy plus the cdiffs (which it downloads and serves anyway) and the
//! segment map the master published for the new file (its hash is in the signed manifest),
//! and fetches with `Range` only what it cannot re-create — normally the 512-byte header that
//! holds the signature. The rebuilt file is checked against the manifest's size and SHA-256
//! before it is renamed into the object store, exactly as a whole download is; any failure
//! falls back to the whole download (see `vdb_format::segment`).

use std::fs::OpenOptions;
use std::time::Instant;

use vdb_fetch::Expect;
use vdb_format::segment::{self, DeltaInputs, Expected, Missing, Rebuilt, SegmentMap};
use vdb_format::{HEADER_LEN, Limits};
use vdb_proto::{FileRef, Manifest, paths};

use super::Syncer;
use crate::store::{Snapshot, map_file};

/// Most cdiffs a rebuild applies (a mirror further behind downloads the file whole).
const MAX_CHAIN: u32 = 16;
/// Largest segment map fetched.
const MAX_MAP: u64 = segment::MAX_MAP_JSON as u64;

/// What a delta transfer did.
struct Done {
    fetched: u64,
    rebuilt: Rebuilt,
    rebuild_ms: u64,
}

impl Syncer {
    /// Tries to put `f` into the object store by delta transfer from the held release. True
    /// when it is there (size and SHA-256 checked); false (and why, logged) when the caller must
    /// download it whole.
    pub(crate) async fn try_delta(
        &self,
        f: &FileRef,
        manifest: &Manifest,
        held: Option<&Snapshot>,
        source: usize,
    ) -> bool {
        let (Some(_), Some(held), true) = (&f.segments, held, self.delta) else {
            return false;
        };
        let started = Instant::now();
        match self.delta(f, manifest, held, source).await {
            Ok(done) => {
                let reused = f.size.saturating_sub(done.fetched);
                self.metrics.delta_reused_bytes.inc_by(reused);
                tracing::info!(
                    file = %f.name,
                    fetched = done.fetched,
                    reused,
                    copied = done.rebuilt.copied,
                    recompressed = done.rebuilt.recompressed,
                    rebuild_ms = done.rebuild_ms,
                    ms = started.elapsed().as_millis() as u64,
                    "object rebuilt by delta transfer"
                );
                true
            }
            Err(why) => {
                let _ = tokio::fs::remove_file(self.store.tmp_file(&format!("{}.delta", f.sha256)))
                    .await;
                tracing::warn!(file = %f.name, why = %why, "no delta transfer; downloading the whole file");
                false
            }
        }
    }

    async fn delta(
        &self,
        f: &FileRef,
        manifest: &Manifest,
        held: &Snapshot,
        source: usize,
    ) -> Result<Done, String> {
        let old = held
            .manifest
            .files
            .iter()
            .find(|o| o.name == f.name)
            .ok_or("the held release has no such file")?;
        let old_path = self.store.object(&old.sha256);
        let db = f.name.split('.').next().unwrap_or_default();
        let version = |m: &Manifest| m.databases.get(db).map(|d| d.version);
        let (Some(from), Some(to)) = (version(&held.manifest), version(manifest)) else {
            return Err(format!("no version of {db} in the manifests"));
        };
        if to <= from || to - from > MAX_CHAIN {
            return Err(format!("versions {from} -> {to}: no short cdiff chain"));
        }
        // The cdiffs, in order: normal objects of the new manifest (downloaded if missing).
        let mut cdiffs = Vec::new();
        for v in from + 1..=to {
            let name = format!("{db}-{v}.cdiff");
            let c = manifest
                .files
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| format!("{name} is not in the manifest"))?;
            if let Some(bytes) = manifest.inline_content(c) {
                cdiffs.push(bytes);
                continue;
            }
            self.ensure(c, source).await.map_err(|e| e.to_string())?;
            let bytes = tokio::fs::read(self.store.object(&c.sha256))
                .await
                .map_err(|e| format!("reading {name}: {e}"))?;
            cdiffs.push(bytes);
        }
        let new_map = self.load_map(f, source).await?;
        // The old file's map lets unchanged segments be copied instead of compressed again;
        // without it (a master restarted since) they are re-compressed.
        let old_map = match old.segments {
            Some(_) => self.load_map(old, source).await.ok(),
            None => None,
        };
        if new_map.size != f.size {
            return Err("the map does not describe the file".into());
        }
        let tmp = self.store.tmp_file(&format!("{}.delta", f.sha256));
        let db2 = db.to_owned();
        let tmp2 = tmp.clone();
        let spool_dir = self.store.tmp();
        let map2 = new_map.clone();
        let t0 = Instant::now();
        let (rebuilt, file) = tokio::task::spawn_blocking(move || {
            let mut old = std::fs::File::open(&old_path).map_err(|e| e.to_string())?;
            let mut out = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp2)
                .map_err(|e| e.to_string())?;
            out.set_len(map2.size).map_err(|e| e.to_string())?;
            let refs: Vec<&[u8]> = cdiffs.iter().map(Vec::as_slice).collect();
            let inputs = DeltaInputs {
                db_name: &db2,
                cdiffs: &refs,
                old_map: old_map.as_ref(),
                new_map: &map2,
                keys: None,
                limits: Limits::default(),
                spool_dir: Some(&spool_dir),
            };
            let rebuilt =
                segment::rebuild(&mut old, &inputs, &mut out).map_err(|e| e.to_string())?;
            Ok::<_, String>((rebuilt, out))
        })
        .await
        .map_err(|e| e.to_string())??;
        let rebuild_ms = t0.elapsed().as_millis() as u64;
        let missing = rebuilt.missing_bytes();
        if missing > f.size / 2 {
            return Err(format!(
                "only {} of {} bytes could be re-created",
                f.size - missing,
                f.size
            ));
        }
        let mut fetched = Vec::with_capacity(rebuilt.missing.len());
        let mut total = 0;
        for m in &rebuilt.missing {
            let bytes = self.fetch_range(f, *m, source).await?;
            total += bytes.len() as u64;
            fetched.push((*m, bytes));
        }
        let dst = self.store.object(&f.sha256);
        let size = f.size;
        let sha = f.sha256.clone();
        let rebuilt2 = rebuilt.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let expected = Expected {
                size,
                sha256: &sha,
                verify: None,
            };
            segment::assemble(&mut file, &new_map, &rebuilt2, &fetched, &expected)
                .map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            drop(file);
            // Named durably with the sync's other objects, before the switch.
            std::fs::rename(&tmp, &dst).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(Done {
            fetched: total,
            rebuilt,
            rebuild_ms,
        })
    }

    /// Reads and parses the segment map of `f` from the object store, downloading it first
    /// when it is missing (size and hash checked as for every object).
    async fn load_map(&self, f: &FileRef, source: usize) -> Result<SegmentMap, String> {
        let map = map_file(f).ok_or("no segment map")?;
        if map.size > MAX_MAP {
            return Err(format!("a {}-byte segment map is too large", map.size));
        }
        self.ensure(&map, source).await.map_err(|e| e.to_string())?;
        let bytes = tokio::fs::read(self.store.object(&map.sha256))
            .await
            .map_err(|e| format!("reading {}: {e}", map.name))?;
        if bytes.len() as u64 != map.size || vdb_proto::sha256_hex(&bytes) != map.sha256 {
            return Err(format!("{} does not match its hash", map.name));
        }
        SegmentMap::from_json(&bytes).map_err(|e| e.to_string())
    }

    /// Fetches one byte range of the new file with `Range` (a `206` of exactly that length).
    async fn fetch_range(&self, f: &FileRef, m: Missing, source: usize) -> Result<Vec<u8>, String> {
        if m.len == 0 || m.len > f.size / 2 + HEADER_LEN as u64 {
            return Err(format!("range of {} bytes", m.len));
        }
        let mut why = String::new();
        for src in self.object_sources(source) {
            let base = src.base().trim_end_matches('/');
            let url = format!("{base}{}/{}", paths::OBJECTS, f.sha256);
            let resp = match self
                .get_from(src, &url)
                .range(m.offset, Some(m.offset + m.len - 1))
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    why = format!("range from {base}: {e}");
                    continue;
                }
            };
            if resp.status() != http::StatusCode::PARTIAL_CONTENT {
                why = format!("range from {base}: status {}", resp.status());
                continue;
            }
            match resp.bytes(&Expect::at_most(m.len).size(m.len)).await {
                Ok(bytes) => {
                    self.pulled(src, bytes.len() as u64);
                    return Ok(bytes);
                }
                Err(e) => why = format!("range from {base}: {e}"),
            }
        }
        Err(why)
    }
}
