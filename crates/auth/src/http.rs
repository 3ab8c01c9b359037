//! A small HTTP/1 client (hyper-util's legacy client), for the hook and the
//! JWKS URL. Plain `http://` only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::Error;

/// Largest response body read (a JWKS; the hook's body is not read).
#[cfg(feature = "jwt")]
pub(crate) const MAX_BODY: usize = 1 << 20;

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `req` and reads at most `max_body` bytes of the answer, all
    /// within `timeout`.
    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<(StatusCode, Bytes), String> {
        let exchange = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request failed: {}", describe(&e)))?;
            let status = res.status();
            if max_body == 0 {
                return Ok((status, Bytes::new()));
            }
            let body = Limited::new(res.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

/// The error and its causes on one line (hyper-util's top level says only
/// "client error (Connect)").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Parses an `http://` URL of setting `key`.
pub(crate) fn parse_url(key: &str, text: &str) -> Result<Uri, Error> {
    let uri: Uri = text
        .parse()
        .map_err(|e| Error::config(key, format!("not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(Error::config(
                key,
                "https:// is not supported: use http:// to a local service or a TLS-terminating proxy",
            ));
        }
        _ => return Err(Error::config(key, "expected an http:// URL")),
    }
    if uri.authority().is_none() {
        return Err(Error::config(key, "the URL has no host"));
    }
    Ok(uri)
}

/// The URL without user info or query (either may carry a key), for log
/// lines and refusal reasons.
pub(crate) fn shown(uri: &Uri) -> String {
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("http://{}{port}{}", uri.host().unwrap_or(""), uri.path())
}
