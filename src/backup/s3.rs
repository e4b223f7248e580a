//! Backups in S3 (or an S3-compatible store) through `object_store`: streamed multipart
//! uploads that complete only when the dump is confirmed, streamed downloads behind a
//! blocking `Read`, small sidecars, listings. Every failure is one line, exit 3, and never
//! carries a response body (an S3 error body echoes the access key and the string signed).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::aws_config::AwsConfig;
use super::location::S3Url;
use crate::error::{Error, Result};

/// Size of each uploaded part. S3 allows 10,000 parts, so one dump may be up to 156 GiB
/// compressed; memory holds at most [`PARTS_IN_FLIGHT`] + 1 parts.
pub const PART_SIZE: usize = 16 << 20;
/// Parts uploading at once while the next one fills.
const PARTS_IN_FLIGHT: usize = 1;
/// Writes (about 1 MiB each, the dump writer's buffer) queued toward the uploader.
const QUEUE: usize = 4;
/// Largest sidecar read whole.
const SMALL_MAX: u64 = 16 << 20;

/// A bucket, with the client configured from the environment.
pub struct S3Store {
    store: Arc<AmazonS3>,
    bucket: String,
    /// The endpoint for messages (the configured URL, or AWS's region).
    endpoint: String,
}

impl S3Store {
    /// Credentials, region and endpoint from the environment and `~/.aws` ([`AwsConfig`]).
    pub fn from_env(bucket: &str) -> Result<S3Store> {
        S3Store::new(bucket, &AwsConfig::from_env()?)
    }

    /// A client for `bucket` with this configuration.
    pub fn new(bucket: &str, config: &AwsConfig) -> Result<S3Store> {
        // reqwest is built without a bundled TLS provider: ring, which the tree has (kube).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", config.region));
        // No overall request timeout: a part or a download takes as long as the link needs;
        // a stalled connection is caught by the read timeout, the whole flow by --timeout.
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            .with_read_timeout(Duration::from_secs(120))
            .with_timeout_disabled()
            .with_allow_http(
                config
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key.0)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(token) = &config.session_token {
            builder = builder.with_token(&token.0);
        }
        if let Some(url) = &config.endpoint {
            builder = builder.with_endpoint(url);
        }
        let store = builder.build().map_err(|err| Error::ObjectStore {
            action: format!("configure the S3 client for bucket {bucket}"),
            reason: reason(&err, &endpoint, bucket),
        })?;
        Ok(S3Store {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            endpoint,
        })
    }

    fn fail(&self, action: String) -> impl FnOnce(object_store::Error) -> Error + '_ {
        move |err| Error::ObjectStore {
            action,
            reason: reason(&err, &self.endpoint, &self.bucket),
        }
    }

    /// Whether the object exists.
    pub async fn exists(&self, url: &S3Url) -> Result<bool> {
        match self.store.head(&path(url)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(self.fail(format!("check {url}"))(err)),
        }
    }

    /// A small object whole (a checksum, a manifest); `None` when it does not exist.
    pub async fn read_small(&self, url: &S3Url) -> Result<Option<Vec<u8>>> {
        let got = match self.store.get(&path(url)?).await {
            Ok(got) => got,
            Err(err) if is_missing_object(&err) => return Ok(None),
            Err(err) => return Err(self.fail(format!("read {url}"))(err)),
        };
        if got.meta.size > SMALL_MAX {
            return Err(Error::Failed(format!(
                "{url} is {} bytes: too large for a sidecar",
                got.meta.size
            )));
        }
        let bytes = got
            .bytes()
            .await
            .map_err(self.fail(format!("read {url}")))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Puts a small object in one request.
    pub async fn put(&self, url: &S3Url, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&path(url)?, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(self.fail(format!("write {url}")))
    }

    /// Deletes an object (S3 answers success for a missing one too).
    pub async fn delete(&self, url: &S3Url) -> Result<()> {
        self.store
            .delete(&path(url)?)
            .await
            .map_err(self.fail(format!("delete {url}")))
    }

    /// The first `n` bytes of an object (fewer when it is shorter).
    pub async fn read_head(&self, url: &S3Url, size: u64, n: u64) -> Result<Bytes> {
        if size == 0 {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&path(url)?, 0..n.min(size))
            .await
            .map_err(self.fail(format!("read {url}")))
    }

    /// The objects directly under a prefix (not in its sub-prefixes).
    pub async fn list(&self, prefix: &S3Url) -> Result<Vec<ObjectMeta>> {
        let trimmed = prefix.key.trim_end_matches('/');
        let at = if trimmed.is_empty() {
            None
        } else {
            Some(ObjectPath::parse(trimmed).map_err(|e| bad_key(prefix, e))?)
        };
        self.store
            .list_with_delimiter(at.as_ref())
            .await
            .map(|listed| listed.objects)
            .map_err(self.fail(format!("list {prefix}")))
    }

    /// Starts a streamed download: a blocking reader fed by a task (bounded queue). Call
    /// `read` on it from a blocking thread.
    pub async fn open(&self, url: &S3Url) -> Result<Box<dyn Read + Send>> {
        let got = self
            .store
            .get(&path(url)?)
            .await
            .map_err(self.fail(format!("read {url}")))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (endpoint, bucket) = (self.endpoint.clone(), self.bucket.clone());
        tokio::spawn(async move {
            let mut stream = got.into_stream();
            while let Some(item) = stream.next().await {
                let item = item.map_err(|err| reason(&err, &endpoint, &bucket));
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            current: Bytes::new(),
        }))
    }

    /// Starts a multipart upload to `url`. Nothing appears under the key until
    /// [`Upload::complete`]; [`Upload::discard`] aborts it and its parts.
    pub async fn start_upload(&self, url: &S3Url) -> Result<Upload> {
        let upload = self
            .store
            .put_multipart(&path(url)?)
            .await
            .map_err(self.fail(format!("start the upload of {url}")))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (endpoint, bucket) = (self.endpoint.clone(), self.bucket.clone());
        let action = format!("upload {url}");
        let task = tokio::spawn(async move {
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let failed = move |err: object_store::Error| Error::ObjectStore {
                action: action.clone(),
                reason: reason(&err, &endpoint, &bucket),
            };
            let mut rx: mpsc::Receiver<Bytes> = rx;
            while let Some(chunk) = rx.recv().await {
                if let Err(err) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    let _ = parts.abort().await;
                    return Err(failed(err));
                }
                parts.put(chunk);
            }
            Ok((parts, Box::new(failed) as FailFn))
        });
        Ok(Upload {
            url: url.clone(),
            tx: Some(tx),
            task,
            store: S3Store {
                store: self.store.clone(),
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
            },
        })
    }
}

/// A multipart upload in progress.
pub struct Upload {
    url: S3Url,
    tx: Option<mpsc::Sender<Bytes>>,
    task: JoinHandle<Result<(WriteMultipart, FailFn)>>,
    store: S3Store,
}

/// Turns an upload's object_store error into ours (action and endpoint already known).
type FailFn = Box<dyn Fn(object_store::Error) -> Error + Send>;

impl Upload {
    /// The bytes of the object, as a blocking writer (use it from a blocking thread). It
    /// fails once the upload has failed; [`Upload::discard`] then tells why. A dump that
    /// falls back to another command before sending a byte asks for a second one.
    pub fn writer(&self) -> Box<dyn Write + Send> {
        Box::new(ChannelWriter {
            tx: self.tx.clone(),
        })
    }

    /// Waits for every part, writes `sidecar` (`KEY` + suffix, e.g. the checksum) and then
    /// completes the upload: the object appears under its key only now, with its sidecar
    /// already beside it.
    pub async fn complete(mut self, sidecar: Option<(&str, Vec<u8>)>) -> Result<()> {
        self.tx = None;
        let (mut parts, failed) = self.join().await?;
        if let Err(err) = parts.wait_for_capacity(0).await {
            let _ = parts.abort().await;
            return Err(failed(err));
        }
        let placed = match sidecar {
            Some((suffix, bytes)) => {
                let url = self.url.sidecar(suffix);
                if let Err(err) = self.store.put(&url, bytes).await {
                    let _ = parts.abort().await;
                    return Err(err);
                }
                Some(url)
            }
            None => None,
        };
        if let Err(err) = parts.finish().await {
            // The sidecar would vouch for an object that is not this dump.
            if let Some(url) = placed {
                let _ = self.store.delete(&url).await;
            }
            return Err(failed(err));
        }
        Ok(())
    }

    /// Aborts the upload: no object, no parts left. Returns the upload's own failure,
    /// when it failed first (the better reason for the dump's failure).
    pub async fn discard(mut self) -> Option<Error> {
        self.tx = None;
        let joined = tokio::time::timeout(Duration::from_secs(60), self.join()).await;
        match joined {
            Ok(Ok((parts, failed))) => match parts.abort().await {
                Ok(()) => None,
                Err(err) => {
                    tracing::warn!(url = %self.url, "failed to abort the multipart upload");
                    Some(failed(err))
                }
            },
            Ok(Err(err)) => Some(err),
            Err(_) => Some(Error::Timeout {
                what: format!("the upload of {} to stop", self.url),
                after: Duration::from_secs(60),
            }),
        }
    }

    async fn join(&mut self) -> Result<(WriteMultipart, FailFn)> {
        (&mut self.task)
            .await
            .map_err(|err| Error::Failed(format!("failed to upload {}: {err}", self.url)))?
    }
}

/// The writer side of an upload: hands each write to the uploader task.
struct ChannelWriter {
    tx: Option<mpsc::Sender<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sent = match &self.tx {
            Some(tx) => tx.blocking_send(Bytes::copy_from_slice(buf)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the upload stopped",
            ));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reader side of a download.
struct ChannelReader {
    rx: mpsc::Receiver<std::result::Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(reason)) => return Err(io::Error::other(reason)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn path(url: &S3Url) -> Result<ObjectPath> {
    ObjectPath::parse(&url.key).map_err(|e| bad_key(url, e))
}

fn bad_key(url: &S3Url, err: object_store::path::Error) -> Error {
    Error::Usage(format!("invalid object key in {url}: {err}"))
}

/// A missing object, as opposed to a missing bucket (both are 404s).
fn is_missing_object(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
        && s3_code(err).as_deref() != Some("NoSuchBucket")
}

/// The `<Code>` of an S3 error response, when the error carries one.
fn s3_code(err: &object_store::Error) -> Option<String> {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_string())
}

/// One line saying why a request failed, without the response body.
fn reason(err: &object_store::Error, endpoint: &str, bucket: &str) -> String {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(http) = cause.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as Kind;
            return match http.kind() {
                Kind::Connect => format!("cannot connect to {endpoint}"),
                Kind::Timeout => format!("{endpoint} did not answer in time"),
                _ => format!("the connection to {endpoint} failed"),
            };
        }
        source = cause.source();
    }
    let code = s3_code(err);
    match (code.as_deref(), err) {
        (Some("NoSuchBucket"), _) => format!("bucket {bucket} does not exist at {endpoint}"),
        (Some("NoSuchKey"), _) | (None, object_store::Error::NotFound { .. }) => {
            "no such object".into()
        }
        (
            Some(
                code @ ("InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "ExpiredToken"
                | "InvalidToken"),
            ),
            _,
        ) => format!("{endpoint} refused the credentials ({code})"),
        (Some(code), _) => format!("{endpoint} answered {code}"),
        (
            None,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. },
        ) => format!("{endpoint} refused the credentials"),
        (None, other) => {
            // No body was parsed: the variant's own text, first line, bounded.
            let text = other.to_string();
            let line = text.lines().next().unwrap_or_default();
            line.chars().take(200).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_hand_out_the_queued_bytes_then_eof_or_the_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel(4);
        rt.block_on(async {
            tx.send(Ok(Bytes::from_static(b"hello "))).await.unwrap();
            tx.send(Ok(Bytes::from_static(b"world"))).await.unwrap();
        });
        drop(tx);
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world");

        let (tx, rx) = mpsc::channel(4);
        rt.block_on(async { tx.send(Err("cut".to_string())).await.unwrap() });
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let err = reader.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.to_string(), "cut");
    }

    #[test]
    fn a_writer_whose_upload_stopped_fails() {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        drop(rx);
        let mut writer = ChannelWriter { tx: Some(tx) };
        assert_eq!(
            writer.write(b"x").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
