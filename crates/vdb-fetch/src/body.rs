//! Reading an answer's body: bounded, hashed while it streams, checked against what is
//! expected, to memory, to a sink or to a file.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::{Error, Response};

/// What [`Response::to_file`] gathers in memory before it writes: the file sees writes of
/// 4 MiB, not one per network chunk, and a body up to this size costs one trip to the blocking
/// pool (create, write and fsync together) instead of one per step.
const WRITE_BUFFER: usize = 4 << 20;

/// How far a download got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received so far.
    pub received: u64,
    /// The whole size, if announced or expected.
    pub total: Option<u64>,
}

type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What a body must be: at most `max` bytes (reading stops past it, nothing more is
/// buffered), optionally exactly `size` bytes with a given SHA-256 (checked while streaming),
/// with an optional progress hook called after each chunk.
#[derive(Clone)]
#[must_use]
pub struct Expect {
    max: u64,
    size: Option<u64>,
    sha256: Option<String>,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expect")
            .field("max", &self.max)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Expect {
    /// Any body of at most `max` bytes.
    pub fn at_most(max: u64) -> Self {
        Self {
            max,
            size: None,
            sha256: None,
            progress: None,
        }
    }

    /// Exactly `size` bytes whose SHA-256 is `sha256` (hex).
    pub fn exactly(size: u64, sha256: &str) -> Self {
        Self::at_most(size).size(size).sha256(sha256)
    }

    /// Exactly `size` bytes (and never more than the limit).
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self.max = self.max.min(size);
        self
    }

    /// The body's SHA-256 (hex, either case).
    pub fn sha256(mut self, hex: &str) -> Self {
        self.sha256 = Some(hex.to_ascii_lowercase());
        self
    }

    /// Calls `f` after each chunk received.
    pub fn on_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// The size limit.
    pub fn max(&self) -> u64 {
        self.max
    }
}

/// What a download received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes received.
    pub size: u64,
    /// Their SHA-256 (lower-case hex).
    pub sha256: String,
}

/// Where a body goes.
enum Sink<'a> {
    Fn(&'a mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send)),
    File(&'a mut Spill),
}

impl Sink<'_> {
    async fn put(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Fn(f) => f(chunk),
            Self::File(w) => w.put(chunk).await,
        }
    }
}

/// The file behind [`Response::to_file`]: chunks gather in `buf` and go to the file
/// [`WRITE_BUFFER`] at a time, each write one blocking call; the file is created by the first
/// write and fsynced by the last.
struct Spill {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    buf: Vec<u8>,
}

impl Spill {
    async fn put(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        // Written before it would outgrow the buffer, so `buf` never reallocates past it.
        if !self.buf.is_empty() && self.buf.len() + chunk.len() > WRITE_BUFFER {
            self.write(false).await?;
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// Writes what is gathered (creating the file first if needed); fsyncs when `last`.
    async fn write(&mut self, last: bool) -> std::io::Result<()> {
        let (path, file, mut buf) = (
            self.path.clone(),
            self.file.take(),
            std::mem::take(&mut self.buf),
        );
        let (file, buf) = tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut file = match file {
                Some(f) => f,
                None => std::fs::File::create(&path)?,
            };
            file.write_all(&buf)?;
            if last {
                file.sync_all()?;
            }
            buf.clear();
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        (self.file, self.buf) = (Some(file), buf);
        Ok(())
    }
}

impl Response {
    /// Streams the body through `sink` under `expect`: refused as soon as it passes the limit
    /// (an announced `Content-Length` above it is refused before reading), hashed as it goes,
    /// checked for size and digest at the end. A sink error stops the download. The future
    /// is `Send`, so downloads can run in spawned tasks.
    pub async fn for_each_chunk(
        self,
        expect: &Expect,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()> + Send,
    ) -> Result<Downloaded, Error> {
        self.stream(expect, Sink::Fn(&mut sink)).await
    }

    async fn stream(self, expect: &Expect, mut sink: Sink<'_>) -> Result<Downloaded, Error> {
        let (url, mut inner) = self.into_parts();
        let announced = inner.content_length();
        if announced.is_some_and(|n| n > expect.max) {
            return Err(Error::TooLarge {
                url,
                limit: expect.max,
            });
        }
        let total = expect.size.or(announced);
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        loop {
            let chunk = match inner.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::Body {
                        url,
                        received,
                        source: e.without_url(),
                    });
                }
            };
            received += chunk.len() as u64;
            if received > expect.max {
                return Err(Error::TooLarge {
                    url,
                    limit: expect.max,
                });
            }
            hasher.update(&chunk);
            if let Err(source) = sink.put(&chunk).await {
                return Err(Error::Write {
                    url,
                    path: None,
                    source,
                });
            }
            if let Some(p) = &expect.progress {
                p(Progress { received, total });
            }
        }
        if let Some(expected) = expect.size
            && received < expected
        {
            return Err(Error::Truncated {
                url,
                expected,
                received,
            });
        }
        let sha256 = vdb_proto::hex(&hasher.finalize());
        if let Some(expected) = &expect.sha256
            && *expected != sha256
        {
            return Err(Error::DigestMismatch {
                url,
                expected: expected.clone(),
                actual: sha256,
            });
        }
        Ok(Downloaded {
            size: received,
            sha256,
        })
    }

    /// The body in memory, under `expect`.
    pub async fn bytes(self, expect: &Expect) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.for_each_chunk(expect, |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// A JSON document of at most `max` bytes.
    pub async fn json<T: serde::de::DeserializeOwned>(self, max: u64) -> Result<T, Error> {
        let url = self.url().clone();
        let body = self.bytes(&Expect::at_most(max)).await?;
        serde_json::from_slice(&body).map_err(|source| Error::Decode { url, source })
    }

    /// The first `n` bytes of the body (fewer if it is shorter); the rest is not read. For
    /// ranges, where a server may ignore `Range` and send everything.
    pub async fn prefix(self, n: usize) -> Result<Vec<u8>, Error> {
        let (url, mut inner) = self.into_parts();
        let mut out = Vec::with_capacity(n.min(64 << 10));
        while out.len() < n {
            match inner.chunk().await {
                Ok(Some(c)) => {
                    let room = n - out.len();
                    out.extend_from_slice(&c[..c.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::Body {
                        url,
                        received: out.len() as u64,
                        source: e.without_url(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Writes the body to `path` (created or truncated) under `expect`, then fsyncs it; the
    /// caller renames it into place. On any failure the file is removed: nothing is left
    /// behind.
    pub async fn to_file(self, path: &Path, expect: &Expect) -> Result<Downloaded, Error> {
        let url = self.url().clone();
        let result = self.write_file(path, expect).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        result.map_err(|e| match e {
            Error::Write {
                path: None, source, ..
            } => Error::Write {
                url,
                path: Some(path.to_path_buf()),
                source,
            },
            e => e,
        })
    }

    async fn write_file(self, path: &Path, expect: &Expect) -> Result<Downloaded, Error> {
        let url = self.url().clone();
        let local = |source| Error::Write {
            url: url.clone(),
            path: Some(path.to_path_buf()),
            source,
        };
        let size = expect.size.or(self.content_length()).unwrap_or(0);
        let mut out = Spill {
            path: path.to_path_buf(),
            file: None,
            buf: Vec::with_capacity(size.min(WRITE_BUFFER as u64) as usize),
        };
        let done = self.stream(expect, Sink::File(&mut out)).await?;
        out.write(true).await.map_err(local)?;
        Ok(done)
    }
}
