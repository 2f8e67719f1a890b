//! The per-request state of one session: where it came from, the record as
//! the handler sees it, and the changes the handler made, kept so that a
//! save that loses a compare-and-swap race can replay them on a fresher
//! record. Plain data: [`crate::load`] fills it, handlers change it through
//! [`crate::Session`], [`crate::save`] writes it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use ciborium::Value;
use time::OffsetDateTime;

use crate::codec::Record;
use crate::error::SessionError;
use crate::id::{SessionId, StoreKey};
use crate::index::Binding;
use crate::index::IndexEntry;
use crate::store::Version;

/// What a request knows of one session before loading it: the tokens it
/// carried and the request's span.
pub(crate) struct Context {
    /// Tokens the request carried for this session, in order of appearance.
    pub(crate) candidates: Vec<String>,
    pub(crate) span: tracing::Span,
    /// The request's `User-Agent`, as a sign-in records it.
    pub(crate) user_agent: Option<Arc<str>>,
}

/// What the handler asked to happen to the session as a whole.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    #[default]
    Keep,
    Renew,
    Purge,
}

/// Per-request state of one session.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) loaded: Option<Loaded>,
    /// A load has begun and not ended.
    pub(crate) loading: bool,
    pub(crate) action: Action,
    pub(crate) finished: bool,
    /// A sign-in this request made, recorded in the index at its finish.
    pub(crate) sign_in: Option<PendingSignIn>,
}

impl State {
    pub(crate) fn renew(&mut self) {
        if self.action != Action::Purge {
            self.action = Action::Renew;
        }
        if let Some(l) = &mut self.loaded {
            l.constants_open = true;
        }
    }

    pub(crate) fn purge(&mut self, now: i64, persistent: bool) {
        self.action = Action::Purge;
        self.sign_in = None;
        if let Some(l) = &mut self.loaded {
            l.record = Record {
                created_at: now,
                persistent,
                ..Record::default()
            };
            l.changes.clear();
            l.constants_open = true;
        }
    }
}

/// Where a loaded session came from.
pub(crate) enum Origin {
    /// No valid session came with the request.
    New,
    /// A sealed cookie session.
    Cookie { issued_at: i64, primary: bool },
    /// A server-side session.
    Server(ServerOrigin),
}

/// A server-side session as loaded: everything the save path needs.
#[derive(Clone)]
pub(crate) struct ServerOrigin {
    pub(crate) id: SessionId,
    pub(crate) store_key: StoreKey,
    pub(crate) version: Version,
    pub(crate) store_expires: Option<OffsetDateTime>,
    /// Opened with the primary key (else it moves to it on save).
    pub(crate) primary: bool,
    /// Which of the request's candidate tokens named it.
    pub(crate) token_index: usize,
}

/// A loaded session and this request's changes to it.
pub(crate) struct Loaded {
    pub(crate) record: Record,
    pub(crate) origin: Origin,
    pub(crate) changes: Vec<Change>,
    /// Constant attributes may be set (new or renewed session).
    pub(crate) constants_open: bool,
    /// The user the session was signed in as when loaded, and its index
    /// entry then.
    pub(crate) member: Option<(Binding, IndexEntry)>,
}

impl Loaded {
    pub(crate) fn fresh(now: i64, persistent: bool) -> Self {
        Loaded {
            record: Record {
                created_at: now,
                persistent,
                ..Record::default()
            },
            origin: Origin::New,
            changes: Vec::new(),
            constants_open: true,
            member: None,
        }
    }

    /// Applies a change and remembers it for a merge.
    pub(crate) fn change(&mut self, change: Change) -> Result<(), SessionError> {
        change.apply(&mut self.record)?;
        self.changes.push(change);
        Ok(())
    }

    /// Records an update whose first result, `value`, the caller computed.
    pub(crate) fn update(
        &mut self,
        key: String,
        f: UpdateFn,
        value: Value,
    ) -> Result<(), SessionError> {
        refuse_constant(&self.record, &key)?;
        self.record.values.insert(key.clone(), value);
        self.changes.push(Change::Update(key, f));
        Ok(())
    }

    pub(crate) fn is_new(&self) -> bool {
        matches!(self.origin, Origin::New)
    }

    pub(crate) fn persistence_changed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c, Change::Persistent(_)))
    }
}

/// A replayable read-modify-write of one value (see
/// [`crate::Session::update`]): old value (if any) in, new value out.
pub(crate) type UpdateFn = Arc<dyn Fn(Option<&Value>) -> Result<Value, SessionError> + Send + Sync>;

/// A change made by a request, replayed on a fresher record when a
/// compare-and-swap save finds that another request saved first.
#[derive(Clone)]
pub(crate) enum Change {
    Insert(String, Value),
    /// Computes the new value from the value the record holds when applied,
    /// so a replay on a fresher record builds on the other request's write.
    Update(String, UpdateFn),
    Remove(String),
    Clear,
    Constant(String, Value),
    FlashAdd(String, Value),
    /// Took the first `count` flashes of `kind` (all kinds when `None`).
    FlashTake {
        kind: Option<String>,
        count: usize,
    },
    Persistent(bool),
    /// Signed in as a user (or out, `None`).
    Bind(Option<Binding>),
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values stay out of logs; the kind of change and the key are enough.
        match self {
            Change::Insert(k, _) => write!(f, "Insert({k:?})"),
            Change::Update(k, _) => write!(f, "Update({k:?})"),
            Change::Remove(k) => write!(f, "Remove({k:?})"),
            Change::Clear => f.write_str("Clear"),
            Change::Constant(k, _) => write!(f, "Constant({k:?})"),
            Change::FlashAdd(k, _) => write!(f, "FlashAdd({k:?})"),
            Change::FlashTake { kind, count } => write!(f, "FlashTake({kind:?}, {count})"),
            Change::Persistent(p) => write!(f, "Persistent({p})"),
            Change::Bind(b) => write!(f, "Bind({})", b.is_some()),
        }
    }
}

impl Change {
    /// Applies the change; refuses to change a constant attribute.
    pub(crate) fn apply(&self, record: &mut Record) -> Result<(), SessionError> {
        match self {
            Change::Insert(k, v) => {
                refuse_constant(record, k)?;
                record.values.insert(k.clone(), v.clone());
            }
            Change::Update(k, f) => {
                refuse_constant(record, k)?;
                let new = f(record.values.get(k))?;
                record.values.insert(k.clone(), new);
            }
            Change::Remove(k) => {
                refuse_constant(record, k)?;
                record.values.remove(k);
            }
            Change::Clear => {
                let constants = &record.constants;
                record.values.retain(|k, _| constants.contains(k));
                record.flashes.clear();
            }
            Change::Constant(k, v) => {
                record.values.insert(k.clone(), v.clone());
                record.constants.insert(k.clone());
            }
            Change::FlashAdd(kind, v) => record.flashes.push((kind.clone(), v.clone())),
            Change::FlashTake { kind, count } => {
                let mut left = *count;
                record.flashes.retain(|(k, _)| {
                    let matches = kind.as_ref().is_none_or(|want| want == k);
                    if matches && left > 0 {
                        left -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
            Change::Persistent(p) => record.persistent = *p,
            Change::Bind(b) => record.user = b.clone(),
        }
        Ok(())
    }
}

fn refuse_constant(record: &Record, key: &str) -> Result<(), SessionError> {
    if record.constants.contains(key) {
        Err(SessionError::ConstantAttribute(key.to_owned()))
    } else {
        Ok(())
    }
}

/// A sign-in made by this request, written to the index when the request
/// finishes. (No `Debug`: the metadata is the application's.)
#[derive(Clone)]
pub(crate) struct PendingSignIn {
    pub(crate) binding: Binding,
    pub(crate) metadata: BTreeMap<String, String>,
}
