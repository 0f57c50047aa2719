//! The HTTP(S) forward proxy through which a `RUN` command reaches the
//! network.
//!
//! A `RUN` command runs natively with no network of its own; when its
//! step's grant names hosts, `http_proxy` and `https_proxy` point at a
//! [`Proxy`], the only thing it can reach. Every target is decided by the
//! step's [`OutboundHttp`], so a command reaches exactly what a plugin of
//! the same step could through `wasi:http`: hosts granted by name as named
//! (loopback and private addresses included), any other host only at the
//! public addresses that were checked, never by a second DNS lookup.
//! Nothing the command is answered widens the grant: a token realm or a
//! redirect it follows is decided like any other target.
//!
//! Two request forms are served, one request per connection: `CONNECT
//! host:port` (a tunnel, for HTTPS) and absolute-form `http://` requests,
//! forwarded in origin form with `Connection: close`. Request headers are
//! never logged: they may carry credentials.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::net::{OutboundHttp, Refusal, Standing, shown_host};
use kiln_grant::split_authority;

/// Longest request line and header section read: a client needs a few
/// KiB; a larger head is an attempt to make kiln buffer without limit.
const MAX_HEAD: usize = 64 * 1024;

/// How long a client may take to send its request line and headers, so a
/// connection that never finishes them does not hold a task forever.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting to the target may take before the client is told
/// `504`, rather than waiting on the system's much longer TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most connections served at once; further clients wait in the listen
/// backlog. Bounds the descriptors a runaway command can make kiln hold.
const MAX_CONNECTIONS: usize = 256;

/// Pause after a failed `accept` (out of descriptors, say), so the loop
/// does not spin while the cause lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a refused client may go on sending before its connection is
/// closed (see [`handle`]).
const LINGER: Duration = Duration::from_secs(2);

/// The answer to an allowed `CONNECT`, after which bytes flow both ways.
const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Headers that concern only the hop between the client and the proxy,
/// never forwarded (`Host` is rewritten from the request target).
const HOP_BY_HOP: &[&str] = &[
    "host",
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "keep-alive",
    "te",
    "upgrade",
];

/// An HTTP(S) forward proxy on 127.0.0.1 that lets a `RUN` command reach
/// exactly the hosts its step may reach.
///
/// It serves on tokio tasks of the runtime it was started on, until it is
/// dropped: then it stops accepting and every open connection is cut, so
/// nothing a step started outlives the step.
pub struct Proxy {
    port: u16,
    refused: Arc<AtomicU64>,
    serving: JoinHandle<()>,
}

impl Proxy {
    /// Start serving on 127.0.0.1, on a port the system chooses (so steps
    /// running side by side never collide); every request is decided by
    /// `policy`, and refusals are logged on its step's log.
    pub async fn start(policy: Arc<OutboundHttp>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let refused = Arc::new(AtomicU64::new(0));
        let serving = tokio::spawn(serve(listener, policy, refused.clone()));
        Ok(Proxy {
            port,
            refused,
            serving,
        })
    }

    /// The port it listens on, for the command's `http_proxy` and
    /// `https_proxy`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many requests were refused so far, for the step's summary: a
    /// command that failed after refusals most likely needs a wider grant.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept loop owns the connections' tasks: aborting it drops
        // their `JoinSet`, which aborts them.
        self.serving.abort();
    }
}

/// Accept connections and serve each on its own task.
async fn serve(listener: TcpListener, policy: Arc<OutboundHttp>, refused: Arc<AtomicU64>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => match accepted {
                Ok((client, _)) => {
                    connections.spawn(handle(client, policy.clone(), refused.clone()));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serve one client connection: one request, then a tunnel or a
/// forwarded exchange, or the proxy's own answer.
async fn handle(mut client: TcpStream, policy: Arc<OutboundHttp>, refused: Arc<AtomicU64>) {
    match open(&mut client, &policy, &refused).await {
        Ok(opened) => {
            // Either side closing or failing ends the exchange; there is
            // nobody left to tell.
            let _ = relay(client, opened).await;
        }
        Err(reply) => {
            let _ = client.write_all(&reply.to_bytes()).await;
            let _ = client.shutdown().await;
            // Closing with unread bytes would reset the connection, and
            // the reset can destroy the answer before the client reads
            // it: read what it still sends until it closes.
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }
}

/// A connection to an allowed target, and what to send each side before
/// bytes are copied both ways.
struct Opened {
    upstream: TcpStream,
    to_client: &'static [u8],
    to_upstream: Vec<u8>,
}

/// Read and decide the client's request and connect to its target.
async fn open(
    client: &mut TcpStream,
    policy: &OutboundHttp,
    refused: &AtomicU64,
) -> Result<Opened, Reply> {
    let (head, early) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(client)).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(Reply::new(
                "408 Request Timeout",
                "the request headers did not arrive in time",
            ));
        }
    };
    let request = Request::parse(&head)?;
    let target = Target::of(&request)?;
    let shown = shown_host(&target.authority());
    let standing = match policy.decide(&target.host, target.port).await {
        Ok(standing) => standing,
        Err(refusal) => {
            refused.fetch_add(1, Ordering::Relaxed);
            policy.log_refusal(&target.authority(), &refusal);
            let why = match refusal {
                Refusal::NotGranted => {
                    format!("{shown} is not in this step's network grant (allow.net)")
                }
                other => format!("{shown} is refused: {other}"),
            };
            return Err(Reply::new("403 Forbidden", &why));
        }
    };
    let upstream = connect(&target.host, target.port, standing)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => Reply::new(
                "504 Gateway Timeout",
                &format!("connecting to {shown} timed out"),
            ),
            _ => Reply::new(
                "502 Bad Gateway",
                &format!("cannot connect to {shown}: {e}"),
            ),
        })?;
    let (to_client, mut to_upstream) = match target.form {
        Form::Tunnel => (ESTABLISHED, Vec::new()),
        Form::Forward { origin, host } => (&[][..], request.forwarded_head(&origin, &host)),
    };
    to_upstream.extend_from_slice(&early);
    Ok(Opened {
        upstream,
        to_client,
        to_upstream,
    })
}

/// Send what each side is owed, then copy bytes both ways until either
/// side closes.
async fn relay(mut client: TcpStream, opened: Opened) -> std::io::Result<()> {
    let Opened {
        mut upstream,
        to_client,
        to_upstream,
    } = opened;
    client.write_all(to_client).await?;
    upstream.write_all(&to_upstream).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Connect to the target as its standing says: by name when it was
/// granted by name, otherwise to exactly the addresses that were checked
/// (a second lookup could answer a loopback address: DNS rebinding).
async fn connect(host: &str, port: u16, standing: Standing) -> std::io::Result<TcpStream> {
    let connecting = async {
        match standing {
            Standing::Named => TcpStream::connect((host, port)).await,
            // Delegation does not apply here: the proxy never widens the
            // grant.
            Standing::Public { addresses, .. } => TcpStream::connect(&addresses[..]).await,
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Read up to the blank line that ends the header section: the head
/// (each line with its CRLF, without the blank line) and whatever the
/// client sent after it.
async fn read_head(client: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), Reply> {
    let ended = || Reply::bad_request("the request ended before its headers did");
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let searched = buffer.len().saturating_sub(3);
        let n = client.read(&mut chunk).await.map_err(|_| ended())?;
        if n == 0 {
            return Err(ended());
        }
        buffer.extend_from_slice(&chunk[..n]);
        let blank = buffer[searched..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| searched + at);
        if blank.unwrap_or(buffer.len()) > MAX_HEAD {
            return Err(Reply::new(
                "431 Request Header Fields Too Large",
                "the request headers are larger than 64 KiB",
            ));
        }
        if let Some(blank) = blank {
            let early = buffer.split_off(blank + 4);
            buffer.truncate(blank + 2);
            return Ok((buffer, early));
        }
    }
}

/// A request head, checked enough that forwarding it cannot smuggle a
/// second request or hide a header from the proxy.
struct Request<'a> {
    method: &'a str,
    target: &'a str,
    version: &'a str,
    /// Each header line as sent (without its CRLF), with its lowercase
    /// name.
    headers: Vec<(String, &'a [u8])>,
}

impl<'a> Request<'a> {
    /// Parse `head` (lines ended by CRLF, without the final blank line).
    fn parse(head: &'a [u8]) -> Result<Request<'a>, Reply> {
        let head = head.strip_suffix(b"\n").unwrap_or(head);
        let mut lines = head.split(|&b| b == b'\n').map(|line| {
            line.strip_suffix(b"\r")
                .filter(|l| !l.contains(&b'\r') && !l.contains(&0))
                .ok_or_else(|| {
                    Reply::bad_request(
                        "request lines must end with CRLF and hold no other CR or NUL",
                    )
                })
        });
        let first = lines
            .next()
            .transpose()?
            .and_then(|l| std::str::from_utf8(l).ok())
            .ok_or_else(|| Reply::bad_request("the request line is not text"))?;
        let malformed = || Reply::bad_request("the request line is not METHOD TARGET VERSION");
        let mut parts = first.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        if method.is_empty() || !method.bytes().all(is_token) || target.is_empty() {
            return Err(malformed());
        }
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return Err(Reply::bad_request("only HTTP/1.0 and HTTP/1.1 are served"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let line = line?;
            let colon = line.iter().position(|&b| b == b':');
            let name = colon.map(|c| &line[..c]).unwrap_or_default();
            // No name, whitespace before the colon, or a folded line: each
            // read differently by different servers.
            if name.is_empty() || !name.iter().copied().all(is_token) {
                return Err(Reply::bad_request("a header line is malformed"));
            }
            headers.push((String::from_utf8_lossy(name).to_ascii_lowercase(), line));
        }
        Ok(Request {
            method,
            target,
            version,
            headers,
        })
    }

    /// The head to send the origin server: the request line in origin
    /// form, `Host` from the request target, no hop-by-hop headers, and
    /// `Connection: close`, so the exchange ends with its one response.
    fn forwarded_head(&self, origin: &str, host: &str) -> Vec<u8> {
        // Headers the client's `Connection` names are hop-by-hop too.
        let named: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| name == "connection")
            .flat_map(|(name, line)| {
                String::from_utf8_lossy(&line[name.len() + 1..])
                    .split(',')
                    .map(|token| token.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut head = format!(
            "{} {origin} {}\r\nHost: {host}\r\n",
            self.method, self.version
        )
        .into_bytes();
        for (name, line) in &self.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && !named.contains(name) {
                head.extend_from_slice(line);
                head.extend_from_slice(b"\r\n");
            }
        }
        head.extend_from_slice(b"Connection: close\r\n\r\n");
        head
    }
}

/// Whether `b` may appear in a method or header name (RFC 9110 `tchar`).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Where a request goes, and how.
struct Target {
    /// Lowercase, IPv6 without brackets.
    host: String,
    port: u16,
    form: Form,
}

/// How a request reaches its target.
enum Form {
    /// `CONNECT`: bytes flow both ways once connected.
    Tunnel,
    /// An absolute-form `http://` request, forwarded in origin form.
    Forward {
        /// Path and query, starting with `/`.
        origin: String,
        /// The URL's authority as the client wrote it, for `Host`.
        host: String,
    },
}

impl Target {
    /// The target of `request`: `host:port` for `CONNECT`, the URL's
    /// authority (port 80 by default) for an `http://` URL.
    fn of(request: &Request<'_>) -> Result<Target, Reply> {
        if request.method.eq_ignore_ascii_case("CONNECT") {
            return match split_authority(request.target) {
                Some((host, Some(port))) => Ok(Target {
                    host,
                    port,
                    form: Form::Tunnel,
                }),
                _ => Err(Reply::bad_request("CONNECT needs a target host:port")),
            };
        }
        let scheme_end = request.target.find("://").unwrap_or(0);
        let (scheme, rest) = request.target.split_at(scheme_end);
        if scheme.eq_ignore_ascii_case("https") {
            return Err(Reply::bad_request(
                "https:// URLs go through CONNECT (set https_proxy, not http_proxy)",
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(Reply::bad_request(
                "this is kiln's proxy: send http://host/path requests or CONNECT host:port",
            ));
        }
        let rest = &rest["://".len()..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (written, path) = rest.split_at(end);
        // User info is not part of the host, and no client puts it in a
        // request line.
        let Some((host, port)) = split_authority(written).filter(|_| !written.contains('@')) else {
            return Err(Reply::bad_request("the URL has no usable host"));
        };
        let origin = match path.split('#').next().unwrap_or_default() {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Ok(Target {
            host,
            port: port.unwrap_or(80),
            form: Form::Forward {
                origin,
                host: written.to_owned(),
            },
        })
    }

    /// `host:port`, as shown in the step's log and the proxy's answers.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The proxy's own answer: a status and a one-line plain-text reason the
/// command prints, after which the connection is closed.
struct Reply {
    status: &'static str,
    body: String,
}

impl Reply {
    fn new(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            body: format!("kiln: {body}"),
        }
    }

    fn bad_request(why: &str) -> Reply {
        Reply::new("400 Bad Request", why)
    }

    fn to_bytes(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}\n",
            self.status,
            self.body.len() + 1,
            self.body
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StepLog;
    use crate::report::{Level, Reporter};
    use kiln_grant::SecretMask;
    use std::sync::Mutex;

    /// The lines a step's log printed.
    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Reporter for Lines {
        fn log(&self, _: &str, _: Level, message: &str, _: &[(String, String)]) {
            self.0.lock().unwrap().push(message.to_owned());
        }
        fn progress(&self, _: &str, _: &str, _: u64, _: Option<u64>) {}
    }

    /// A proxy whose step may reach `granted` by name, and its log.
    async fn proxy_granting(granted: &[String]) -> (Proxy, Arc<Lines>) {
        let lines = Arc::new(Lines::default());
        let log = Arc::new(StepLog::new(
            "run",
            lines.clone(),
            SecretMask::default(),
            4096,
        ));
        let allowed = granted.iter().map(|h| h.parse().unwrap()).collect();
        let policy = OutboundHttp::new(allowed, Vec::new(), log);
        (Proxy::start(Arc::new(policy)).await.unwrap(), lines)
    }

    /// Send `request` to the proxy and read until it closes.
    async fn ask(proxy: &Proxy, request: &[u8]) -> String {
        let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))
            .await
            .unwrap();
        client.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    /// A server that answers one request with the head it received.
    async fn mirror() -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (head, _) = read_head(&mut socket).await.ok().unwrap();
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                head.len()
            )
            .into_bytes();
            answer.extend_from_slice(&head);
            socket.write_all(&answer).await.unwrap();
        });
        (port, server)
    }

    #[tokio::test]
    async fn forwards_absolute_form_in_origin_form() {
        let (port, server) = mirror().await;
        let (proxy, _) = proxy_granting(&[format!("127.0.0.1:{port}")]).await;
        let answer = ask(
            &proxy,
            format!(
                "GET http://127.0.0.1:{port}/simple/pip/?x=1 HTTP/1.1\r\nHost: elsewhere\r\n\
                 Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic c2VjcmV0\r\n\
                 Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nAccept: */*\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        server.await.unwrap();
        let (status, seen) = answer.split_once("\r\n\r\n").unwrap();
        assert!(status.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert_eq!(
            seen,
            format!(
                "GET /simple/pip/?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\
                 Connection: close\r\n"
            )
        );
        assert_eq!(proxy.refused(), 0);
    }

    #[tokio::test]
    async fn tunnels_connect() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (mut from, mut to) = socket.split();
            tokio::io::copy(&mut from, &mut to).await.unwrap();
        });
        let (proxy, _) = proxy_granting(&[format!("127.0.0.1:{port}")]).await;
        let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))
            .await
            .unwrap();
        // Bytes sent right behind the head are not lost.
        client
            .write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nearly").as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0; ESTABLISHED.len() + "early".len()];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, [ESTABLISHED, b"early"].concat());
        client.write_all(b"\x16\x03\x01 ping").await.unwrap();
        let mut echoed = [0; 8];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"\x16\x03\x01 ping");
    }

    #[tokio::test]
    async fn refuses_what_the_grant_does_not_name() {
        let granted = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let other = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let granted = granted.local_addr().unwrap().port();
        let port = other.local_addr().unwrap().port();
        let (proxy, lines) = proxy_granting(&[format!("127.0.0.1:{granted}")]).await;
        for request in [
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
            format!(
                "GET http://127.0.0.1:{port}/ HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n"
            ),
            format!("GET http://localhost:{granted}/ HTTP/1.1\r\n\r\n"),
        ] {
            let answer = ask(&proxy, request.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
            assert!(
                answer.ends_with("is not in this step's network grant (allow.net)\n"),
                "{answer}"
            );
        }
        assert_eq!(proxy.refused(), 3);
        // Nothing reached the ungranted service.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), other.accept())
                .await
                .is_err()
        );
        let lines = lines.0.lock().unwrap();
        assert_eq!(
            *lines,
            [
                format!("denied HTTP request to 127.0.0.1:{port}: not in this step's grant"),
                format!("denied HTTP request to 127.0.0.1:{port}: not in this step's grant"),
                format!("denied HTTP request to localhost:{granted}: not in this step's grant"),
            ]
        );
    }

    #[tokio::test]
    async fn answers_malformed_requests_with_400() {
        let (proxy, lines) = proxy_granting(&["127.0.0.1".to_owned()]).await;
        for request in [
            &b"hello\r\n\r\n"[..],
            b"GET /index.html HTTP/1.1\r\n\r\n",
            b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",
            b"GET http://127.0.0.1/ HTTP/2\r\n\r\n",
            b"GET http://127.0.0.1/ HTTP/1.1\r\nX: 1\nY: 2\r\n\r\n",
            b"GET http://127.0.0.1/ HTTP/1.1\r\n folded\r\n\r\n",
            b"GET http://127.0.0.1/ HTTP/1.1\r\nBad Name: 1\r\n\r\n",
            b"GET http://u@127.0.0.1/ HTTP/1.1\r\n\r\n",
            b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
        ] {
            let answer = ask(&proxy, request).await;
            assert!(
                answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{}: {answer}",
                String::from_utf8_lossy(request)
            );
        }
        let huge = format!(
            "GET http://127.0.0.1/ HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(70_000)
        );
        let answer = ask(&proxy, huge.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert_eq!(proxy.refused(), 0);
        assert!(lines.0.lock().unwrap().is_empty());
    }
}
