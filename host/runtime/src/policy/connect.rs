//! Sending a request to addresses the policy has already checked.
//!
//! A host reachable only on public addresses (a `*.suffix` grant, a
//! redirect target, a registry an untrusted Dockerfile names) is resolved
//! once by [`super::net::check`]; connecting by name afterwards would
//! resolve it again and let a DNS answer that changed in between (DNS
//! rebinding) reach a loopback or private service. This module connects
//! to exactly the addresses that were checked, and still speaks TLS to the
//! host *name*, so certificates are verified as usual.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// What a sent request gives back: the response, and a future that ends
/// with the connection.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// The timeouts wasmtime's own client uses when the guest sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Send `request` over a connection to the first of `addresses` that
/// accepts one; the URI's host is used only for TLS and the `Host` header.
pub async fn send_to_checked(
    mut request: http::Request<WasiBody>,
    addresses: &[SocketAddr],
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);

    let mut last_error = None;
    let mut stream = None;
    for address in addresses {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(connected)) => {
                stream = Some(connected);
                break;
            }
            Ok(Err(e)) => last_error = Some(Error::Connect(e)),
            Err(_) => last_error = Some(Error::ConnectionTimeout),
        }
    }
    let Some(stream) = stream else {
        return Err(last_error.unwrap_or(Error::ConnectionRefused));
    };

    // The origin-form target: the connection already names the server.
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = target.parse().map_err(|_| Error::HttpRequestUriInvalid)?;

    let (response, connection) = if uri.scheme() == Some(&Scheme::HTTPS) {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(Error::Tls)?;
        exchange(request, tls, connect_timeout, first_byte_timeout).await?
    } else {
        exchange(request, stream, connect_timeout, first_byte_timeout).await?
    };
    Ok((response, connection))
}

/// HTTP/1.1 over `stream`: handshake, send, and hand back the response
/// while a task drives the connection.
async fn exchange<S>(
    request: http::Request<WasiBody>,
    stream: S,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
) -> Result<Sent, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let driver = tokio::spawn(connection);
    let response =
        match tokio::time::timeout(first_byte_timeout, sender.send_request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                driver.abort();
                return Err(e.into());
            }
            Err(_) => {
                driver.abort();
                return Err(Error::ConnectionReadTimeout);
            }
        };
    let done = async move {
        match driver.await {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
        }
    };
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        Box::new(done),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The request goes to the checked address even though the URL names
    /// a host that resolves elsewhere (here: nowhere at all).
    #[tokio::test]
    async fn connects_to_the_checked_address_not_the_name() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let n = socket.read(&mut request).unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            request
        });
        let body = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::get("http://rebinding.invalid:1/v2/")
            .header(http::header::HOST, "rebinding.invalid:1")
            .body(body)
            .unwrap();
        let (response, _io) = send_to_checked(request, &[address], None).await.unwrap();
        assert_eq!(response.status(), 200);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"ok");
        let seen = server.join().unwrap();
        assert!(seen.starts_with("GET /v2/ HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_ascii_lowercase()
                .contains("host: rebinding.invalid:1")
        );
    }
}
