//! Reading an answer's body: bounded, hashed while it streams, checked against what is
//! expected, to memory, to a sink or to a file.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::{Error, Response};

/// Write buffer of [`Response::to_file`]: the file sees 1 MiB writes, not one per network
/// chunk.
const WRITE_BUFFER: usize = 1 << 20;

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
    File(&'a mut tokio::io::BufWriter<tokio::fs::File>),
}

impl Sink<'_> {
    async fn put(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Fn(f) => f(chunk),
            Self::File(w) => w.write_all(chunk).await,
        }
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
        let file = tokio::fs::File::create(path).await.map_err(local)?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let done = self.stream(expect, Sink::File(&mut out)).await?;
        out.flush().await.map_err(local)?;
        out.get_ref().sync_all().await.map_err(local)?;
        Ok(done)
    }
}
