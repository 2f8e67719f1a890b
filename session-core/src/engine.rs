//! The engine of one configured session: its configuration, its clock and
//! the lanes its saves wait in. Built by [`crate::SessionManager`]; loading
//! ([`crate::load`]) and finishing ([`crate::save`]) are its methods, so a
//! request's path through them carries one `&Engine` instead of the
//! configuration, the store and the clock apart.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::{SessionConfig, Storage};
use crate::lanes::SaveLanes;
use crate::members::Members;
use crate::store::Store;

/// A source of the current time; replaceable in tests
/// ([`crate::SessionManager::with_clock`]).
#[derive(Clone)]
pub(crate) struct Clock(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

impl Clock {
    pub(crate) fn new(now: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(OffsetDateTime::now_utc)
    }
}

/// One session's runtime: the configuration it was built from (a plain
/// value), the clock, and the save lanes (runtime state of this engine
/// alone: two managers never share lanes).
pub(crate) struct Engine {
    pub(crate) config: SessionConfig,
    clock: Clock,
    pub(crate) lanes: SaveLanes,
    /// What the user index said of signed-in sessions lately.
    pub(crate) members: Members,
    /// Whether its sessions can sign in (a user index is configured): only
    /// then is a request's `User-Agent` read.
    pub(crate) keeps_users: bool,
}

impl Engine {
    pub(crate) fn new(config: SessionConfig, clock: Clock) -> Self {
        let mut engine = Engine {
            config,
            clock,
            lanes: SaveLanes::default(),
            members: Members::default(),
            keeps_users: false,
        };
        engine.keeps_users = engine.users().is_ok();
        engine
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The server-side store, for a session that lives in one.
    pub(crate) fn store(&self) -> Option<&dyn Store> {
        match &self.config.storage {
            Storage::Cookie => None,
            Storage::Server(store) => Some(store.as_ref()),
        }
    }
}

impl AsRef<SessionConfig> for Engine {
    fn as_ref(&self) -> &SessionConfig {
        &self.config
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}
