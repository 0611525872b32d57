//! The internal services' shared secret. The tokenizer, embedder, decoder, baseline and index
//! serve their own API only to callers that send it in the [`HEADER`] (the gateway, and the
//! index calling the embedder), so that a pod which merely reaches their ports cannot open
//! decoder sessions or read the vocabulary. Health and reflection stay open for probes and
//! grpcurl, and the metrics port is another socket. Empty = no check, for local development.
//!
//! A comma-separated list rotates the secret without a refused call: servers accept every token
//! listed, callers send the first. Roll out `old,new`, then `new,old`, then `new`; at every
//! moment of each rollout, whatever a caller sends, its server accepts.

use std::str::FromStr;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};

/// The metadata header that carries the token.
pub const HEADER: &str = "x-oneword-service-token";

/// The message of a refused call; it never repeats what the caller sent.
pub const REFUSED: &str =
    "missing or wrong service token: internal services answer only calls that carry the header \
     `x-oneword-service-token` with the token they share (`--service-token`)";

/// The accepted tokens, the first of which is sent, or none (no check). Its `Debug` never shows
/// them, so logging a configuration is safe.
#[derive(Clone, Default)]
pub struct ServiceToken(Arc<[Box<str>]>);

impl ServiceToken {
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether a call carrying `given` (the header's value, if any) may pass.
    pub fn allows(&self, given: Option<&[u8]>) -> bool {
        if !self.is_set() {
            return true;
        }
        let Some(given) = given else { return false };
        // `subtle` takes the same time wherever the first difference is (a length mismatch
        // answers at once: a token's length is not the secret), and every token is compared.
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, token| {
                any | given.ct_eq(token.as_bytes())
            })
            .into()
    }

    /// The header value outgoing calls carry (the first token), marked sensitive so that
    /// HTTP/2 never puts it in its header compression tables and `Debug` never prints it.
    pub fn header_value(&self) -> Option<MetadataValue<Ascii>> {
        let token: &str = self.0.first()?;
        let mut value = MetadataValue::try_from(token)
            .expect("tokens are checked to be printable ASCII when parsed; this is a bug");
        value.set_sensitive(true);
        Some(value)
    }
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_set() { "<set>" } else { "<none>" })
    }
}

/// Why a string cannot be a token (the string itself is not repeated).
#[derive(Debug, thiserror::Error)]
#[error("`service_token` must be printable ASCII without spaces (such as `openssl rand -hex 32` prints); the value given is not shown")]
pub struct InvalidToken;

impl FromStr for ServiceToken {
    type Err = InvalidToken;

    fn from_str(s: &str) -> Result<Self, InvalidToken> {
        let tokens = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|token| match token.bytes().all(|b| b.is_ascii_graphic()) {
                true => Ok(token.into()),
                false => Err(InvalidToken),
            })
            .collect::<Result<_, _>>()?;
        Ok(ServiceToken(tokens))
    }
}

/// The clap parser of `--service-token`: clap's own error would quote the value, a secret.
#[derive(Clone, Copy, Debug)]
pub struct Parser;

impl clap::builder::TypedValueParser for Parser {
    type Value = ServiceToken;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<ServiceToken, clap::Error> {
        value
            .to_str()
            .ok_or(InvalidToken)
            .and_then(str::parse)
            .map_err(|e| {
                clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
                    .with_cmd(cmd)
            })
    }
}

/// A tonic interceptor refusing calls without the token with UNAUTHENTICATED; with no token it
/// lets every call pass.
#[derive(Clone, Debug, Default)]
pub struct RequireServiceToken(pub ServiceToken);

impl tonic::service::Interceptor for RequireServiceToken {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let given = request.metadata().get(HEADER).map(|v| v.as_bytes());
        if self.0.allows(given) {
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
    fn only_the_same_token_passes() {
        let token: ServiceToken = " s3cret\n".parse().unwrap();
        assert!(token.allows(Some(b"s3cret")));
        assert!(!token.allows(Some(b"s3cre")));
        assert!(!token.allows(Some(b"s3crets")));
        assert!(!token.allows(Some(b"")));
        assert!(!token.allows(None));
        assert_eq!(format!("{token:?}"), "<set>");
        assert_eq!(token.header_value().unwrap().to_str().unwrap(), "s3cret");
        let none: ServiceToken = "".parse().unwrap();
        assert!(none.allows(None) && !none.is_set() && none.header_value().is_none());
    }

    #[test]
    fn during_a_rotation_every_listed_token_passes_and_the_first_is_sent() {
        let rotating: ServiceToken = "new, old".parse().unwrap();
        assert!(rotating.allows(Some(b"new")) && rotating.allows(Some(b"old")));
        assert!(!rotating.allows(Some(b"new,old")) && !rotating.allows(None));
        assert_eq!(rotating.header_value().unwrap().to_str().unwrap(), "new");
        // Each step of `old,new` → `new,old` → `new` accepts what the step before it sends.
        let steps: Vec<ServiceToken> = ["old", "old,new", "new,old", "new"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for pair in steps.windows(2) {
            for (caller, server) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
                let sent = caller.header_value().unwrap();
                assert!(server.allows(Some(sent.as_bytes())));
            }
        }
    }

    #[test]
    fn a_token_that_cannot_travel_as_ascii_metadata_is_refused_without_repeating_it() {
        for bad in ["two words", "caf\u{e9}", "tab\there"] {
            let error = bad.parse::<ServiceToken>().unwrap_err().to_string();
            assert!(!error.contains(bad), "{error}");
        }
        let command = clap::Command::new("service").arg(
            clap::Arg::new("service-token")
                .long("service-token")
                .value_parser(Parser),
        );
        let error = command
            .try_get_matches_from(["service", "--service-token", "my secret"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("printable ASCII") && !error.contains("secret"),
            "{error}"
        );
    }
}
