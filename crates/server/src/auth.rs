//! API keys → organisation. Every request carries `x-api-key`; the key
//! decides which org it may see. With no keys configured the server runs
//! open, as org `default` (and says so at start-up).

use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Status};

pub const API_KEY_HEADER: &str = "x-api-key";
pub const DEFAULT_ORG: &str = "default";

/// Who is calling: the org every read and write is scoped to, and the actor
/// recorded on events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub org: String,
    pub actor: String,
}

/// The configured keys; empty means open access as [`DEFAULT_ORG`].
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    keys: Arc<HashMap<String, Caller>>,
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
}

/// Whether `org` can name an organisation (it becomes part of log subjects).
pub fn is_valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= 64
        && org.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl ApiKeys {
    /// Parses `ORG:KEY` entries.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<ApiKeys, ApiKeyError> {
        let mut keys = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.as_ref().trim();
            let (org, key) = entry.split_once(':').ok_or_else(|| ApiKeyError::Malformed(entry.to_owned()))?;
            if !is_valid_org(org) {
                return Err(ApiKeyError::BadOrg(org.to_owned()));
            }
            if key.len() < 16 {
                return Err(ApiKeyError::ShortKey(org.to_owned()));
            }
            let caller = Caller { org: org.to_owned(), actor: format!("{org}/key-{}", i + 1) };
            if keys.insert(key.to_owned(), caller).is_some() {
                return Err(ApiKeyError::Duplicate);
            }
        }
        Ok(ApiKeys { keys: Arc::new(keys) })
    }

    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller a request's metadata identifies.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if self.is_open() {
            return Ok(Caller { org: DEFAULT_ORG.to_owned(), actor: "anonymous".to_owned() });
        }
        let key = request
            .metadata()
            .get(API_KEY_HEADER)
            .ok_or_else(|| Status::unauthenticated("missing x-api-key metadata"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("x-api-key is not valid text"))?;
        self.keys.get(key).cloned().ok_or_else(|| Status::unauthenticated("unknown API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_org_and_unknown_keys_are_refused() {
        let keys = ApiKeys::parse(&["acme:0123456789abcdef", "globex:fedcba9876543210"]).unwrap();
        let mut req = Request::new(());
        req.metadata_mut().insert(API_KEY_HEADER, "fedcba9876543210".parse().unwrap());
        assert_eq!(keys.authenticate(&req).unwrap().org, "globex");
        let mut req = Request::new(());
        req.metadata_mut().insert(API_KEY_HEADER, "nope-nope-nope-nope".parse().unwrap());
        assert_eq!(keys.authenticate(&req).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(keys.authenticate(&Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn without_keys_everyone_is_the_default_org() {
        let keys = ApiKeys::default();
        assert_eq!(keys.authenticate(&Request::new(())).unwrap().org, DEFAULT_ORG);
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(ApiKeys::parse(&["nokey"]).is_err());
        assert!(ApiKeys::parse(&["Bad Org:0123456789abcdef"]).is_err());
        assert!(ApiKeys::parse(&["acme:short"]).is_err());
    }
}
