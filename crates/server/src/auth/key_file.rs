//! The API key file: one JSON document holding, per key, its id, org, name,
//! role, times and the SHA-256 digest of the secret — never the secret.
//! `segmentd keys create|list|revoke` edit it; servers read it at start and
//! again whenever it changes.
//!
//! Why SHA-256 and not a password hash (argon2, bcrypt): a key is
//! `sgd_<id>_<secret>` with 256 random bits of secret, generated here, never
//! chosen by a person. A slow hash protects low-entropy passwords against
//! guessing; against 2²⁵⁶ candidates a fast hash is just as safe, and it
//! keeps checking a key on every request at a microsecond. The key id is a
//! lookup handle (shown by `list`, used by `revoke`), not a secret; the
//! digest comparison is constant-time.
//!
//! Edits take an exclusive lock on `<file>.lock` and replace the file
//! atomically (write a temporary file, fsync, rename), so concurrent
//! `keys` commands lose no key and a server never reads half a file.
//!
//! **Must not depend on** the gRPC services: file format and edits only.

use super::{Digest32, Role, is_valid_org, sha256};
use segmentd_domain::Timestamp;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What the file's `format` field must say.
pub const FORMAT: &str = "segmentd-api-keys/1";
/// The file's name under a data directory.
pub const DEFAULT_FILE_NAME: &str = "api-keys.json";

const KEY_PREFIX: &str = "sgd_";
const ID_HEX: usize = 16;
const SECRET_BYTES: usize = 32;

/// The whole file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyFile {
    pub format: String,
    pub keys: Vec<KeyRecord>,
}

/// One key, as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub org: String,
    pub name: String,
    pub role: Role,
    /// Lowercase hex of SHA-256 over the whole key string.
    pub sha256: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A key just created: its record and the secret, which exists nowhere
/// else — the caller shows it once.
#[derive(Debug)]
pub struct NewKey {
    pub record: KeyRecord,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a segmentd key file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("organisation {0:?}: use 1 to 64 lowercase letters, digits, '_' or '-'")]
    BadOrg(String),
    #[error("key name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadName(String),
    #[error("organisation {org:?} already has an active key named {name:?}")]
    NameTaken { org: String, name: String },
    #[error("no key {0:?} (give a key id, or ORG/NAME)")]
    NoSuchKey(String),
    #[error("key {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error("the system's random source failed: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.to_owned(), source }
}

/// The key id inside a presented key, if it has the shape of one.
pub(crate) fn key_id(presented: &[u8]) -> Option<&str> {
    let rest = std::str::from_utf8(presented).ok()?.strip_prefix(KEY_PREFIX)?;
    let (id, _) = rest.split_once('_')?;
    (id.len() == ID_HEX && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

pub(crate) fn parse_digest(hex: &str) -> Option<Digest32> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn random(n: usize) -> Result<Vec<u8>, KeyFileError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| KeyFileError::Random(e.to_string()))?;
    Ok(buf)
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms).to_string()
}

impl KeyFile {
    /// The file at `path`, or `None` when there is none.
    pub fn load_if_exists(path: &Path) -> Result<Option<KeyFile>, KeyFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let bad = |reason: String| KeyFileError::Format { path: path.to_owned(), reason };
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.format != FORMAT {
            return Err(bad(format!("format is {:?}, expected {FORMAT:?}", file.format)));
        }
        for k in &file.keys {
            if parse_digest(&k.sha256).is_none() || k.id.len() != ID_HEX || !is_valid_org(&k.org) {
                return Err(bad(format!("key {:?} is malformed", k.id)));
            }
        }
        Ok(Some(file))
    }

    /// Adds a new key for `org` with `role`, named `name` (unique among the
    /// org's active keys), and returns it with its secret.
    pub fn create_key(path: &Path, org: &str, name: &str, role: Role) -> Result<NewKey, KeyFileError> {
        if !is_valid_org(org) {
            return Err(KeyFileError::BadOrg(org.to_owned()));
        }
        if !is_valid_name(name) {
            return Err(KeyFileError::BadName(name.to_owned()));
        }
        edit(path, |file| {
            if file.keys.iter().any(|k| k.org == org && k.name == name && k.revoked_at.is_none()) {
                return Err(KeyFileError::NameTaken { org: org.to_owned(), name: name.to_owned() });
            }
            let id = loop {
                let id = to_hex(&random(ID_HEX / 2)?);
                if !file.keys.iter().any(|k| k.id == id) {
                    break id;
                }
            };
            let secret = format!("{KEY_PREFIX}{id}_{}", to_hex(&random(SECRET_BYTES)?));
            let record = KeyRecord {
                id,
                org: org.to_owned(),
                name: name.to_owned(),
                role,
                sha256: to_hex(&sha256(secret.as_bytes())),
                created_at: now(),
                revoked_at: None,
            };
            file.keys.push(record.clone());
            Ok(NewKey { record, secret })
        })
    }

    /// Revokes the key with id `which`, or the active key named `ORG/NAME`.
    /// The record stays (with its revocation time) so the list keeps the
    /// history of who had access.
    pub fn revoke(path: &Path, which: &str) -> Result<KeyRecord, KeyFileError> {
        edit(path, |file| {
            let by_name = which.split_once('/');
            let found = file
                .keys
                .iter_mut()
                .find(|k| match by_name {
                    Some((org, name)) => k.org == org && k.name == name && k.revoked_at.is_none(),
                    None => k.id == which,
                })
                .ok_or_else(|| KeyFileError::NoSuchKey(which.to_owned()))?;
            if found.revoked_at.is_some() {
                return Err(KeyFileError::AlreadyRevoked(which.to_owned()));
            }
            found.revoked_at = Some(now());
            Ok(found.clone())
        })
    }

    /// Every key, active and revoked, in creation order.
    pub fn list(path: &Path) -> Result<Vec<KeyRecord>, KeyFileError> {
        Ok(KeyFile::load_if_exists(path)?.map(|f| f.keys).unwrap_or_default())
    }
}

/// Runs `change` on the file under an exclusive lock and writes the result
/// atomically; nothing is written when `change` fails.
fn edit<T>(path: &Path, change: impl FnOnce(&mut KeyFile) -> Result<T, KeyFileError>) -> Result<T, KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let lock_path = sibling(path, ".lock");
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    let mut file =
        KeyFile::load_if_exists(path)?.unwrap_or_else(|| KeyFile { format: FORMAT.to_owned(), keys: vec![] });
    let out = change(&mut file)?;
    let mut text = serde_json::to_string_pretty(&file)
        .map_err(|e| KeyFileError::Format { path: path.to_owned(), reason: e.to_string() })?;
    text.push('\n');
    let tmp = sibling(path, ".tmp");
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out_file = options.open(&tmp).map_err(io(&tmp))?;
    out_file.write_all(text.as_bytes()).map_err(io(&tmp))?;
    out_file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    drop(lock);
    Ok(out)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ApiKeys, AuthError};

    const READ: &str = "/segments.v1.Queries/ListSegments";
    const WRITE: &str = "/segments.v1.Commands/CreateSegment";

    #[test]
    fn the_file_holds_digests_only_and_keys_work_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_FILE_NAME);
        let keys = ApiKeys::default().with_file(&path).unwrap();
        assert!(keys.is_open(), "no file, no flags: open");

        let analyst = KeyFile::create_key(&path, "acme", "bi-team", Role::Analyst).unwrap();
        let service = KeyFile::create_key(&path, "acme", "crm-sync", Role::Service).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&analyst.secret) && !text.contains(&analyst.secret[KEY_PREFIX.len() + ID_HEX + 1..]));
        assert!(text.contains(&analyst.record.sha256));
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions()) & 0o777,
            0o600
        );

        keys.reload().unwrap();
        assert!(!keys.is_open());
        let caller = keys.authorize(READ, Some(analyst.secret.as_bytes())).unwrap();
        assert_eq!((caller.org.as_str(), caller.actor.as_str()), ("acme", "acme/bi-team"));
        assert!(matches!(
            keys.authorize(WRITE, Some(analyst.secret.as_bytes())),
            Err(AuthError::Denied { role: Role::Analyst, .. })
        ));
        keys.authorize(WRITE, Some(service.secret.as_bytes())).unwrap();

        // A key with a real id but a wrong secret is unknown.
        let mut forged = analyst.secret.clone();
        forged.replace_range(forged.len() - 4.., "0000");
        assert_eq!(keys.authorize(READ, Some(forged.as_bytes())), Err(AuthError::UnknownKey));

        assert!(matches!(
            KeyFile::create_key(&path, "acme", "bi-team", Role::Admin),
            Err(KeyFileError::NameTaken { .. })
        ));
        KeyFile::revoke(&path, "acme/bi-team").unwrap();
        assert!(matches!(KeyFile::revoke(&path, &analyst.record.id), Err(KeyFileError::AlreadyRevoked(_))));
        keys.reload().unwrap();
        assert_eq!(keys.authorize(READ, Some(analyst.secret.as_bytes())), Err(AuthError::UnknownKey));
        keys.authorize(READ, Some(service.secret.as_bytes())).unwrap();

        // The name is free again, and the list keeps the revoked key.
        KeyFile::create_key(&path, "acme", "bi-team", Role::Analyst).unwrap();
        let list = KeyFile::list(&path).unwrap();
        assert_eq!(list.len(), 3);
        assert!(list[0].revoked_at.is_some());
    }

    #[test]
    fn an_empty_key_file_shuts_the_server_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_FILE_NAME);
        let key = KeyFile::create_key(&path, "acme", "only", Role::Admin).unwrap();
        KeyFile::revoke(&path, &key.record.id).unwrap();
        let keys = ApiKeys::default().with_file(&path).unwrap();
        assert!(!keys.is_open(), "a file with no active key lets nobody in");
        assert_eq!(keys.authorize(READ, None), Err(AuthError::MissingKey));

        std::fs::write(&path, "{\"format\":\"something-else\",\"keys\":[]}").unwrap();
        assert!(keys.reload().is_err());
        assert!(!keys.is_open(), "a failed reload keeps the keys in force");
    }

    #[test]
    fn bad_names_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        assert!(matches!(KeyFile::create_key(&path, "Acme", "x", Role::Admin), Err(KeyFileError::BadOrg(_))));
        assert!(matches!(KeyFile::create_key(&path, "acme", "a b", Role::Admin), Err(KeyFileError::BadName(_))));
        assert!(matches!(KeyFile::revoke(&path, "0123456789abcdef"), Err(KeyFileError::NoSuchKey(_))));
        assert!(!path.exists() || KeyFile::list(&path).unwrap().is_empty());
    }

    #[test]
    fn key_ids_are_read_from_well_formed_keys_only() {
        assert_eq!(key_id(b"sgd_0123456789abcdef_ffff"), Some("0123456789abcdef"));
        assert_eq!(key_id(b"sgd_0123_ffff"), None);
        assert_eq!(key_id(b"0123456789abcdef"), None);
        assert_eq!(key_id(b"sgd_\xff"), None);
    }
}
