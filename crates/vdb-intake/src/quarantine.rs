//! The quarantine: each sample at rest as `quarantine/<sha256>.zip`, a ZIP whose one entry (named
//! after the SHA-256) is encrypted with the password `infected`, the form in which the industry
//! exchanges samples. The raw bytes never touch the disk: an upload streams through the
//! compressor and the cipher into a temporary file in `tmp/`, which is fsynced and renamed into
//! place only once the whole upload arrived within bounds. Files are created mode 0600 in
//! directories of mode 0700, and nothing in the quarantine is ever served to the public.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;
use vdb_proto::sample::QUARANTINE_PASSWORD;
use zip::unstable::write::FileOptionsExt as _;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// The name of the entry while the upload streams (the SHA-256 is known only at the end).
const STAGING_ENTRY: &str = "sample";

/// The quarantine directory.
#[derive(Debug)]
pub(crate) struct Quarantine {
    dir: PathBuf,
    tmp: PathBuf,
    scan_tmp: PathBuf,
}

/// An upload being written.
pub(crate) struct SampleWriter {
    zip: ZipWriter<NamedTempFile>,
    hash: Sha256,
    size: u64,
}

/// A whole upload, encrypted in a temporary file, not yet in the quarantine.
#[derive(Debug)]
pub(crate) struct Staged {
    /// SHA-256 of the sample (lower-case hex).
    pub(crate) sha256: String,
    /// Size of the sample.
    pub(crate) size: u64,
    temp: NamedTempFile,
}

fn private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    io::Error::other(e)
}

fn options() -> io::Result<SimpleFileOptions> {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o600)
        .with_deprecated_encryption(QUARANTINE_PASSWORD.as_bytes())
        .map_err(zip_err)
}

impl Quarantine {
    /// Opens (creating) `data_dir/quarantine`, `data_dir/tmp` (uploads being staged) and
    /// `data_dir/scan-tmp` (the scanner's own temporary files); leftovers of an interrupted upload
    /// or scan are removed.
    pub(crate) fn open(data_dir: &Path) -> io::Result<Self> {
        let q = Self {
            dir: data_dir.join("quarantine"),
            tmp: data_dir.join("tmp"),
            scan_tmp: data_dir.join("scan-tmp"),
        };
        private_dir(&q.dir)?;
        for tmp in [&q.tmp, &q.scan_tmp] {
            if tmp.exists() {
                std::fs::remove_dir_all(tmp)?;
            }
            private_dir(tmp)?;
        }
        Ok(q)
    }

    /// The scanner's temporary directory (clamscan's `--tempdir`), apart from the staging area so
    /// that a running scan is never counted as a staged upload.
    pub(crate) fn scan_tmp_dir(&self) -> &Path {
        &self.scan_tmp
    }

    /// How many uploads are staged (none once uploads have finished).
    pub(crate) fn staging_count(&self) -> usize {
        std::fs::read_dir(&self.tmp).map_or(0, |d| d.count())
    }

    /// Where a sample's ZIP is.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.zip"))
    }

    /// Starts writing an upload.
    pub(crate) fn writer(&self) -> io::Result<SampleWriter> {
        let temp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.tmp)?;
        let mut zip = ZipWriter::new(temp);
        zip.start_file(STAGING_ENTRY, options()?).map_err(zip_err)?;
        Ok(SampleWriter {
            zip,
            hash: Sha256::new(),
            size: 0,
        })
    }

    /// Moves a staged upload into the quarantine as `<sha256>.zip` (its entry renamed to the
    /// SHA-256, the encrypted bytes copied as they are), unless the sample is there already.
    /// Returns the size of the ZIP on disk.
    pub(crate) fn commit(&self, staged: Staged) -> io::Result<u64> {
        let dst = self.path(&staged.sha256);
        if let Ok(m) = std::fs::metadata(&dst) {
            return Ok(m.len());
        }
        let mut src = ZipArchive::new(staged.temp.reopen()?).map_err(zip_err)?;
        let out = tempfile::Builder::new()
            .prefix("commit-")
            .tempfile_in(&self.tmp)?;
        let mut zip = ZipWriter::new(out);
        zip.raw_copy_file_rename(src.by_index_raw(0).map_err(zip_err)?, &staged.sha256)
            .map_err(zip_err)?;
        let mut out = zip.finish().map_err(zip_err)?;
        out.flush()?;
        out.as_file().sync_all()?;
        let len = out.as_file().metadata()?.len();
        out.persist(&dst).map_err(|e| e.error)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(len)
    }

    /// Decrypts a quarantined sample into `sink` (for the scanner), `limit` bytes at most.
    pub(crate) fn read_sample(
        &self,
        sha256: &str,
        limit: u64,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut a = ZipArchive::new(File::open(self.path(sha256))?).map_err(zip_err)?;
        let f = a
            .by_index_decrypt(0, QUARANTINE_PASSWORD.as_bytes())
            .map_err(zip_err)?;
        let mut r = f.take(limit);
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            sink(&buf[..n])?;
        }
    }

    /// Opens a quarantined ZIP as it is (the team's download).
    pub(crate) fn open_zip(&self, sha256: &str) -> io::Result<File> {
        File::open(self.path(sha256))
    }
}

impl Staged {
    /// Size of the encrypted ZIP (about what the quarantine will hold).
    pub(crate) fn zip_len(&self) -> u64 {
        self.temp.as_file().metadata().map_or(0, |m| m.len())
    }
}

impl SampleWriter {
    /// Adds bytes of the upload.
    pub(crate) fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hash.update(chunk);
        self.size += chunk.len() as u64;
        self.zip.write_all(chunk)
    }

    /// Ends the upload.
    pub(crate) fn finish(self) -> io::Result<Staged> {
        let mut temp = self.zip.finish().map_err(zip_err)?;
        temp.flush()?;
        temp.rewind()?;
        Ok(Staged {
            sha256: vdb_proto::hex(&self.hash.finalize()),
            size: self.size,
            temp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_round_trips_encrypted_and_never_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(dir.path()).unwrap();
        let sample: Vec<u8> = b"MZ this is not really a program. ".repeat(1000);
        let mut w = q.writer().unwrap();
        for c in sample.chunks(777) {
            w.write(c).unwrap();
        }
        let staged = w.finish().unwrap();
        assert_eq!(staged.sha256, vdb_proto::sha256_hex(&sample));
        let sha = staged.sha256.clone();
        let len = q.commit(staged).unwrap();
        assert_eq!(q.staging_count(), 0, "temporary files are gone");
        let zip_bytes = std::fs::read(q.path(&sha)).unwrap();
        assert_eq!(zip_bytes.len() as u64, len);
        assert!(
            !zip_bytes.windows(8).any(|w| w == b"MZ this "),
            "the sample is not readable in the ZIP"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(q.path(&sha))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut back = Vec::new();
        q.read_sample(&sha, u64::MAX, &mut |c| {
            back.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(back, sample);
        let mut a = ZipArchive::new(q.open_zip(&sha).unwrap()).unwrap();
        assert_eq!(a.by_index_raw(0).unwrap().name().unwrap(), sha);
        assert!(a.by_index(0).is_err(), "no password, no sample");
    }

    #[test]
    fn an_abandoned_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(dir.path()).unwrap();
        let mut w = q.writer().unwrap();
        w.write(b"partial").unwrap();
        assert_eq!(q.staging_count(), 1);
        drop(w);
        assert_eq!(q.staging_count(), 0);
    }
}
