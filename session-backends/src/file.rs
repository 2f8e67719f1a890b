//! The durable embedded store: one file per session under a directory.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use session_core::time::OffsetDateTime;
use session_core::{
    async_trait, SaveCondition, SaveOutcome, Store, StoreError, StoreKey, StoredRecord,
    UserIndexSupport, Version,
};

const MAGIC: &[u8; 4] = b"SES1";
const HEADER_LEN: usize = 4 + 8;
const SUFFIX: &str = ".session";
const LOCKS: usize = 64;
const TEMP_PREFIX: &str = ".tmp-";
/// A temporary file older than this was left by a crash (a write takes
/// milliseconds): the sweeper removes it.
const TEMP_MAX_AGE: Duration = Duration::from_secs(60);

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
/// - The directory is created with mode 0700 and files with 0600; an
///   existing directory owned by another user is refused (another local
///   user could read or plant sessions in it), and one open to others is
///   narrowed to 0700.
/// - At most [`max_sessions`](FileStoreBuilder::max_sessions) files (default
///   100,000): past it, new sessions are refused with
///   [`StoreError::Unavailable`] (503) after a sweep of expired ones, while
///   existing sessions keep working, so a flood of anonymous requests cannot
///   fill the disk or log anyone out.
/// - Temporary files left by a crash are removed by the sweeper.
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
    max_sessions: usize,
    /// Session files in the directory, counted at start and kept up to date
    /// by this process (another process sharing the directory is not seen
    /// until the next sweep recounts).
    sessions: AtomicUsize,
    locks: Vec<Mutex<()>>,
    hasher: RandomState,
    temp_counter: AtomicU64,
    op_timeout: Duration,
    /// One sweep at a time: saves that find the store full wait for the
    /// sweep under way rather than each reading the whole directory.
    sweeping: Mutex<()>,
}

/// Builder of a [`FileStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FileStoreBuilder {
    dir: PathBuf,
    max_record_size: usize,
    seal_at_rest: bool,
    max_sessions: usize,
    sweep_interval: Duration,
    op_timeout: Duration,
}

impl FileStoreBuilder {
    /// How long one operation may take before it fails with
    /// [`StoreError::Timeout`] (503), like the networked stores' timeouts:
    /// a stalled disk never hangs a request. Default 1 s.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Largest record accepted. Default 1 MiB.
    pub fn max_record_size(mut self, max: usize) -> Self {
        self.max_record_size = max;
        self
    }

    /// Most session files held; past it new sessions are refused (503) and
    /// existing ones keep working. Default 100,000.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
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

    /// Creates the directory if needed (mode 0700) and starts the sweeper
    /// thread (it ends by itself once the store is dropped).
    ///
    /// # Errors
    ///
    /// The directory cannot be created or read, or it is owned by another
    /// user (`PermissionDenied`).
    pub fn build(self) -> std::io::Result<FileStore> {
        private_dir(&self.dir)?;
        let sessions = count_sessions(&self.dir)?;
        let inner = Arc::new(Inner {
            dir: self.dir,
            max_record_size: self.max_record_size,
            seal_at_rest: self.seal_at_rest,
            max_sessions: self.max_sessions,
            sessions: AtomicUsize::new(sessions),
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
            temp_counter: AtomicU64::new(0),
            sweeping: Mutex::new(()),
            op_timeout: self.op_timeout,
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

/// Creates `dir` readable by this user only, or checks that an existing one
/// is this user's and narrows it to 0700.
#[cfg(unix)]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    // The process's effective uid owns /proc/self; the directory may
    // predate us, so its owner is checked rather than assumed.
    if let Ok(me) = fs::metadata("/proc/self") {
        if meta.uid() != me.uid() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "session directory {} belongs to another user (uid {}); refusing it",
                    dir.display(),
                    meta.uid()
                ),
            ));
        }
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "session directory was open to other users; narrowed to 0700");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

fn count_sessions(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        if entry?
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(SUFFIX))
        {
            n += 1;
        }
    }
    Ok(n)
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

    fn lock_index(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % LOCKS
    }

    fn lock(&self, key: &str) -> std::sync::MutexGuard<'_, ()> {
        self.locks[self.lock_index(key)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let result = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temp)?;
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

    /// Removes expired session files and stale temporary files, and
    /// recounts the sessions. Takes each expired file's key lock in turn,
    /// so the caller must hold none (two callers each holding one lock and
    /// sweeping would wait for each other forever).
    fn sweep(&self) -> std::io::Result<usize> {
        self.sweep_at(SystemTime::now())
    }

    fn sweep_at(&self, now: SystemTime) -> std::io::Result<usize> {
        let mut removed = 0;
        let mut live = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) {
                if stale_temp(&entry.path(), now) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            let Some(key) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            live += 1;
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
                    live -= 1;
                }
            }
        }
        self.sessions.store(live, Ordering::Relaxed);
        Ok(removed)
    }

    /// Takes a place for a new session file, if the cap allows.
    fn take_place(&self) -> bool {
        self.sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_sessions).then_some(n + 1)
            })
            .is_ok()
    }

    fn full(&self) -> StoreError {
        tracing::warn!(
            max_sessions = self.max_sessions,
            "file store full: new session refused"
        );
        StoreError::Unavailable(format!("file store full ({} sessions)", self.max_sessions))
    }

    /// The next version: one up from the current record's, or for a new
    /// record one no earlier record of this key had.
    fn version_after(&self, current: Option<u64>) -> u64 {
        match current {
            Some(v) => v.saturating_add(1),
            None => crate::versions::fresh_version(),
        }
    }

    /// The save itself, under the key's lock. `room` says a place was
    /// taken for a new file already (after a sweep made one).
    fn save_locked(&self, save: &Save, room: bool) -> Result<Saving, StoreError> {
        let current = self.read(&save.path).map_err(io_error)?.map(|(v, _, _)| v);
        let allowed = match save.condition {
            SaveCondition::IfAbsent => current.is_none(),
            SaveCondition::IfVersion(Version(v)) => current == Some(v),
            _ => true,
        };
        // A file that exists but expired still counts until it is swept.
        let new_file = current.is_none() && !save.path.exists();
        if room && !(allowed && new_file) {
            // A place taken for a file this save does not create: give it
            // back.
            self.release();
        }
        if !allowed {
            return Ok(Saving::Done(SaveOutcome::Conflict));
        }
        if new_file && !room && !self.take_place() {
            return Ok(Saving::Full);
        }
        let version = self.version_after(current);
        let written = self.write(&save.path, version, &save.record, save.deadline);
        if written.is_err() && new_file {
            self.release();
        }
        written.map_err(io_error)?;
        Ok(Saving::Done(SaveOutcome::Saved(Version(version))))
    }

    fn release(&self) {
        let _ = self
            .sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// One save's request, moved to the blocking thread.
struct Save {
    key: String,
    path: PathBuf,
    record: Vec<u8>,
    deadline: SystemTime,
    condition: SaveCondition,
}

/// What a save under the key's lock came to.
enum Saving {
    Done(SaveOutcome),
    /// A new file, and the store is full: sweep (holding no lock) and try
    /// once more.
    Full,
}

/// A temporary file whose last status change is older than [`TEMP_MAX_AGE`]
/// (its modification time is a session deadline, so it cannot tell).
fn stale_temp(path: &Path, now: SystemTime) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).is_ok_and(|m| {
            let changed = SystemTime::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64);
            now.duration_since(changed)
                .is_ok_and(|age| age > TEMP_MAX_AGE)
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, now);
        false
    }
}

impl FileStore {
    /// A builder for a store under `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> FileStoreBuilder {
        FileStoreBuilder {
            dir: dir.into(),
            max_record_size: 1 << 20,
            seal_at_rest: true,
            max_sessions: 100_000,
            sweep_interval: Duration::from_secs(60),
            op_timeout: Duration::from_secs(1),
        }
    }

    /// Removes expired files now; returns how many.
    ///
    /// # Errors
    ///
    /// The directory cannot be read.
    pub fn sweep_expired(&self) -> std::io::Result<usize> {
        self.inner.sweep()
    }

    /// Runs blocking file work off the async runtime, for at most the
    /// operation timeout (the work itself cannot be stopped; a save that
    /// timed out may still land, as on any store whose reply was lost).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        let limit = inner.op_timeout;
        let task = tokio::task::spawn_blocking(move || work(&inner));
        match tokio::time::timeout(limit, task).await {
            Ok(joined) => {
                joined.map_err(|e| StoreError::Backend(format!("file store task: {e}")))?
            }
            Err(_) => Err(StoreError::Timeout(limit)),
        }
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
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn load(&self, key: &StoreKey) -> Result<Option<StoredRecord>, StoreError> {
        let path = self.inner.path(key)?;
        self.blocking(move |inner| {
            let Some((version, deadline, bytes)) = inner.read(&path).map_err(io_error)? else {
                return Ok(None);
            };
            // A modification time past what a date can hold (set by hand):
            // not a deadline this store wrote.
            let Some(deadline) = deadline
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
            else {
                tracing::warn!("ignoring a session file with an impossible deadline");
                return Ok(None);
            };
            Ok(Some(StoredRecord::new(
                bytes,
                Version(version),
                Some(deadline),
            )))
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
        let save = Save {
            path: self.inner.path(key)?,
            key: key.as_str().to_owned(),
            record: record.to_vec(),
            deadline: system_time(expires_at),
            condition,
        };
        self.blocking(move |inner| {
            let first = {
                let _guard = inner.lock(&save.key);
                inner.save_locked(&save, false)?
            };
            if let Saving::Done(outcome) = first {
                return Ok(outcome);
            }
            // Full: sweep holding no key lock, take a place if the sweep
            // made one, then save under the lock again (the record may
            // have changed meanwhile, so the condition is checked anew).
            let place = {
                let _one_sweep = inner.sweeping.lock().unwrap_or_else(|p| p.into_inner());
                // The sweep this save waited for may have made room.
                inner.take_place() || {
                    let _ = inner.sweep();
                    inner.take_place()
                }
            };
            if !place {
                return Err(inner.full());
            }
            let _guard = inner.lock(&save.key);
            match inner.save_locked(&save, true)? {
                Saving::Done(outcome) => Ok(outcome),
                Saving::Full => Err(inner.full()),
            }
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
                Ok(()) => {
                    inner.release();
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(e)),
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

    fn user_index(&self) -> UserIndexSupport<'_> {
        // Each user's index in one record, by compare-and-swap.
        UserIndexSupport::Records(self)
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

    async fn save_new(store: &FileStore, key: &str, secs: u64) -> Result<SaveOutcome, StoreError> {
        let deadline = OffsetDateTime::now_utc() + Duration::from_secs(secs);
        store
            .save(
                &StoreKey::from_raw(key),
                b"x",
                deadline,
                SaveCondition::Always,
            )
            .await
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_directory_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("private");
        let store = FileStore::builder(&dir).build().unwrap();
        save_new(&store, "k", 60).await.unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("k.session")), 0o600);
        // An existing directory open to others is narrowed.
        let open = temp_dir("open");
        fs::create_dir_all(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        FileStore::builder(&open).build().unwrap();
        assert_eq!(mode(&open), 0o700);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_directory_owned_by_another_user_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("foreign");
        fs::create_dir_all(&dir).unwrap();
        let me = fs::metadata("/proc/self").unwrap().uid();
        // Only root can give a directory away; as anyone else this test
        // has nothing to set up (CI runs it as root).
        if std::os::unix::fs::chown(&dir, Some(me + 1), None).is_err() {
            assert_ne!(me, 0, "root must be able to chown");
            return;
        }
        let err = FileStore::builder(&dir).build().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("another user"), "{err}");
    }

    #[tokio::test]
    async fn past_the_cap_new_sessions_are_refused_and_existing_ones_work() {
        let dir = temp_dir("cap");
        let store = FileStore::builder(&dir).max_sessions(3).build().unwrap();
        for k in ["a", "b", "c"] {
            save_new(&store, k, 60).await.unwrap();
        }
        let refused = save_new(&store, "d", 60).await.unwrap_err();
        assert!(refused.is_unavailable(), "{refused:?}");
        assert!(refused.to_string().contains("full"), "{refused}");
        // Rewriting and reading an existing session still work.
        save_new(&store, "a", 60).await.unwrap();
        assert!(store
            .load(&StoreKey::from_raw("a"))
            .await
            .unwrap()
            .is_some());
        // A delete makes room; so does an expired session, swept when full.
        store.delete(&StoreKey::from_raw("b")).await.unwrap();
        save_new(&store, "d", 60).await.unwrap();
        let soon = OffsetDateTime::now_utc() + Duration::from_millis(50);
        store
            .save(&StoreKey::from_raw("c"), b"x", soon, SaveCondition::Always)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        save_new(&store, "e", 60).await.unwrap();
        // A second store on the directory counts what is there.
        let again = FileStore::builder(&dir).max_sessions(3).build().unwrap();
        assert!(save_new(&again, "f", 60).await.is_err());
    }

    #[tokio::test]
    async fn temporary_files_left_by_a_crash_are_swept() {
        let dir = temp_dir("crash");
        let store = FileStore::builder(&dir).build().unwrap();
        let left = dir.join(format!("{TEMP_PREFIX}12345-0"));
        fs::write(&left, b"half a record").unwrap();
        // Young: may belong to a write in progress.
        store.sweep_expired().unwrap();
        assert!(left.exists());
        let later = SystemTime::now() + TEMP_MAX_AGE + Duration::from_secs(1);
        store.inner.sweep_at(later).unwrap();
        assert!(!left.exists());
    }

    /// At the cap, new-session saves sweep; a sweep that waited for another
    /// key's lock while its own save held one could deadlock with a second
    /// save doing the same (and nothing timed out). Expired files at the
    /// cap, then 64 concurrent new sessions, 20 times: every save answers
    /// (saved, or refused as full) within 5 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn new_sessions_at_the_cap_never_wait_for_each_other() {
        let dir = temp_dir("cap-deadlock");
        let store = FileStore::builder(&dir).max_sessions(50).build().unwrap();
        let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
        for round in 0..20 {
            // 50 files that count against the cap but have expired (what
            // 1-second sessions are two seconds later).
            for i in 0..50 {
                let key = StoreKey::from_raw(format!("old-{round}-{i}"));
                store
                    .save(&key, b"x", past, SaveCondition::Always)
                    .await
                    .unwrap();
            }
            let saves = (0..64).map(|i| {
                let store = store.clone();
                tokio::spawn(async move { save_new(&store, &format!("new-{round}-{i}"), 60).await })
            });
            let all = futures_join_all(saves);
            let results = tokio::time::timeout(Duration::from_secs(5), all)
                .await
                .unwrap_or_else(|_| panic!("round {round}: saves at the cap hung"));
            let saved = results
                .into_iter()
                .map(|r| r.unwrap())
                .filter(|r| match r {
                    Ok(_) => true,
                    Err(e) => {
                        assert!(e.is_unavailable(), "{e:?}");
                        false
                    }
                })
                .count();
            assert!(saved >= 1, "round {round}: the sweep made no room");
            // Clear the round's new sessions.
            for i in 0..64 {
                store
                    .delete(&StoreKey::from_raw(format!("new-{round}-{i}")))
                    .await
                    .unwrap();
            }
            store.sweep_expired().unwrap();
        }
    }

    async fn futures_join_all<T>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<Result<T, tokio::task::JoinError>> {
        let mut out = Vec::new();
        for h in handles.collect::<Vec<_>>() {
            out.push(h.await);
        }
        out
    }
}
