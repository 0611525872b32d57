//! The connection to the gateway.

use std::time::Duration;

use oneword_proto::gateway::v1::gateway_client::GatewayClient;
use oneword_proto::index::v1::collections_client::CollectionsClient;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// How long to wait for the TCP/HTTP2 connection before saying the gateway is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` → `http://host:port`; an address with a scheme stays as it is.
pub fn normalize_address(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// The gateway client: every call carries the API key, when one is given.
pub type Gateway = GatewayClient<InterceptedService<Channel, Bearer>>;

/// The client of the collections the gateway fronts, on the same connection.
pub type Collections = CollectionsClient<InterceptedService<Channel, Bearer>>;

/// A connection to the gateway, and the key its calls carry.
#[derive(Clone, Debug)]
pub struct Connection {
    channel: Channel,
    bearer: Bearer,
}

impl Connection {
    pub fn gateway(&self) -> Gateway {
        // Instruments' answers (attention weights, hidden states, weight matrices) are capped by
        // the decoder at 64 MiB by default; leave room for a raised cap.
        GatewayClient::with_interceptor(self.channel.clone(), self.bearer.clone())
            .max_decoding_message_size(256 << 20)
    }

    pub fn collections(&self) -> Collections {
        CollectionsClient::with_interceptor(self.channel.clone(), self.bearer.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(32 << 20)
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone, Debug)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to the gateway now, so that a gateway that is not running is reported as such
/// before any request is made.
pub async fn connect(address: &str, api_key: Option<&str>) -> Result<Connection, Error> {
    let bearer = match api_key.map(str::trim).filter(|k| !k.is_empty()) {
        None => Bearer(None),
        Some(key) => Bearer(Some(
            format!("Bearer {key}")
                .parse()
                .map_err(|_| Error::BadApiKey)?,
        )),
    };
    let address = normalize_address(address);
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|err| Error::BadAddress {
            address: address.clone(),
            reason: err.to_string(),
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| Error::Connect { address, source })?;
    Ok(Connection { channel, bearer })
}

/// Wraps a message in a request carrying the deadline, if any.
pub fn request<T>(message: T, timeout: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_http() {
        assert_eq!(
            normalize_address("127.0.0.1:50050"),
            "http://127.0.0.1:50050"
        );
        assert_eq!(
            normalize_address(" gateway.oneword:50050 "),
            "http://gateway.oneword:50050"
        );
        assert_eq!(
            normalize_address("http://[::1]:50050"),
            "http://[::1]:50050"
        );
        assert_eq!(
            normalize_address("https://example.org"),
            "https://example.org"
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_address() {
        // Bind and drop a listener to get a local port that refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect(&format!("127.0.0.1:{port}"), None)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Connect { .. }), "{text}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
        assert!(text.contains("make run"), "{text}");
        assert_eq!(err.exit_code(), 1);
    }

    #[tokio::test]
    async fn garbage_address_is_a_bad_address() {
        let err = connect("not an address", None).await.unwrap_err();
        assert!(matches!(err, Error::BadAddress { .. }), "{err}");
    }
}
