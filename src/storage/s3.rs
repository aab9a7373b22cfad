//! S3-compatible mirror: requests signed with SigV4 by rusty-s3 (presigned URLs), sent with
//! ureq. Files up to one part are sent with a single PUT; larger ones as a multipart upload,
//! one part in memory at a time (`S3_PART_SIZE`, default 8 MiB), aborted on any error, so an
//! object only appears when complete. The stored size is checked with HEAD afterwards. A
//! missing bucket is created (as upstream's `mc mb`).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rusty_s3::actions::{CreateMultipartUpload, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tracing::info;

use super::s3_lock::{Lock, LockFor, Locked, Request, lock_enabled, versions_of};
use super::{RemoteObject, Storage, is_layout_dir};
use crate::config::S3Settings;
use crate::model::secret::redact_url;

/// How long presigned URLs stay valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

pub struct S3Storage {
    bucket: Bucket,
    credentials: Credentials,
    /// Key prefix, empty or ending in `/`.
    prefix: String,
    part_size: usize,
    agent: ureq::Agent,
    prune: bool,
    display: String,
    /// `S3_OBJECT_LOCK`: retain-until dates on uploads, versioned deletes.
    lock: Option<Lock>,
    /// Set once the bucket was seen with Object Lock enabled.
    lock_checked: std::sync::OnceLock<()>,
}

impl S3Storage {
    /// # Errors
    /// A malformed endpoint or bucket name.
    pub fn new(s: &S3Settings, lock: Option<Lock>) -> anyhow::Result<S3Storage> {
        let endpoint: url::Url = s.endpoint.parse().map_err(|e| anyhow!("S3_ENDPOINT is not a URL: {e}"))?;
        let style = if s.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(endpoint, style, s.bucket.clone(), s.region.clone())
            .map_err(|e| anyhow!("S3 bucket {} at {}: {e}", s.bucket, redact_url(&s.endpoint)))?;
        let mut prefix = s.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Ok(S3Storage {
            bucket,
            credentials: Credentials::new(s.access_key.clone(), s.secret_key.expose().to_string()),
            display: format!("s3 {}/{}/{prefix}", redact_url(&s.endpoint), s.bucket),
            prefix,
            part_size: s.part_size.max(5 << 20),
            agent: crate::net::http_client::agent(s.timeout),
            prune: s.prune,
            lock,
            lock_checked: std::sync::OnceLock::new(),
        })
    }

    fn lock_headers(&self, key: &str, body: Option<&[u8]>, how: LockFor) -> Vec<(&'static str, String)> {
        super::s3_lock::headers(self.lock.as_ref(), key.strip_prefix(&self.prefix).unwrap_or(key), body, how)
    }

    /// Sets the lock of a completed multipart upload again with PutObjectRetention (the same
    /// mode and date as its CreateMultipartUpload headers): servers that ignore lock headers
    /// on multipart uploads still lock the object.
    fn put_retention(&self, key: &str, headers: &[(&'static str, String)]) -> anyhow::Result<()> {
        let Some((body, md5)) = super::s3_lock::retention_body(headers) else { return Ok(()) };
        let req = Request {
            method: rusty_s3::Method::Put,
            bucket: &self.bucket,
            credentials: &self.credentials,
            object: Some(key),
            query: vec![("retention", "")],
            headers: vec![],
        };
        let url = req.sign(SIGNED_FOR);
        check(self.agent.put(url.as_str()).header("content-md5", md5).send(body.as_bytes()), "PutObjectRetention", key)
            .map(|_| ())
    }

    /// With a lock configured: fails unless the bucket has Object Lock enabled (checked once).
    fn check_lock(&self) -> anyhow::Result<()> {
        if self.lock.is_none() || self.lock_checked.get().is_some() {
            return Ok(());
        }
        let req = Request {
            method: rusty_s3::Method::Get,
            bucket: &self.bucket,
            credentials: &self.credentials,
            object: None,
            query: vec![("object-lock", "")],
            headers: vec![],
        };
        let mut resp = self
            .agent
            .get(req.sign(SIGNED_FOR).as_str())
            .call()
            .map_err(|e| anyhow!("GetObjectLockConfiguration: {e}"))?;
        let status = resp.status();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        if body.contains("NoSuchBucket") {
            return Ok(()); // created with Object Lock by the first upload
        }
        if !status.is_success() || !lock_enabled(&body) {
            bail!(
                "S3_OBJECT_LOCK is set but bucket {} does not have Object Lock enabled ({}): enable it on the bucket \
                 (it needs versioning), or unset S3_OBJECT_LOCK",
                self.bucket.name(),
                if status.is_success() { "disabled".to_string() } else { s3_error(&body) }
            );
        }
        let _ = self.lock_checked.set(());
        Ok(())
    }

    /// Deletes every version (and delete marker) of `full`: on a versioned bucket a plain
    /// DELETE is not a deletion. A version the server refuses to delete (still locked) makes
    /// this a `Locked` error.
    fn delete_versions(&self, key: &str, full: &str) -> anyhow::Result<()> {
        let list = Request {
            method: rusty_s3::Method::Get,
            bucket: &self.bucket,
            credentials: &self.credentials,
            object: None,
            query: vec![("prefix", full), ("versions", "")],
            headers: vec![],
        };
        let body = check(self.agent.get(list.sign(SIGNED_FOR).as_str()).call(), "ListObjectVersions", full)?;
        for version in versions_of(&body, full) {
            let del = Request {
                method: rusty_s3::Method::Delete,
                bucket: &self.bucket,
                credentials: &self.credentials,
                object: Some(full),
                query: vec![("versionId", &version)],
                headers: vec![],
            };
            let resp = self.agent.delete(del.sign(SIGNED_FOR).as_str()).call();
            match resp {
                Ok(r) if r.status().as_u16() == 403 => return Err(Locked { key: key.to_string() }.into()),
                other => {
                    check(other, "DeleteObject (version)", full)?;
                }
            }
        }
        Ok(())
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `put`, locked by the retention policy or until the date given.
    fn put_locked(&self, local: &Path, key: &str, lock: LockFor) -> anyhow::Result<()> {
        self.check_lock()?;
        let full = self.key(key);
        let size = std::fs::metadata(local).with_context(|| format!("reading {}", local.display()))?.len();
        let mut file = File::open(local).with_context(|| format!("opening {}", local.display()))?;
        let upload = |file: &mut File| -> anyhow::Result<()> {
            if size as usize <= self.part_size {
                let mut body = Vec::with_capacity(size as usize);
                file.read_to_end(&mut body)?;
                self.put_whole(&full, &body, lock)
            } else {
                self.put_multipart(&full, file, lock)
            }
        };
        if let Err(e) = upload(&mut file) {
            if !format!("{e}").contains("NoSuchBucket") {
                return Err(e);
            }
            self.ensure_bucket()?;
            let mut file = File::open(local)?;
            upload(&mut file)?;
        }
        let stored = self.size_of(&full)?;
        if stored != size {
            let _ = self.delete(key);
            bail!("{full}: the server stored {stored} bytes instead of {size}; the copy was deleted");
        }
        Ok(())
    }

    fn put_whole(&self, key: &str, body: &[u8], lock: LockFor) -> anyhow::Result<()> {
        let headers = self.lock_headers(key, Some(body), lock);
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        for (k, v) in &headers {
            action.headers_mut().insert(*k, v.as_str());
        }
        let mut req = self.agent.put(action.sign(SIGNED_FOR).as_str());
        for (k, v) in &headers {
            req = req.header(*k, v.as_str());
        }
        check(req.send(body), "PUT", key).map(|_| ())
    }

    fn put_multipart(&self, key: &str, file: &mut File, lock: LockFor) -> anyhow::Result<()> {
        let headers = self.lock_headers(key, None, lock);
        // `?uploads`, as the S3 API documents it (rusty-s3 sends `?uploads=1`, which the current
        // moto answers with 500).
        let url = Request {
            method: rusty_s3::Method::Post,
            bucket: &self.bucket,
            credentials: &self.credentials,
            object: Some(key),
            query: vec![("uploads", "")],
            headers: headers.iter().map(|(k, v)| (*k, v.as_str())).collect(),
        }
        .sign(SIGNED_FOR);
        let mut req = self.agent.post(url.as_str());
        for (k, v) in &headers {
            req = req.header(*k, v.as_str());
        }
        let body = check(req.send(&[][..]), "CreateMultipartUpload", key)?;
        let created =
            CreateMultipartUpload::parse_response(&body).map_err(|e| anyhow!("CreateMultipartUpload {key}: {e}"))?;
        let upload_id = created.upload_id().to_string();
        let result = self.upload_parts(key, &upload_id, file).and_then(|()| self.put_retention(key, &headers));
        if result.is_err() {
            let url = self.bucket.abort_multipart_upload(Some(&self.credentials), key, &upload_id).sign(SIGNED_FOR);
            let _ = self.agent.delete(url.as_str()).call();
        }
        result
    }

    fn upload_parts(&self, key: &str, upload_id: &str, file: &mut File) -> anyhow::Result<()> {
        let mut buf = vec![0u8; self.part_size];
        let mut etags = Vec::new();
        for part in 1u16.. {
            let n = read_full(file, &mut buf)?;
            if n == 0 {
                break;
            }
            // Content-MD5 on every part when the bucket locks objects (S3 requires it).
            let md5 = self
                .lock_headers(key, Some(&buf[..n]), LockFor::Until(None))
                .into_iter()
                .find(|(k, _)| *k == "content-md5");
            let mut action = self.bucket.upload_part(Some(&self.credentials), key, part, upload_id);
            if let Some((k, v)) = &md5 {
                action.headers_mut().insert(*k, v.as_str());
            }
            let mut req = self.agent.put(action.sign(SIGNED_FOR).as_str());
            if let Some((k, v)) = &md5 {
                req = req.header(*k, v.as_str());
            }
            let resp = req.send(&buf[..n]).map_err(|e| anyhow!("UploadPart {part} of {key}: {e}"))?;
            if !resp.status().is_success() {
                bail!("UploadPart {part} of {key}: HTTP {}", resp.status());
            }
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("UploadPart {part} of {key}: no ETag"))?;
            etags.push(etag.to_string());
        }
        let complete = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = complete.sign(SIGNED_FOR);
        let body = complete.body();
        let answer = check(self.agent.post(url.as_str()).send(body.as_str()), "CompleteMultipartUpload", key)?;
        // S3 may answer 200 with an error document.
        if answer.contains("<Error>") {
            bail!("CompleteMultipartUpload {key}: {}", s3_error(&answer));
        }
        Ok(())
    }

    fn size_of(&self, key: &str) -> anyhow::Result<u64> {
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let resp = self.agent.head(url.as_str()).call().map_err(|e| anyhow!("HEAD {key}: {e}"))?;
        if !resp.status().is_success() {
            bail!("HEAD {key}: HTTP {}", resp.status());
        }
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| anyhow!("HEAD {key}: no Content-Length"))
    }

    fn ensure_bucket(&self) -> anyhow::Result<()> {
        let mut action = self.bucket.create_bucket(&self.credentials);
        let locked = self.lock.is_some();
        if locked {
            action.headers_mut().insert("x-amz-bucket-object-lock-enabled", "true");
        }
        let mut req = self.agent.put(action.sign(SIGNED_FOR).as_str());
        if locked {
            req = req.header("x-amz-bucket-object-lock-enabled", "true");
        }
        info!(bucket = self.bucket.name(), object_lock = locked, "Creating the S3 bucket.");
        check(req.send(&[][..]), "CreateBucket", self.bucket.name()).map(|_| ())
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The body of a successful response, or an error naming the operation, the key, the HTTP
/// status and S3's error code and message (never the signed URL).
fn check(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, op: &str, key: &str) -> anyhow::Result<String> {
    let mut resp = result.map_err(|e| anyhow!("{op} {key}: {e}"))?;
    let status = resp.status();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    if status.is_success() { Ok(body) } else { Err(anyhow!("{op} {key}: HTTP {status}: {}", s3_error(&body))) }
}

/// `Code: Message` from an S3 error document.
fn s3_error(body: &str) -> String {
    let tag = |t: &str| {
        body.split(&format!("<{t}>")).nth(1).and_then(|r| r.split(&format!("</{t}>")).next()).map(str::to_string)
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => "no error details".into(),
    }
}

impl Storage for S3Storage {
    fn name(&self) -> String {
        self.display.clone()
    }

    fn put(&self, local: &Path, key: &str) -> anyhow::Result<()> {
        self.put_locked(local, key, LockFor::Policy)
    }

    /// One connection for all (the agent keeps it), each file locked until its own date.
    fn put_many(&self, files: &[super::Upload]) -> Result<(), super::PutMany> {
        for (done, f) in files.iter().enumerate() {
            self.put_locked(&f.local, &f.key, LockFor::Until(f.lock_until))
                .map_err(|error| super::PutMany { done, error })?;
        }
        Ok(())
    }

    fn list(&self) -> anyhow::Result<Vec<RemoteObject>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            if !self.prefix.is_empty() {
                action.with_prefix(self.prefix.as_str());
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let body = match check(self.agent.get(url.as_str()).call(), "ListObjectsV2", self.bucket.name()) {
                Ok(b) => b,
                // A bucket that does not exist yet holds nothing; the next upload creates it.
                Err(e) if format!("{e}").contains("NoSuchBucket") => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let page = ListObjectsV2::parse_response(&body).map_err(|e| anyhow!("ListObjectsV2: {e}"))?;
            for obj in page.contents {
                let Some(rel) = obj.key.strip_prefix(&self.prefix) else { continue };
                if rel.split('/').next().is_some_and(is_layout_dir) {
                    out.push(RemoteObject { key: rel.to_string(), size: obj.size });
                }
            }
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(out)
    }

    fn stream(&self, key: &str, sink: &mut super::Sink) -> anyhow::Result<u64> {
        let full = self.key(key);
        let url = self.bucket.get_object(Some(&self.credentials), &full).sign(SIGNED_FOR);
        let mut resp = self.agent.get(url.as_str()).call().map_err(|e| anyhow!("GET {full}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            bail!("GET {full}: HTTP {status}: {}", s3_error(&body));
        }
        let expected: Option<u64> = resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        let mut body = resp.into_body();
        // No size limit: backups are large; the stream goes straight to the sink.
        let mut reader = body.with_config().limit(u64::MAX).reader();
        let n = super::feed(&mut reader, sink).with_context(|| format!("GET {full}"))?;
        if let Some(len) = expected.filter(|len| *len != n) {
            bail!("GET {full}: received {n} bytes of {len}");
        }
        Ok(n)
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        let full = self.key(key);
        if self.lock.is_some() {
            return self.delete_versions(key, &full);
        }
        let url = self.bucket.delete_object(Some(&self.credentials), &full).sign(SIGNED_FOR);
        check(self.agent.delete(url.as_str()).call(), "DELETE", &full).map(|_| ())
    }

    fn prunes(&self) -> bool {
        self.prune
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_summarised() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>";
        assert_eq!(s3_error(body), "SignatureDoesNotMatch: The request signature we calculated does not match");
        assert_eq!(s3_error(""), "no error details");
    }
}
