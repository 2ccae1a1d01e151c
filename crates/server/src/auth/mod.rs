//! Who is calling and what they may do. Every request to `segments.v1`
//! carries `x-api-key`; the key decides the organisation every read and
//! write is scoped to, the actor recorded on events, and the role that
//! [`roles`] checks against the RPC being called. With no keys configured
//! the server runs open: everyone is an admin of org `default` (and the
//! server says so at start-up).
//!
//! Keys are held only as SHA-256 digests (see [`key_file`] for why that is
//! enough for random keys) and compared in constant time. [`layer`] checks
//! every request before it reaches a service, so a handler that forgets to
//! authenticate is still covered.
//!
//! **Must not depend on** the services or the read model: this is policy
//! and key handling only.

pub mod key_file;
pub mod layer;
pub mod roles;

pub use key_file::{KeyFile, KeyFileError, KeyRecord, NewKey};
pub use layer::AuthLayer;
pub use roles::Role;

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use subtle::ConstantTimeEq;
use tonic::Request;

pub const API_KEY_HEADER: &str = "x-api-key";
pub const DEFAULT_ORG: &str = "default";

/// Who is calling: the org every read and write is scoped to, and the actor
/// recorded on events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub org: String,
    pub actor: String,
}

/// Why a request was not let in. Mapped to gRPC codes in `crate::status`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing x-api-key metadata")]
    MissingKey,
    #[error("x-api-key is not valid text")]
    KeyNotText,
    #[error("unknown or revoked API key")]
    UnknownKey,
    #[error("role {role} may not call {path}")]
    Denied { role: Role, path: String },
    #[error("the request names no gRPC method")]
    NoMethod,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("API key entry {0:?} is not ORG:KEY")]
    Malformed(String),
    #[error("organisation {0:?}: use 1 to 64 lowercase letters, digits, '_' or '-'")]
    BadOrg(String),
    #[error("API key for {0:?} is shorter than 16 characters")]
    ShortKey(String),
    #[error("the same API key is configured twice")]
    Duplicate,
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// Whether `org` can name an organisation (it becomes part of log subjects).
pub fn is_valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= 64
        && org.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(crate) type Digest32 = [u8; 32];

pub(crate) fn sha256(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// A key the server accepts, as a digest.
#[derive(Clone, Debug)]
struct Accepted {
    digest: Digest32,
    caller: Caller,
    role: Role,
}

/// The keys in force at one moment.
#[derive(Debug, Default)]
struct KeyTable {
    /// `--api-key ORG:KEY` entries (role admin), checked one by one.
    flags: Vec<Accepted>,
    /// The key file's active keys by key id (the id is not secret; the
    /// digest comparison decides).
    by_id: HashMap<String, Accepted>,
    /// Whether a key file exists: then the server is closed even when the
    /// file holds no active key.
    file_present: bool,
}

impl KeyTable {
    fn is_open(&self) -> bool {
        self.flags.is_empty() && !self.file_present
    }

    fn find(&self, presented: &[u8]) -> Option<&Accepted> {
        let digest = sha256(presented);
        if let Some(id) = key_file::key_id(presented)
            && let Some(found) = self.by_id.get(id)
        {
            return bool::from(found.digest.ct_eq(&digest)).then_some(found);
        }
        // Every flag key is compared, in constant time each, so the time
        // taken says nothing about which one (if any) was close.
        let mut hit = None;
        for k in &self.flags {
            if bool::from(k.digest.ct_eq(&digest)) {
                hit = Some(k);
            }
        }
        hit
    }
}

/// The configured keys. Cheap to clone; a clone sees reloads of the key file.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    table: Arc<RwLock<Arc<KeyTable>>>,
    flags: Arc<Vec<Accepted>>,
    file: Option<PathBuf>,
}

/// The caller the auth layer let in, carried to the handler in the
/// request's extensions (clients cannot set extensions).
#[derive(Clone, Debug)]
pub(crate) struct Authorized(pub(crate) Caller);

impl ApiKeys {
    /// Parses `ORG:KEY` entries (each an admin of ORG).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<ApiKeys, ApiKeyError> {
        let mut flags: Vec<Accepted> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.as_ref().trim();
            let (org, key) = entry.split_once(':').ok_or_else(|| ApiKeyError::Malformed(entry.to_owned()))?;
            if !is_valid_org(org) {
                return Err(ApiKeyError::BadOrg(org.to_owned()));
            }
            if key.len() < 16 {
                return Err(ApiKeyError::ShortKey(org.to_owned()));
            }
            let digest = sha256(key.as_bytes());
            if flags.iter().any(|k| k.digest == digest) {
                return Err(ApiKeyError::Duplicate);
            }
            let caller = Caller { org: org.to_owned(), actor: format!("{org}/key-{}", i + 1) };
            flags.push(Accepted { digest, caller, role: Role::Admin });
        }
        let keys = ApiKeys { flags: Arc::new(flags), ..ApiKeys::default() };
        keys.install(KeyFile::default(), false);
        Ok(keys)
    }

    /// These keys plus the keys in `path` (if it exists; it may appear
    /// later, see [`ApiKeys::reload`]).
    pub fn with_file(mut self, path: &Path) -> Result<ApiKeys, ApiKeyError> {
        self.file = Some(path.to_owned());
        self.reload()?;
        Ok(self)
    }

    /// The key file this set follows, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads the key file again (a missing file holds no keys and leaves
    /// the server open unless flag keys exist). On an error the keys in
    /// force stay as they were.
    pub fn reload(&self) -> Result<(), ApiKeyError> {
        let Some(path) = &self.file else { return Ok(()) };
        match KeyFile::load_if_exists(path)? {
            Some(file) => self.install(file, true),
            None => self.install(KeyFile::default(), false),
        }
        Ok(())
    }

    fn install(&self, file: KeyFile, file_present: bool) {
        let by_id = file
            .keys
            .iter()
            .filter(|k| k.revoked_at.is_none())
            .filter_map(|k| {
                let digest = key_file::parse_digest(&k.sha256)?;
                let caller = Caller { org: k.org.clone(), actor: format!("{}/{}", k.org, k.name) };
                Some((k.id.clone(), Accepted { digest, caller, role: k.role }))
            })
            .collect();
        let table = KeyTable { flags: self.flags.to_vec(), by_id, file_present };
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    fn current(&self) -> Arc<KeyTable> {
        Arc::clone(&self.table.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_open(&self) -> bool {
        self.current().is_open()
    }

    /// The number of keys in force.
    pub fn len(&self) -> usize {
        let t = self.current();
        t.flags.len() + t.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The caller behind `key` if its role may call `path` (a full gRPC
    /// method path, `/segments.v1.Service/Method`).
    pub fn authorize(&self, path: &str, key: Option<&[u8]>) -> Result<Caller, AuthError> {
        let table = self.current();
        let (caller, role) = if table.is_open() {
            (Caller { org: DEFAULT_ORG.to_owned(), actor: "anonymous".to_owned() }, Role::Admin)
        } else {
            let key = key.ok_or(AuthError::MissingKey)?;
            if std::str::from_utf8(key).is_err() {
                return Err(AuthError::KeyNotText);
            }
            let found = table.find(key).ok_or(AuthError::UnknownKey)?;
            (found.caller.clone(), found.role)
        };
        if roles::may_call(role, path) { Ok(caller) } else { Err(AuthError::Denied { role, path: path.to_owned() }) }
    }

    /// The caller of a request that reached a handler: the one the auth
    /// layer let in, or — for a service mounted without the layer — checked
    /// here against the method tonic recorded on the request.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, tonic::Status> {
        if let Some(Authorized(caller)) = request.extensions().get::<Authorized>() {
            return Ok(caller.clone());
        }
        let method = request.extensions().get::<tonic::GrpcMethod>().ok_or(AuthError::NoMethod)?;
        let path = format!("/{}/{}", method.service(), method.method());
        let key = request.metadata().get(API_KEY_HEADER).map(|v| v.as_bytes());
        Ok(self.authorize(&path, key)?)
    }
}

/// Re-reads the key file whenever its modification time changes, so that a
/// `segmentd keys revoke` takes effect on a running server within `every`.
pub async fn follow_key_file(keys: ApiKeys, every: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(path) = keys.file().map(Path::to_owned) else { return };
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: Option<SystemTime> = stamp(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        match keys.reload() {
            Ok(()) => {
                seen = now;
                tracing::info!(file = %path.display(), keys = keys.len(), "API keys reloaded");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "API key file unreadable; keeping the keys in force")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = "/segments.v1.Commands/CreateSegment";

    fn ask(keys: &ApiKeys, key: &str) -> Result<Caller, AuthError> {
        keys.authorize(CREATE, Some(key.as_bytes()))
    }

    #[test]
    fn keys_map_to_their_org_and_unknown_keys_are_refused() {
        let keys = ApiKeys::parse(&["acme:0123456789abcdef", "globex:fedcba9876543210"]).unwrap();
        assert_eq!(ask(&keys, "fedcba9876543210").unwrap().org, "globex");
        assert_eq!(ask(&keys, "0123456789abcdef").unwrap().actor, "acme/key-1");
        assert_eq!(ask(&keys, "nope-nope-nope-nope"), Err(AuthError::UnknownKey));
        assert_eq!(keys.authorize(CREATE, None), Err(AuthError::MissingKey));
        assert_eq!(keys.authorize(CREATE, Some(b"\xff\xfe")), Err(AuthError::KeyNotText));
    }

    #[test]
    fn without_keys_everyone_is_the_default_org_but_unknown_rpcs_stay_shut() {
        let keys = ApiKeys::default();
        assert_eq!(keys.authorize(CREATE, None).unwrap().org, DEFAULT_ORG);
        assert!(matches!(keys.authorize("/segments.v1.Commands/Nope", None), Err(AuthError::Denied { .. })));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(ApiKeys::parse(&["nokey"]).is_err());
        assert!(ApiKeys::parse(&["Bad Org:0123456789abcdef"]).is_err());
        assert!(ApiKeys::parse(&["acme:short"]).is_err());
        assert!(matches!(
            ApiKeys::parse(&["acme:0123456789abcdef", "globex:0123456789abcdef"]),
            Err(ApiKeyError::Duplicate)
        ));
    }

    #[test]
    fn a_handler_without_the_layer_checks_the_method_itself() {
        let keys = ApiKeys::parse(&["acme:0123456789abcdef"]).unwrap();
        let mut req = Request::new(());
        req.metadata_mut().insert(API_KEY_HEADER, "0123456789abcdef".parse().unwrap());
        assert_eq!(keys.authenticate(&req).unwrap_err().code(), tonic::Code::PermissionDenied, "no method: refused");
        req.extensions_mut().insert(tonic::GrpcMethod::new("segments.v1.Commands", "CreateSegment"));
        assert_eq!(keys.authenticate(&req).unwrap().org, "acme");
    }
}
