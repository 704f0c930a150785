//! [`Location`]: one place in one store, and the operations on it.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::{Component, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::runtime::{block_on_io, run_io};
use crate::{StorageError, StorageOptions, stores};

/// How many objects `write_tree` / `delete_tree` move at once. Enough to hide round-trip latency
/// to a remote store without opening a connection per file of a large tree.
const TREE_CONCURRENCY: usize = 8;

/// A file or directory (prefix) in local storage, Google Cloud Storage or an in-process memory
/// store.
///
/// - `Display` shows the location as the user wrote it (plus joined segments), for messages.
/// - [`Location::url`] gives the canonical URL: `file:///abs/path`, `gs://bucket/key`,
///   `memory://name/key`.
///
/// Cloning is cheap (the store behind it is shared).
#[derive(Clone)]
pub struct Location {
    shown: String,
    backend: Backend,
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    /// Why this location is unusable, when it came from [`Location::join`] with a bad relative
    /// path. `join` stays infallible for callers; every operation reports this instead.
    invalid: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Backend {
    Local,
    Memory { name: String },
    Gcs { bucket: String },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Location");
        debug.field("shown", &self.shown).field("url", &self.url());
        if let Some(reason) = &self.invalid {
            debug.field("invalid", reason);
        }
        debug.finish()
    }
}

impl Location {
    /// Parses a local path (absolute or relative to the current directory), a `file://` URL,
    /// `gs://bucket/prefix` or `memory://name/prefix`. `gs://` follows
    /// [`StorageOptions::from_env`] (`STORAGE_EMULATOR_HOST`).
    ///
    /// Local paths are made absolute at parse time, so a later change of the current directory
    /// does not move the location; `..` in a local path is resolved lexically, as a shell does.
    /// In URLs, empty segments and `.`/`..` segments are refused.
    pub fn parse(url_or_path: &str) -> Result<Location, StorageError> {
        Location::parse_with(url_or_path, &StorageOptions::from_env())
    }

    /// [`Location::parse`] with explicit options instead of the environment.
    pub fn parse_with(
        url_or_path: &str,
        options: &StorageOptions,
    ) -> Result<Location, StorageError> {
        let invalid = |reason: String| StorageError::InvalidLocation {
            location: url_or_path.to_string(),
            reason,
        };
        if url_or_path.is_empty() {
            return Err(invalid("empty path".to_string()));
        }
        let Some((scheme, rest)) = url_or_path.split_once("://") else {
            return local_location(url_or_path, PathBuf::from(url_or_path));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "gs" => {
                let (bucket, key) = split_authority(rest);
                check_bucket_name(bucket).map_err(invalid)?;
                let key = parse_key(key).map_err(invalid)?;
                let endpoint = match options.normalized_emulator_endpoint() {
                    Some(Ok(endpoint)) => Some(endpoint),
                    Some(Err(reason)) => {
                        return Err(StorageError::Config {
                            location: url_or_path.to_string(),
                            reason,
                            source: None,
                        });
                    }
                    None => None,
                };
                let store = stores::gcs_store(bucket, endpoint.as_deref(), url_or_path)?;
                Ok(Location {
                    shown: url_or_path.to_string(),
                    backend: Backend::Gcs {
                        bucket: bucket.to_string(),
                    },
                    store,
                    key,
                    invalid: None,
                })
            }
            "memory" => {
                let (name, key) = split_authority(rest);
                if name.is_empty() || name.chars().any(char::is_control) {
                    return Err(invalid(
                        "memory:// needs a store name, as in memory://name/prefix".to_string(),
                    ));
                }
                let key = parse_key(key).map_err(invalid)?;
                Ok(Location {
                    shown: url_or_path.to_string(),
                    backend: Backend::Memory {
                        name: name.to_string(),
                    },
                    store: stores::memory_store(name),
                    key,
                    invalid: None,
                })
            }
            "file" => {
                let url = url::Url::parse(url_or_path)
                    .map_err(|error| invalid(format!("not a valid file URL: {error}")))?;
                let path = url.to_file_path().map_err(|()| {
                    invalid(
                        "file URL must be absolute and have no host other than localhost"
                            .to_string(),
                    )
                })?;
                local_location(url_or_path, path)
            }
            other => Err(invalid(format!(
                "unsupported scheme {other:?}: use a local path, file://, gs:// or memory://"
            ))),
        }
    }

    /// `self` with `relative` (`"a/b"`) appended.
    ///
    /// Never fails: if `relative` is not a plain relative path (empty, absolute, empty segments,
    /// `.` or `..`), the returned location is marked invalid and every operation on it returns
    /// [`StorageError::InvalidLocation`]. Use [`Location::try_join`] to get the error at once.
    pub fn join(&self, relative: &str) -> Location {
        match self.try_join(relative) {
            Ok(joined) => joined,
            Err(error) => {
                let reason = match &error {
                    StorageError::InvalidLocation { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                Location {
                    shown: joined_display(&self.shown, relative),
                    invalid: Some(Arc::from(reason)),
                    ..self.clone()
                }
            }
        }
    }

    /// `self` with `relative` appended, or an [`StorageError::InvalidLocation`] error if
    /// `relative` is empty, absolute, or has empty, `.` or `..` segments. Nothing is normalised.
    pub fn try_join(&self, relative: &str) -> Result<Location, StorageError> {
        self.check_valid()?;
        let shown = joined_display(&self.shown, relative);
        let invalid = |reason: String| StorageError::InvalidLocation {
            location: shown.clone(),
            reason,
        };
        if relative.is_empty() {
            return Err(invalid("cannot join an empty relative path".to_string()));
        }
        for segment in relative.split('/') {
            match segment {
                "" => {
                    return Err(invalid(format!(
                        "relative path {relative:?} has an empty segment (leading, trailing or doubled '/')"
                    )));
                }
                "." | ".." => {
                    return Err(invalid(format!(
                        "relative path {relative:?} contains a {segment:?} segment, which is refused"
                    )));
                }
                _ => {}
            }
        }
        let combined = if self.key.is_root() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.key.as_ref())
        };
        let key = parse_key(&combined).map_err(invalid)?;
        Ok(Location {
            shown,
            backend: self.backend.clone(),
            store: self.store.clone(),
            key,
            invalid: None,
        })
    }

    /// The canonical URL: `file:///abs/path`, `gs://bucket/key` or `memory://name/key`.
    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Local => {
                let path = self.local_path_unchecked();
                match url::Url::from_file_path(&path) {
                    Ok(url) => url.to_string(),
                    Err(()) => format!("file://{}", path.display()),
                }
            }
            Backend::Gcs { bucket } => with_key(&format!("gs://{bucket}"), &self.key),
            Backend::Memory { name } => with_key(&format!("memory://{name}"), &self.key),
        }
    }

    /// The URL scheme of the backing store: `"file"`, `"gs"` or `"memory"`.
    pub fn scheme(&self) -> &'static str {
        match self.backend {
            Backend::Local => "file",
            Backend::Gcs { .. } => "gs",
            Backend::Memory { .. } => "memory",
        }
    }

    /// The absolute local path, for local locations; `None` for remote and memory ones.
    pub fn local_path(&self) -> Option<PathBuf> {
        (self.backend == Backend::Local).then(|| self.local_path_unchecked())
    }

    /// Reads the whole object.
    pub async fn read(&self) -> Result<Bytes, StorageError> {
        self.io("read", |this| async move { this.read_now().await })
            .await
    }

    /// Reads the whole object if it is at most `limit` bytes. The size comes from the object's
    /// metadata (file length, object size) before any of its content is read, so an oversized
    /// (or sparse) file costs nothing; over the limit is [`StorageError::TooLarge`].
    pub async fn read_at_most(&self, limit: u64) -> Result<Bytes, StorageError> {
        self.io("read", move |this| async move {
            this.read_at_most_now(limit).await
        })
        .await
    }

    /// Writes the whole object, replacing any existing one. Parent directories of local files are
    /// created. Local files are written to a temporary file that is renamed into place, so readers
    /// see the old content or the new one, never a partial file.
    pub async fn write(&self, data: Bytes) -> Result<(), StorageError> {
        self.io("write", |this| async move { this.write_now(data).await })
            .await
    }

    /// Whether an object exists at exactly this location (a directory or prefix is not one).
    pub async fn exists(&self) -> Result<bool, StorageError> {
        self.io("check", |this| async move { this.exists_now().await })
            .await
    }

    /// Deletes the object. Deleting an object that does not exist succeeds, on every backend.
    pub async fn delete(&self) -> Result<(), StorageError> {
        self.io("delete", |this| async move { this.delete_now().await })
            .await
    }

    /// Keys of all objects under this location, relative to it (`"variables/variables.index"`),
    /// recursive, sorted. Empty if there are none (a prefix that does not exist is empty).
    pub async fn list(&self) -> Result<Vec<String>, StorageError> {
        self.io("list", |this| async move { this.list_now().await })
            .await
    }

    /// Writes a directory tree so that it never looks complete before it is.
    ///
    /// `files` holds paths relative to this location; `marker` is the one readers look for to
    /// decide the tree is there (`saved_model.pb` for a SavedModel) and must be among them.
    ///
    /// Guarantee: the marker is written only after every other file has been written
    /// successfully. An old marker at the destination is deleted *before* anything else is
    /// written, so while the tree is being replaced it reads as absent, never as a complete
    /// mixture of old and new files. If any write fails the marker is not written and the error
    /// is returned (the other files already written stay; a retry overwrites them). All names
    /// are validated before the first write. Files already at the destination that are not in
    /// `files` are left alone; call [`Location::delete_tree_with_marker`] first for a clean tree.
    pub async fn write_tree(
        &self,
        files: Vec<(String, Bytes)>,
        marker: &str,
    ) -> Result<(), StorageError> {
        let marker = marker.to_string();
        self.io("write tree", |this| async move {
            this.write_tree_now(files, &marker).await
        })
        .await
    }

    /// Deletes every object under this location (and, locally, the directories left empty).
    /// Objects are deleted in no particular order; for a tree with a marker use
    /// [`Location::delete_tree_with_marker`].
    pub async fn delete_tree(&self) -> Result<(), StorageError> {
        self.io(
            "delete tree",
            |this| async move { this.delete_tree_now().await },
        )
        .await
    }

    /// Deletes the marker first, then the rest of the tree. Once the marker is gone readers treat
    /// the tree as absent, so a reader never loads a tree whose files are disappearing, even if
    /// the deletion is interrupted halfway.
    pub async fn delete_tree_with_marker(&self, marker: &str) -> Result<(), StorageError> {
        let marker = marker.to_string();
        self.io("delete tree", |this| async move {
            this.try_join(&marker)?.delete_now().await?;
            this.delete_tree_now().await
        })
        .await
    }

    /// Blocking [`Location::read`]; callable from any thread, including inside a tokio runtime.
    pub fn read_blocking(&self) -> Result<Bytes, StorageError> {
        self.io_blocking("read", |this| async move { this.read_now().await })
    }

    /// Blocking [`Location::read_at_most`].
    pub fn read_at_most_blocking(&self, limit: u64) -> Result<Bytes, StorageError> {
        self.io_blocking("read", move |this| async move {
            this.read_at_most_now(limit).await
        })
    }

    /// Blocking [`Location::write`].
    pub fn write_blocking(&self, data: Bytes) -> Result<(), StorageError> {
        self.io_blocking("write", |this| async move { this.write_now(data).await })
    }

    /// Blocking [`Location::exists`].
    pub fn exists_blocking(&self) -> Result<bool, StorageError> {
        self.io_blocking("check", |this| async move { this.exists_now().await })
    }

    /// Blocking [`Location::delete`].
    pub fn delete_blocking(&self) -> Result<(), StorageError> {
        self.io_blocking("delete", |this| async move { this.delete_now().await })
    }

    /// Blocking [`Location::list`].
    pub fn list_blocking(&self) -> Result<Vec<String>, StorageError> {
        self.io_blocking("list", |this| async move { this.list_now().await })
    }

    /// Blocking [`Location::write_tree`], with the same guarantee.
    pub fn write_tree_blocking(
        &self,
        files: Vec<(String, Bytes)>,
        marker: &str,
    ) -> Result<(), StorageError> {
        let marker = marker.to_string();
        self.io_blocking("write tree", |this| async move {
            this.write_tree_now(files, &marker).await
        })
    }

    /// Blocking [`Location::delete_tree`].
    pub fn delete_tree_blocking(&self) -> Result<(), StorageError> {
        self.io_blocking(
            "delete tree",
            |this| async move { this.delete_tree_now().await },
        )
    }

    /// Blocking [`Location::delete_tree_with_marker`].
    pub fn delete_tree_with_marker_blocking(&self, marker: &str) -> Result<(), StorageError> {
        let marker = marker.to_string();
        self.io_blocking("delete tree", |this| async move {
            this.try_join(&marker)?.delete_now().await?;
            this.delete_tree_now().await
        })
    }

    /// Runs async `work` on this location to completion from synchronous code and returns what
    /// it returns. A crate that loads several files (a SavedModel, a dataset) writes that logic
    /// once, async, with [`Location::read`] and friends, and builds its blocking twin on this,
    /// so the two cannot drift apart.
    ///
    /// Like the `*_blocking` methods, `work` runs on this crate's I/O runtime, so this is
    /// callable from any thread, inside a tokio runtime too. That runtime has two threads for
    /// I/O: keep CPU-heavy work (decoding, parsing large files) out of `work` and do it on the
    /// calling thread once this returns. The `Err` is only the runtime itself failing
    /// ([`StorageError::Runtime`], naming `operation` and this location); errors of `work` come
    /// back inside the `Ok`.
    pub fn block_on<T, Work, Fut>(
        &self,
        operation: &'static str,
        work: Work,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        Work: FnOnce(Location) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        block_on_io(operation, &self.shown, work(self.clone()))
    }

    async fn io<T, Work, Fut>(&self, operation: &'static str, work: Work) -> Result<T, StorageError>
    where
        T: Send + 'static,
        Work: FnOnce(Location) -> Fut,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        self.check_valid()?;
        run_io(operation, &self.shown, work(self.clone())).await
    }

    fn io_blocking<T, Work, Fut>(
        &self,
        operation: &'static str,
        work: Work,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        Work: FnOnce(Location) -> Fut,
        Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        self.check_valid()?;
        self.block_on(operation, work)?
    }

    fn check_valid(&self) -> Result<(), StorageError> {
        match &self.invalid {
            Some(reason) => Err(StorageError::InvalidLocation {
                location: self.shown.clone(),
                reason: reason.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The object key, refusing the root of a store, which can hold objects but is not one.
    fn object_key(&self) -> Result<&ObjectPath, StorageError> {
        if self.key.is_root() {
            return Err(StorageError::InvalidLocation {
                location: self.shown.clone(),
                reason: "the root of a bucket or store is not an object".to_string(),
            });
        }
        Ok(&self.key)
    }

    fn store_error(
        &self,
        operation: &'static str,
    ) -> impl FnOnce(object_store::Error) -> StorageError + '_ {
        move |source| StorageError::from_store(source, operation, self.shown.clone())
    }

    fn local_path_unchecked(&self) -> PathBuf {
        PathBuf::from(format!("/{}", self.key.as_ref()))
    }

    async fn read_now(&self) -> Result<Bytes, StorageError> {
        self.read_at_most_now(u64::MAX).await
    }

    async fn read_at_most_now(&self, limit: u64) -> Result<Bytes, StorageError> {
        let key = self.object_key()?;
        let result = self
            .store
            .get(key)
            .await
            .map_err(self.store_error("read"))?;
        if result.meta.size > limit {
            return Err(StorageError::TooLarge {
                location: self.shown.clone(),
                size: result.meta.size,
                limit,
            });
        }
        result.bytes().await.map_err(self.store_error("read"))
    }

    async fn write_now(&self, data: Bytes) -> Result<(), StorageError> {
        let key = self.object_key()?;
        self.store
            .put(key, PutPayload::from(data))
            .await
            .map_err(self.store_error("write"))?;
        Ok(())
    }

    async fn exists_now(&self) -> Result<bool, StorageError> {
        if self.key.is_root() {
            return Ok(false);
        }
        match self.store.head(&self.key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(self.store_error("check")(source)),
        }
    }

    async fn delete_now(&self) -> Result<(), StorageError> {
        let key = self.object_key()?;
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.store_error("delete")(source)),
        }
    }

    async fn list_now(&self) -> Result<Vec<String>, StorageError> {
        let prefix = (!self.key.is_root()).then_some(&self.key);
        let mut listing = self.store.list(prefix);
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(self.store_error("list"))?;
            let full = meta.location.as_ref();
            let relative = match prefix {
                None => Some(full),
                Some(prefix) => full
                    .strip_prefix(prefix.as_ref())
                    .and_then(|rest| rest.strip_prefix('/')),
            };
            // Only objects strictly below this location; never the location itself.
            if let Some(relative) = relative.filter(|relative| !relative.is_empty()) {
                keys.push(relative.to_string());
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn write_tree_now(
        &self,
        files: Vec<(String, Bytes)>,
        marker: &str,
    ) -> Result<(), StorageError> {
        let invalid_tree = |reason: String| StorageError::InvalidTree {
            location: self.shown.clone(),
            reason,
        };
        if marker.is_empty() {
            return Err(invalid_tree("the marker file name is empty".to_string()));
        }
        let mut seen = HashSet::new();
        let mut marker_file = None;
        let mut other_files = Vec::with_capacity(files.len());
        // Validate every name before touching the store, so a bad name cannot leave a partial tree.
        for (name, data) in files {
            if !seen.insert(name.clone()) {
                return Err(invalid_tree(format!("file {name:?} is listed twice")));
            }
            let target = self.try_join(&name)?;
            if name == marker {
                marker_file = Some((target, data));
            } else {
                other_files.push((target, data));
            }
        }
        let Some((marker_target, marker_data)) = marker_file else {
            return Err(invalid_tree(format!(
                "the marker file {marker:?} is not among the files to write"
            )));
        };
        marker_target.delete_now().await?;
        let mut writes = futures::stream::iter(other_files)
            .map(|(target, data)| async move { target.write_now(data).await })
            .buffer_unordered(TREE_CONCURRENCY);
        while let Some(written) = writes.next().await {
            written?;
        }
        marker_target.write_now(marker_data).await
    }

    async fn delete_tree_now(&self) -> Result<(), StorageError> {
        let keys = self.list_now().await?;
        let mut deletes = futures::stream::iter(keys)
            .map(|relative| async move { self.try_join(&relative)?.delete_now().await })
            .buffer_unordered(TREE_CONCURRENCY);
        while let Some(deleted) = deletes.next().await {
            deleted?;
        }
        if let Some(root) = self.local_path() {
            // Object stores have no directories; the local one leaves them behind. Remove the
            // ones this tree emptied, but never anything above the tree itself.
            let _ = tokio::task::spawn_blocking(move || remove_empty_dirs(&root)).await;
        }
        Ok(())
    }
}

fn remove_empty_dirs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // `file_type` does not follow symlinks: a link to a directory elsewhere is left alone.
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_empty_dirs(&entry.path());
        }
    }
    // Fails harmlessly when something is still inside.
    let _ = std::fs::remove_dir(dir);
}

fn local_location(shown: &str, path: PathBuf) -> Result<Location, StorageError> {
    let invalid = |reason: String| StorageError::InvalidLocation {
        location: shown.to_string(),
        reason,
    };
    let absolute = if path.is_absolute() {
        path
    } else {
        let current = std::env::current_dir()
            .map_err(|error| invalid(format!("cannot resolve a relative path: {error}")))?;
        current.join(path)
    };
    let mut segments: Vec<String> = Vec::new();
    for component in absolute.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                segments.pop();
            }
            Component::Normal(name) => match name.to_str() {
                Some(name) => segments.push(name.to_string()),
                None => return Err(invalid("path is not valid UTF-8".to_string())),
            },
        }
    }
    let key = parse_key(&segments.join("/")).map_err(invalid)?;
    Ok(Location {
        shown: shown.to_string(),
        backend: Backend::Local,
        store: stores::local_store(),
        key,
        invalid: None,
    })
}

/// Splits `bucket/key...` (the part of a URL after `scheme://`).
fn split_authority(rest: &str) -> (&str, &str) {
    rest.split_once('/').unwrap_or((rest, ""))
}

fn parse_key(key: &str) -> Result<ObjectPath, String> {
    ObjectPath::parse(key).map_err(|error| error.to_string())
}

/// Google's rules, loosely: lower-case letters, digits, `-`, `_` and `.`, 3 to 222 characters.
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("gs:// needs a bucket name, as in gs://bucket/prefix".to_string());
    }
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    if !(3..=222).contains(&bucket.len()) || !bucket.chars().all(allowed) {
        return Err(format!(
            "{bucket:?} is not a valid bucket name (3-222 characters: a-z, 0-9, '-', '_', '.')"
        ));
    }
    Ok(())
}

fn joined_display(base: &str, relative: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{relative}")
    } else {
        format!("{base}/{relative}")
    }
}

fn with_key(base: &str, key: &ObjectPath) -> String {
    if key.is_root() {
        base.to_string()
    } else {
        format!("{base}/{}", key.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<Location, StorageError> {
        Location::parse_with(input, &StorageOptions::google_cloud())
    }

    fn invalid_reason(result: Result<Location, StorageError>) -> String {
        match result {
            Err(StorageError::InvalidLocation { reason, .. }) => reason,
            other => panic!("expected InvalidLocation, got {other:?}"),
        }
    }

    #[test]
    fn location_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone + fmt::Debug + fmt::Display + 'static>() {}
        shareable::<Location>();
        fn error_is_a_std_error<T: std::error::Error + Send + Sync + 'static>() {}
        error_is_a_std_error::<StorageError>();
    }

    #[test]
    fn urls_are_canonical_and_display_is_what_was_written() {
        let gs = parse("gs://my-bucket/models/run-1/").unwrap();
        assert_eq!(gs.url(), "gs://my-bucket/models/run-1");
        assert_eq!(gs.to_string(), "gs://my-bucket/models/run-1/");
        assert_eq!(gs.scheme(), "gs");
        assert_eq!(gs.local_path(), None);

        let bucket_root = parse("gs://my-bucket").unwrap();
        assert_eq!(bucket_root.url(), "gs://my-bucket");

        let memory = parse("memory://unit-urls/a/b").unwrap();
        assert_eq!(memory.url(), "memory://unit-urls/a/b");
        assert_eq!(memory.scheme(), "memory");

        let file = parse("file:///tmp/some%20dir/x").unwrap();
        assert_eq!(file.local_path(), Some(PathBuf::from("/tmp/some dir/x")));
        assert_eq!(file.url(), "file:///tmp/some%20dir/x");
        assert_eq!(file.scheme(), "file");
    }

    #[test]
    fn relative_local_paths_are_made_absolute_at_parse_time() {
        let location = parse("testdata/../testdata/mnist").unwrap();
        let expected = std::env::current_dir().unwrap().join("testdata/mnist");
        assert_eq!(location.local_path(), Some(expected));
        assert_eq!(location.to_string(), "testdata/../testdata/mnist");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        assert!(invalid_reason(parse("")).contains("empty"));
        assert!(invalid_reason(parse("s3://bucket/x")).contains("unsupported scheme"));
        assert!(invalid_reason(parse("gs://")).contains("bucket name"));
        assert!(invalid_reason(parse("gs://Upper/x")).contains("not a valid bucket name"));
        assert!(invalid_reason(parse("gs://bucket/a//b")).contains("empty path segment"));
        assert!(invalid_reason(parse("gs://bucket/a/../b")).contains(".."));
        assert!(invalid_reason(parse("memory:///x")).contains("store name"));
        assert!(invalid_reason(parse("file://remote-host/x")).contains("host"));
    }

    #[test]
    fn bad_emulator_endpoint_is_a_config_error() {
        let options = StorageOptions::with_gcs_emulator("ftp://127.0.0.1:1");
        let error = Location::parse_with("gs://bucket/x", &options).unwrap_err();
        assert!(matches!(error, StorageError::Config { .. }), "{error}");
        assert!(error.to_string().contains("gs://bucket/x"), "{error}");
    }

    #[test]
    fn join_appends_segments() {
        let base = parse("memory://unit-join/models").unwrap();
        let joined = base.join("run-1/saved_model.pb");
        assert_eq!(
            joined.url(),
            "memory://unit-join/models/run-1/saved_model.pb"
        );
        assert_eq!(
            joined.to_string(),
            "memory://unit-join/models/run-1/saved_model.pb"
        );
        let from_root = parse("gs://bucket").unwrap().join("a");
        assert_eq!(from_root.url(), "gs://bucket/a");
        let trailing_slash = parse("gs://bucket/dir/").unwrap().join("a");
        assert_eq!(trailing_slash.to_string(), "gs://bucket/dir/a");
    }

    #[test]
    fn join_refuses_dot_dot_and_empty_segments_instead_of_normalising() {
        let base = parse("memory://unit-join-bad/base").unwrap();
        for relative in ["..", "a/../b", "./a", "/abs", "a//b", "a/", ""] {
            let error = base.try_join(relative).unwrap_err();
            assert!(
                matches!(error, StorageError::InvalidLocation { .. }),
                "{relative:?}: {error}"
            );
            // The infallible form carries the error to the first operation.
            let joined = base.join(relative);
            let error = joined.read_blocking().unwrap_err();
            assert!(
                matches!(error, StorageError::InvalidLocation { .. }),
                "{relative:?}: {error}"
            );
            assert!(joined.try_join("x").is_err());
        }
    }

    #[test]
    fn store_errors_are_classified_by_cause() {
        let not_found = object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into(),
        };
        assert!(StorageError::from_store(not_found, "read", "loc".into()).is_not_found());

        let permission = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        let error = StorageError::from_store(permission, "write", "/root/x".into());
        assert!(
            matches!(error, StorageError::PermissionDenied { .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "cannot write /root/x: permission denied or not authenticated"
        );

        let refused = object_store::Error::Generic {
            store: "GCS",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        let error = StorageError::from_store(refused, "list", "gs://b".into());
        assert!(matches!(error, StorageError::Network { .. }), "{error}");

        let token: Box<dyn std::error::Error + Send + Sync> =
            "Error performing token request: connection refused".into();
        let no_credentials = object_store::Error::Generic {
            store: "GCS",
            source: token,
        };
        let error = StorageError::from_store(no_credentials, "read", "gs://b/x".into());
        assert!(matches!(error, StorageError::Credentials { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains("gcloud auth application-default login"),
            "{error}"
        );

        let other = object_store::Error::Generic {
            store: "GCS",
            source: "HTTP 500".into(),
        };
        let error = StorageError::from_store(other, "list", "gs://b".into());
        assert!(matches!(error, StorageError::Backend { .. }), "{error}");
    }

    proptest::proptest! {
        #[test]
        fn try_join_either_appends_exactly_or_refuses(relative in "[a-z./ #%_-]{0,12}") {
            let base = parse("memory://unit-join-prop/base").unwrap();
            match base.try_join(&relative) {
                Ok(joined) => {
                    proptest::prop_assert_eq!(joined.url(), format!("memory://unit-join-prop/base/{relative}"));
                    let segments_ok = relative.split('/').all(|segment| !matches!(segment, "" | "." | ".."));
                    proptest::prop_assert!(segments_ok);
                }
                Err(error) => {
                    let is_invalid = matches!(error, StorageError::InvalidLocation { .. });
                    proptest::prop_assert!(is_invalid);
                }
            }
        }
    }
}
