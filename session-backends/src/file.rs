//! The durable embedded store: one file per session under a directory.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord, Version,
};

const MAGIC: &[u8; 4] = b"SES1";
const HEADER_LEN: usize = 4 + 8;
const SUFFIX: &str = ".session";
const LOCKS: usize = 64;

/// Sessions as files: `<dir>/<store key>.session`.
///
/// - Writes are atomic: a temporary file in the same directory, `fsync`,
///   `rename`, then `fsync` of the directory; a crash leaves the old or the
///   new record, never half of one.
/// - File names come from the store key only (43 characters of
///   `[A-Za-z0-9_-]`, a keyed hash of the session id); any other key is
///   refused, so no path can leave the directory.
/// - The deadline is the file's modification time, so a touch moves it
///   without rewriting the record; a background thread removes expired
///   files (gorilla's filesystem store never does).
/// - Compare-and-swap through a version number in the file, checked under a
///   per-key lock. The lock is per process: two processes sharing a
///   directory may both win a race; share memcached between processes
///   instead.
/// - Records are sealed at rest by default.
///
/// ```no_run
/// use session_backends::FileStore;
/// let store = FileStore::builder("/var/lib/myapp/sessions").build().unwrap();
/// ```
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_record_size: usize,
    seal_at_rest: bool,
    locks: Vec<Mutex<()>>,
    hasher: RandomState,
    temp_counter: AtomicU64,
}

/// Builder of a [`FileStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FileStoreBuilder {
    dir: PathBuf,
    max_record_size: usize,
    seal_at_rest: bool,
    sweep_interval: Duration,
}

impl FileStoreBuilder {
    /// Largest record accepted. Default 1 MiB.
    pub fn max_record_size(mut self, max: usize) -> Self {
        self.max_record_size = max;
        self
    }

    /// Whether records are sealed at rest (default true).
    pub fn seal_at_rest(mut self, seal: bool) -> Self {
        self.seal_at_rest = seal;
        self
    }

    /// How often expired files are removed. Default 60 s.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(crate::sweeper::MIN_INTERVAL);
        self
    }

    /// Creates the directory if needed and starts the sweeper thread (it
    /// ends by itself once the store is dropped).
    pub fn build(self) -> std::io::Result<FileStore> {
        fs::create_dir_all(&self.dir)?;
        let inner = Arc::new(Inner {
            dir: self.dir,
            max_record_size: self.max_record_size,
            seal_at_rest: self.seal_at_rest,
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
            temp_counter: AtomicU64::new(0),
        });
        crate::sweeper::spawn(
            &inner,
            self.sweep_interval,
            "session-file-sweeper",
            |inner| {
                if let Err(e) = inner.sweep() {
                    tracing::warn!(error = %e, "file store sweep failed");
                }
            },
        );
        Ok(FileStore { inner })
    }
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("session file: {e}"))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn system_time(t: OffsetDateTime) -> SystemTime {
    SystemTime::from(t)
}

impl Inner {
    fn path(&self, key: &StoreKey) -> Result<PathBuf, StoreError> {
        if !valid_key(key.as_str()) {
            return Err(StoreError::Backend(
                "store key is not a valid file name".into(),
            ));
        }
        Ok(self.dir.join(format!("{}{SUFFIX}", key.as_str())))
    }

    fn lock(&self, key: &str) -> std::sync::MutexGuard<'_, ()> {
        let index = self.hasher.hash_one(key) as usize % LOCKS;
        self.locks[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live record in `path`: (version, deadline, bytes).
    fn read(&self, path: &Path) -> std::io::Result<Option<(u64, SystemTime, Vec<u8>)>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let deadline = file.metadata()?.modified()?;
        if deadline <= SystemTime::now() {
            return Ok(None);
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;
        if content.len() < HEADER_LEN || &content[..4] != MAGIC {
            tracing::warn!("ignoring a malformed session file");
            return Ok(None);
        }
        let version = u64::from_be_bytes(content[4..12].try_into().expect("8 bytes"));
        content.drain(..HEADER_LEN);
        Ok(Some((version, deadline, content)))
    }

    fn write(
        &self,
        path: &Path,
        version: u64,
        bytes: &[u8],
        deadline: SystemTime,
    ) -> std::io::Result<()> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(MAGIC)?;
            file.write_all(&version.to_be_bytes())?;
            file.write_all(bytes)?;
            file.set_modified(deadline)?;
            file.sync_all()?;
            fs::rename(&temp, path)?;
            // Make the rename itself durable.
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn sweep(&self) -> std::io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
                continue;
            };
            let expired = |path: &Path| {
                fs::metadata(path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t <= now)
            };
            let path = entry.path();
            if expired(&path) {
                // Re-check under the key's lock, so a concurrent touch wins.
                let _guard = self.lock(key);
                if expired(&path) && fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl FileStore {
    /// A builder for a store under `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> FileStoreBuilder {
        FileStoreBuilder {
            dir: dir.into(),
            max_record_size: 1 << 20,
            seal_at_rest: true,
            sweep_interval: Duration::from_secs(60),
        }
    }

    /// Removes expired files now; returns how many.
    pub fn sweep_expired(&self) -> std::io::Result<usize> {
        self.inner.sweep()
    }

    /// Runs blocking file work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| StoreError::Backend(format!("file store task: {e}")))?
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for FileStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let path = self.inner.path(key)?;
        self.blocking(move |inner| {
            Ok(inner
                .read(&path)
                .map_err(io_error)?
                .map(|(version, deadline, bytes)| {
                    StoredRecord::new(
                        bytes,
                        Version(version),
                        Some(OffsetDateTime::from(deadline)),
                    )
                }))
        })
        .await
    }

    async fn save(
        &self,
        key: &StoreKey,
        record: &[u8],
        expires_at: OffsetDateTime,
        condition: SaveCondition,
    ) -> Result<SaveOutcome, StoreError> {
        StoreError::check_size(record.len(), self.inner.max_record_size)?;
        let path = self.inner.path(key)?;
        let key = key.as_str().to_owned();
        let record = record.to_vec();
        self.blocking(move |inner| {
            let _guard = inner.lock(&key);
            let current = inner.read(&path).map_err(io_error)?.map(|(v, _, _)| v);
            let allowed = match condition {
                SaveCondition::IfAbsent => current.is_none(),
                SaveCondition::IfVersion(Version(v)) => current == Some(v),
                _ => true,
            };
            if !allowed {
                return Ok(SaveOutcome::Conflict);
            }
            let version = current.unwrap_or(0).wrapping_add(1).max(1);
            inner
                .write(&path, version, &record, system_time(expires_at))
                .map_err(io_error)?;
            Ok(SaveOutcome::Saved(Version(version)))
        })
        .await
    }

    async fn touch(&self, key: &StoreKey, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let path = self.inner.path(key)?;
        let key = key.as_str().to_owned();
        self.blocking(move |inner| {
            let _guard = inner.lock(&key);
            if inner.read(&path).map_err(io_error)?.is_none() {
                return Ok(false);
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_error)?;
            file.set_modified(system_time(expires_at))
                .map_err(io_error)?;
            Ok(true)
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        let path = self.inner.path(key)?;
        let key = key.as_str().to_owned();
        self.blocking(move |inner| {
            let _guard = inner.lock(&key);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(e)),
                _ => Ok(()),
            }
        })
        .await
    }

    fn max_record_size(&self) -> Option<usize> {
        Some(self.inner.max_record_size)
    }

    fn seals_at_rest(&self) -> bool {
        self.inner.seal_at_rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("session-file-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn keys_that_could_leave_the_directory_are_refused() {
        let store = FileStore::builder(temp_dir("traversal")).build().unwrap();
        for bad in ["../etc/passwd", "a/b", "", ".hidden", "a b", "..", "x\0y"] {
            let err = store.load(&StoreKey::from_raw(bad)).await.unwrap_err();
            assert!(matches!(err, StoreError::Backend(_)), "{bad}");
            let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
            assert!(store
                .save(&StoreKey::from_raw(bad), b"x", later, SaveCondition::Always)
                .await
                .is_err());
        }
    }

    #[tokio::test]
    async fn sweeper_removes_expired_files_only() {
        let dir = temp_dir("sweep");
        let store = FileStore::builder(&dir)
            .sweep_interval(Duration::from_secs(3600))
            .build()
            .unwrap();
        let now = OffsetDateTime::now_utc();
        store
            .save(
                &StoreKey::from_raw("old"),
                b"x",
                now + Duration::from_millis(50),
                SaveCondition::Always,
            )
            .await
            .unwrap();
        store
            .save(
                &StoreKey::from_raw("live"),
                b"x",
                now + Duration::from_secs(60),
                SaveCondition::Always,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.sweep_expired().unwrap(), 1);
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["live.session"]);
    }

    #[tokio::test]
    async fn no_temporary_files_are_left_behind() {
        let dir = temp_dir("temp");
        let store = FileStore::builder(&dir).build().unwrap();
        let later = OffsetDateTime::now_utc() + Duration::from_secs(60);
        for i in 0..20 {
            store
                .save(
                    &StoreKey::from_raw("k"),
                    format!("{i}").as_bytes(),
                    later,
                    SaveCondition::Always,
                )
                .await
                .unwrap();
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }
}
