//! The optional API key: when set, every public call (gRPC and HTTP) must carry
//! `authorization: Bearer <key>`; health, reflection and metrics stay open, since probes and
//! scrapers carry no key.

use std::str::FromStr;
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The key, or none (no check). Its `Debug` never shows it, so logging the configuration is safe.
#[derive(Clone, Default)]
pub struct ApiKey(Option<Arc<str>>);

impl FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim();
        Ok(ApiKey((!key.is_empty()).then(|| key.into())))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "<set>" } else { "<none>" })
    }
}

impl ApiKey {
    /// Whether a call with this `authorization` header value may pass.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(key) = &self.0 else { return true };
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        // `subtle` compares in time independent of where the first difference is (a length
        // mismatch answers at once: a key's length is not the secret).
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(token.trim().as_bytes().ct_eq(key.as_bytes()))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

/// The message of a refused call.
pub const REFUSED: &str = "missing or wrong API key: send the header `authorization: Bearer <key>`";

/// A tonic interceptor refusing calls without the key with UNAUTHENTICATED.
#[derive(Clone)]
pub struct RequireKey(pub ApiKey);

impl tonic::service::Interceptor for RequireKey {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if self.0.allows(header) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(REFUSED))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_key_passes() {
        let key: ApiKey = "s3cret".parse().unwrap();
        assert!(key.allows(Some("Bearer s3cret")));
        assert!(key.allows(Some("bearer s3cret")));
        assert!(!key.allows(Some("Bearer s3cre")));
        assert!(!key.allows(Some("s3cret")));
        assert!(!key.allows(None));
        assert_eq!(format!("{key:?}"), "<set>");
        let none: ApiKey = "".parse().unwrap();
        assert!(none.allows(None) && !none.is_set());
    }
}
