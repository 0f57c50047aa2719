//! A small blocking HTTP client over `wasi:http`, with denials that say what
//! to grant.
//!
//! Every request leaves through the host, which refuses hosts outside the
//! step's grant with `HttpRequestDenied` before anything is sent. Generic
//! clients report that as a connection error; this one keeps the code and
//! reports "denied: HOST not in this step's grant".

use std::fmt;
use std::io::{self, Read, Write};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method,
    OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::InputStream;

use crate::Error;

/// Why a request did not produce a response.
#[derive(Debug)]
pub enum HttpError {
    /// The host refused the request because `host` is not in the step's
    /// grant; nothing was sent.
    Denied {
        /// The `host[:port]` that was refused.
        host: String,
    },
    /// The URL could not be used (no scheme, unsupported scheme, ...).
    InvalidUrl(String),
    /// A header name or value was refused.
    InvalidHeader(String),
    /// The request failed on the way (connection refused, TLS error, ...).
    Transport(String),
    /// The response body could not be read.
    Body(io::Error),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied { host } => write!(f, "denied: {host} not in this step's grant"),
            HttpError::InvalidUrl(message) => write!(f, "invalid URL: {message}"),
            HttpError::InvalidHeader(message) => write!(f, "invalid header: {message}"),
            HttpError::Transport(message) => write!(f, "request failed: {message}"),
            HttpError::Body(error) => write!(f, "reading the response body failed: {error}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Denied { .. } => Error::denied(error.to_string()),
            HttpError::InvalidUrl(_) => Error::invalid_input(error.to_string()),
            _ => Error::failed(error.to_string()),
        }
    }
}

enum Body {
    Empty,
    Bytes(Vec<u8>),
    Reader(Box<dyn Read>),
}

/// An HTTP request being built.
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
}

/// Start a GET request.
pub fn get(url: &str) -> Request {
    Request::new("GET", url)
}

impl Request {
    /// A request with the given method (`GET`, `PUT`, ...).
    pub fn new(method: &str, url: &str) -> Self {
        let method = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        Request {
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Send `bytes` as the body, with its `content-length` (unless a
    /// header already gives one): servers that do not read chunked
    /// uploads, such as Python's `http.server`, then see the body.
    pub fn body(mut self, bytes: Vec<u8>) -> Self {
        self.body = Body::Bytes(bytes);
        self
    }

    /// Stream the body from `reader`; set `content-length` yourself when the
    /// server needs it.
    pub fn body_reader(mut self, reader: impl Read + 'static) -> Self {
        self.body = Body::Reader(Box::new(reader));
        self
    }

    /// Send the request and wait for the response head.
    pub fn send(self) -> Result<Response, HttpError> {
        let started = self.start()?;
        // The server may answer (or the host refuse) before the whole body
        // is written, which closes the body stream: the response, or the
        // reason it failed, is then what to report. Only a failure to read
        // our own body is reported as such.
        let written = write_body(&started.body, started.content);
        if let Err(BodyFailure::Read(error)) = written {
            return Err(HttpError::Body(error));
        }
        if written.is_ok() {
            // A finish refused here shows up in the response as well.
            let _ = OutgoingBody::finish(started.body, None);
        }
        let response =
            wait(&started.pending).map_err(|code| transport_error(code, &started.authority))?;
        Response::new(response)
    }

    /// Hand the request to the host; the body is still to be written.
    fn start(mut self) -> Result<Started, HttpError> {
        let target = Target::parse(&self.url)?;
        if let Body::Bytes(bytes) = &self.body
            && !self
                .headers
                .iter()
                .any(|(name, _)| name == "content-length")
        {
            let length = bytes.len().to_string().into_bytes();
            self.headers.push(("content-length".into(), length));
        }
        let fields = Fields::from_list(&self.headers)
            .map_err(|e| HttpError::InvalidHeader(format!("{e:?}")))?;
        let request = OutgoingRequest::new(fields);
        let invalid = |what: &str| HttpError::InvalidUrl(format!("{what} in {}", self.url));
        request
            .set_method(&self.method)
            .map_err(|()| invalid("bad method"))?;
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| invalid("bad scheme"))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid("bad host"))?;
        request
            .set_path_with_query(Some(&target.path))
            .map_err(|()| invalid("bad path"))?;
        let body = request.body().expect("a new request's body is taken once");
        let pending = outgoing_handler::handle(request, None)
            .map_err(|code| transport_error(code, &target.authority))?;
        Ok(Started {
            pending,
            body,
            content: self.body,
            authority: target.authority,
        })
    }
}

/// A request the host has taken, whose body is still to be written.
struct Started {
    pending: FutureIncomingResponse,
    body: OutgoingBody,
    content: Body,
    authority: String,
}

/// Send `requests` with at most `limit` in flight at once, streaming their
/// bodies side by side, and return their results in order.
///
/// A plugin runs on one thread; this is how it keeps several uploads
/// moving: it waits on every body stream and response at once and feeds
/// whichever is ready.
pub fn send_all(requests: Vec<Request>, limit: usize) -> Vec<Result<Response, HttpError>> {
    let mut results: Vec<Option<Result<Response, HttpError>>> =
        requests.iter().map(|_| None).collect();
    let mut queue = requests.into_iter().enumerate();
    let mut flying: Vec<InFlight> = Vec::new();
    loop {
        while flying.len() < limit.max(1) {
            let Some((index, request)) = queue.next() else {
                break;
            };
            match request
                .start()
                .and_then(|started| InFlight::new(index, started))
            {
                Ok(in_flight) => flying.push(in_flight),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        if flying.is_empty() {
            break;
        }
        let pollables: Vec<wasip2::io::poll::Pollable> =
            flying.iter().map(InFlight::subscribe).collect();
        let refs: Vec<&wasip2::io::poll::Pollable> = pollables.iter().collect();
        let ready = wasip2::io::poll::poll(&refs);
        drop(pollables);
        let mut done = Vec::new();
        for position in ready {
            let position = position as usize;
            if let Some(result) = flying[position].advance() {
                done.push((position, result));
            }
        }
        done.sort_by_key(|(position, _)| std::cmp::Reverse(*position));
        for (position, result) in done {
            let in_flight = flying.remove(position);
            results[in_flight.index] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every request finished"))
        .collect()
}

/// One request of [`send_all`] in progress.
struct InFlight {
    index: usize,
    pending: FutureIncomingResponse,
    authority: String,
    /// The body still being written.
    writing: Option<BodyWriter>,
}

/// A request body being written without blocking. Field order matters:
/// WASI requires the stream to be dropped before its body.
struct BodyWriter {
    stream: wasip2::io::streams::OutputStream,
    body: OutgoingBody,
    reader: Box<dyn Read>,
    /// Bytes read but not yet accepted by the stream.
    buffer: Vec<u8>,
}

impl InFlight {
    fn new(index: usize, started: Started) -> Result<InFlight, HttpError> {
        let reader: Option<Box<dyn Read>> = match started.content {
            Body::Empty => None,
            Body::Bytes(bytes) => Some(Box::new(io::Cursor::new(bytes))),
            Body::Reader(reader) => Some(reader),
        };
        let writing = match reader {
            Some(reader) => {
                let stream = started
                    .body
                    .write()
                    .expect("the body's stream is taken once");
                Some(BodyWriter {
                    stream,
                    body: started.body,
                    reader,
                    buffer: Vec::new(),
                })
            }
            None => {
                let _ = OutgoingBody::finish(started.body, None);
                None
            }
        };
        Ok(InFlight {
            index,
            pending: started.pending,
            authority: started.authority,
            writing,
        })
    }

    fn subscribe(&self) -> wasip2::io::poll::Pollable {
        match &self.writing {
            Some(writer) => writer.stream.subscribe(),
            None => self.pending.subscribe(),
        }
    }

    /// Make progress; `Some` when the request is finished.
    fn advance(&mut self) -> Option<Result<Response, HttpError>> {
        if let Some(BodyWriter {
            stream,
            reader,
            buffer,
            ..
        }) = &mut self.writing
        {
            let outcome = (|| -> Result<bool, BodyFailure> {
                let room = stream.check_write().map_err(|_| BodyFailure::Closed)? as usize;
                if room == 0 {
                    return Ok(false);
                }
                if buffer.is_empty() {
                    buffer.resize(room.min(1 << 20), 0);
                    let n = loop {
                        match reader.read(buffer) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(BodyFailure::Read(e)),
                        }
                    };
                    buffer.truncate(n);
                    if n == 0 {
                        return Ok(true);
                    }
                }
                let n = buffer.len().min(room);
                stream
                    .write(&buffer[..n])
                    .map_err(|_| BodyFailure::Closed)?;
                buffer.drain(..n);
                Ok(false)
            })();
            match outcome {
                Ok(false) => return None,
                Err(BodyFailure::Read(error)) => return Some(Err(HttpError::Body(error))),
                Ok(true) => {
                    let writer = self.writing.take().expect("checked above");
                    drop(writer.stream);
                    let _ = OutgoingBody::finish(writer.body, None);
                }
                // The server answered early or the host refused: the
                // response says which.
                Err(BodyFailure::Closed) => {
                    self.writing = None;
                }
            }
            return None;
        }
        match self.pending.get() {
            None => None,
            Some(Ok(Ok(response))) => Some(Response::new(response)),
            Some(Ok(Err(code))) => Some(Err(transport_error(code, &self.authority))),
            Some(Err(())) => unreachable!("a response is taken once"),
        }
    }
}

/// Why a body was not fully written.
enum BodyFailure {
    /// Reading our own content failed.
    Read(io::Error),
    /// The request stream closed (the server answered, or the host refused).
    Closed,
}

fn write_body(body: &OutgoingBody, content: Body) -> Result<(), BodyFailure> {
    let mut reader: Box<dyn Read> = match content {
        Body::Empty => return Ok(()),
        Body::Bytes(bytes) => Box::new(io::Cursor::new(bytes)),
        Body::Reader(reader) => reader,
    };
    let mut stream = body.write().expect("the body's stream is taken once");
    // The host accepts writes of up to 1 MiB.
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BodyFailure::Read(e)),
        };
        stream
            .write_all(&buffer[..n])
            .map_err(|_| BodyFailure::Closed)?;
    }
    Write::flush(&mut stream).map_err(|_| BodyFailure::Closed)
}

fn wait(pending: &FutureIncomingResponse) -> Result<IncomingResponse, ErrorCode> {
    loop {
        match pending.get() {
            Some(Ok(result)) => return result,
            Some(Err(())) => unreachable!("a response is taken once"),
            None => pending.subscribe().block(),
        }
    }
}

fn transport_error(code: ErrorCode, authority: &str) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied {
            host: authority.to_owned(),
        },
        ErrorCode::ConnectionRefused => {
            HttpError::Transport(format!("connection to {authority} refused"))
        }
        other => HttpError::Transport(format!("{authority}: {}", describe(&other))),
    }
}

/// What a `wasi:http` error code means, in words a user acts on (the
/// generated type only has Debug, which reads like a stack dump).
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::DnsTimeout => "the name lookup timed out".into(),
        ErrorCode::DnsError(payload) => match &payload.rcode {
            Some(rcode) => format!("the host name does not resolve ({rcode})"),
            None => "the host name does not resolve".into(),
        },
        ErrorCode::DestinationNotFound => "no such host".into(),
        ErrorCode::DestinationUnavailable => "the host is unavailable".into(),
        ErrorCode::DestinationIpProhibited => "its address is not allowed".into(),
        ErrorCode::DestinationIpUnroutable => "its address is unreachable".into(),
        ErrorCode::ConnectionTerminated => "the connection was closed".into(),
        ErrorCode::ConnectionTimeout => "connecting timed out".into(),
        ErrorCode::ConnectionReadTimeout => "reading the response timed out".into(),
        ErrorCode::ConnectionWriteTimeout => "sending the request timed out".into(),
        ErrorCode::TlsProtocolError => {
            "TLS failed (is it an HTTP-only server? then use --insecure)".into()
        }
        ErrorCode::TlsCertificateError => "its TLS certificate is not trusted".into(),
        ErrorCode::HttpResponseTimeout => "no response in time".into(),
        ErrorCode::HttpProtocolError => "the server broke the HTTP protocol".into(),
        ErrorCode::HttpResponseIncomplete => "the response ended early".into(),
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}")
            .split(['(', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The parts of a URL that `wasi:http` takes separately.
struct Target {
    scheme: Scheme,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            HttpError::InvalidUrl(format!("{url} has no scheme (http:// or https://)"))
        })?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(HttpError::InvalidUrl(format!(
                    "{url}: scheme {other} is not http or https"
                )));
            }
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(HttpError::InvalidUrl(format!("{url} has no host")));
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Target {
            scheme,
            authority: authority.to_owned(),
            path,
        })
    }
}

/// A response whose head has arrived; the body is read on demand.
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: BodyReader,
}

impl Response {
    fn new(response: IncomingResponse) -> Result<Self, HttpError> {
        let status = response.status();
        let headers = response.headers().entries();
        let body = response
            .consume()
            .map_err(|()| HttpError::Transport("response body already taken".into()))?;
        let stream = body
            .stream()
            .map_err(|()| HttpError::Transport("response body stream already taken".into()))?;
        Ok(Response {
            status,
            headers,
            body: BodyReader {
                stream: Some(stream),
                _body: Some(body),
                _response: response,
            },
        })
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Every header, in the order received.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body as a stream.
    pub fn body_reader(&mut self) -> &mut impl Read {
        &mut self.body
    }

    /// Read the whole body, refusing more than `limit` bytes so a hostile
    /// server cannot exhaust the plugin's memory.
    pub fn bytes(mut self, limit: u64) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        (&mut self.body)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(HttpError::Body)?;
        if out.len() as u64 > limit {
            return Err(HttpError::Body(io::Error::other(format!(
                "response body larger than {limit} bytes"
            ))));
        }
        Ok(out)
    }

    /// Read the whole body as UTF-8 text, at most `limit` bytes.
    pub fn text(self, limit: u64) -> Result<String, HttpError> {
        String::from_utf8(self.bytes(limit)?)
            .map_err(|e| HttpError::Body(io::Error::new(io::ErrorKind::InvalidData, e)))
    }
}

/// Reads a response body. Field order matters: WASI requires the stream to
/// be dropped before its body, and the body before its response.
struct BodyReader {
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Some(stream) => stream.read(buf),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls_into_wasi_parts() {
        let t = Target::parse("http://127.0.0.1:5000/v2/?x=1").unwrap();
        assert_eq!(t.authority, "127.0.0.1:5000");
        assert_eq!(t.path, "/v2/?x=1");
        let t = Target::parse("https://example.com").unwrap();
        assert_eq!(t.path, "/");
        let t = Target::parse("https://example.com?q").unwrap();
        assert_eq!(t.path, "/?q");
        assert!(Target::parse("example.com/x").is_err());
        assert!(Target::parse("ftp://example.com/x").is_err());
        assert!(Target::parse("http:///x").is_err());
    }
}
