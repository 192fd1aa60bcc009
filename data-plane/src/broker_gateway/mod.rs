//! The broker gateway: a Redis endpoint the agent serves to its environments when the platform
//! Redis cannot have a user per environment (ElastiCache, Memorystore and Azure Cache for Redis
//! refuse `ACL SETUSER`). Each environment logs in with its own broker user and password, as it
//! would on a Redis with ACL users; the gateway checks them against the digests the agent
//! keeps in the platform Redis ([`USERS_KEY`]), then relays the environment's commands over a
//! connection of its own to the platform Redis (as its admin, over TLS when the admin URL says
//! so), one upstream connection per environment connection, so blocking pops, transactions
//! and subscriptions work as on Redis itself.
//!
//! Every command is checked first ([`rules`]): only what Celery's Redis transport uses, every
//! key and channel under the environment's own prefix, nothing keyspace-wide, no scripts, no
//! admin commands. A refused command gets an error in its place among the replies, in order.
//! Connections per environment are bounded ([`MAX_CONNECTIONS_PER_USER`]), as is a frame
//! ([`resp::MAX_FRAME_BYTES`]); a connection whose user is removed (or whose password changes)
//! is closed within [`RECHECK`].

pub mod resp;
pub mod rules;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::{BrokerUser, RedisTls};
use resp::{command_args, error_reply, take_frame};
use rules::Verdict;

/// The hash in the platform Redis that maps each environment's broker user to the SHA-256 of
/// its password (the digest Redis's own ACL keeps). No environment's prefix can name it.
pub const USERS_KEY: &str = "hangar:broker-users";
/// The port the gateway listens on by default.
pub const DEFAULT_PORT: u16 = 9471;
/// Connections one environment may hold at once (a Celery worker holds a handful).
pub const MAX_CONNECTIONS_PER_USER: usize = 256;
/// How often a connection's user is looked up again.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Commands (or subscriptions) one connection may have sent and not had answered yet.
const MAX_IN_FLIGHT: usize = 4096;
/// How long a connection may take to log in, and how much it may send before it has.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_LOGIN_BYTES: usize = 64 * 1024;

/// The digest of a broker password as [`USERS_KEY`] holds it.
pub fn password_digest(password: &SecretString) -> String {
    let digest = Sha256::digest(password.expose_secret().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The environment a broker user name belongs to (`env-<id>`), if it names one.
fn environment_of(username: &[u8]) -> Option<Uuid> {
    let id = std::str::from_utf8(username).ok()?.strip_prefix("env-")?;
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    Uuid::try_parse(id).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the platform Redis URL is not valid (redis://user:password@host:port/db)")]
    Url,
    #[error("failed to reach the platform Redis")]
    Connect(#[source] std::io::Error),
    #[error("the platform Redis refused the gateway's login: {0}")]
    Login(String),
    #[error("failed to reach the platform Redis as its admin")]
    Admin(#[source] redis::RedisError),
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
type Upstream = Pin<Box<dyn Stream>>;

/// How the gateway reaches the platform Redis: the agent's admin URL.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    tls: RedisTls,
    username: Option<String>,
    password: Option<SecretString>,
    db: u32,
}

impl Target {
    fn parse(admin_url: &SecretString) -> Result<Self, GatewayError> {
        let url = url::Url::parse(admin_url.expose_secret()).map_err(|_| GatewayError::Url)?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| GatewayError::Url)
        };
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url
            .password()
            .map(decode)
            .transpose()?
            .map(SecretString::from);
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            d => d.parse().map_err(|_| GatewayError::Url)?,
        };
        Ok(Self {
            host: url.host_str().ok_or(GatewayError::Url)?.to_owned(),
            port: url.port().unwrap_or(6379),
            tls: RedisTls::of_url(admin_url.expose_secret()),
            username,
            password,
            db,
        })
    }

    /// A new connection, logged in and on the admin URL's database.
    async fn connect(&self) -> Result<(Upstream, BytesMut), GatewayError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(GatewayError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Upstream = match self.tls {
            RedisTls::Off => Box::pin(tcp),
            tls => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|_| GatewayError::Url)?;
                let connector = tokio_rustls::TlsConnector::from(tls_config(tls));
                Box::pin(
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(GatewayError::Connect)?,
                )
            }
        };
        let mut login: Vec<Vec<u8>> = Vec::new();
        if let Some(password) = &self.password {
            let mut auth = vec![b"AUTH".to_vec()];
            if let Some(user) = &self.username {
                auth.push(user.as_bytes().to_vec());
            }
            auth.push(password.expose_secret().as_bytes().to_vec());
            login.push(resp::encode_command(
                &auth.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            ));
        }
        if self.db != 0 {
            login.push(resp::encode_command(&[
                b"SELECT",
                self.db.to_string().as_bytes(),
            ]));
        }
        let mut buf = BytesMut::new();
        for command in login {
            stream
                .write_all(&command)
                .await
                .map_err(GatewayError::Connect)?;
            let reply = loop {
                if let Some(f) =
                    take_frame(&mut buf).map_err(|e| GatewayError::Login(e.to_string()))?
                {
                    break f;
                }
                if stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(GatewayError::Connect)?
                    == 0
                {
                    return Err(GatewayError::Login("connection closed".to_owned()));
                }
            };
            if !reply.starts_with(b"+OK") {
                return Err(GatewayError::Login(
                    String::from_utf8_lossy(&reply).trim().to_owned(),
                ));
            }
        }
        Ok((stream, buf))
    }
}

/// A TLS client configuration: the public roots, or (`#insecure`) none checked, for a managed
/// Redis whose certificate comes from a private CA (Memorystore's).
fn tls_config(tls: RedisTls) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        // The ring provider supports the default versions.
        .unwrap_or_else(|_| unreachable!());
    let config = if tls == RedisTls::Unverified {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth()
    } else {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Arc::new(config)
}

/// Accepts any server certificate (still checking the handshake's signatures): what
/// `rediss://…#insecure` asks for.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The gateway in front of one platform Redis.
#[derive(Clone)]
pub struct BrokerGateway {
    target: Target,
    /// The admin's own connection, for looking users up (made again when it breaks, as when
    /// Redis restarts).
    admin: redis::Client,
    lookups: Arc<tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>>,
    connections: Arc<Mutex<HashMap<Uuid, usize>>>,
    max_connections: usize,
    recheck: Duration,
}

/// One of an environment's connections, counted while it lives.
struct Slot {
    env: Uuid,
    connections: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.env) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.env);
            }
        }
    }
}

/// How a connection ended.
enum End {
    /// The client closed it (or broke the protocol): replies still owed are of no use.
    Closed,
    /// The client said `QUIT`: its replies are written, then the connection closes.
    Quit,
}

/// What the writer of a connection's replies does next.
enum Reply {
    /// Pass the next reply from upstream on.
    Upstream,
    /// Take the next reply from upstream, and write this instead.
    Replace(Bytes),
    /// Write this (after every reply owed before it).
    Local(Bytes),
    /// Write this, then close.
    Last(Bytes),
}

/// Whether a connection is inside `MULTI`, and whether a command of it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transaction {
    None,
    Open,
    Failed,
}

const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

impl BrokerGateway {
    /// A gateway that relays to the platform Redis at `admin_url` (the agent's admin URL).
    pub async fn connect(admin_url: &SecretString) -> Result<Self, GatewayError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let target = Target::parse(admin_url)?;
        let admin = redis::Client::open(admin_url.expose_secret()).map_err(GatewayError::Admin)?;
        let lookups = admin
            .get_multiplexed_async_connection()
            .await
            .map_err(GatewayError::Admin)?;
        Ok(Self {
            target,
            admin,
            lookups: Arc::new(tokio::sync::Mutex::new(Some(lookups))),
            connections: Arc::default(),
            max_connections: MAX_CONNECTIONS_PER_USER,
            recheck: RECHECK,
        })
    }

    /// Other bounds than [`MAX_CONNECTIONS_PER_USER`] and [`RECHECK`] (tests make them small).
    pub fn with_limits(mut self, max_connections: usize, recheck: Duration) -> Self {
        self.max_connections = max_connections;
        self.recheck = recheck;
        self
    }

    /// Listens on `addr` and serves there until `shutdown`; returns the address it listens on.
    pub async fn spawn(
        self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(self.serve(listener, shutdown));
        Ok(bound)
    }

    /// Serves on `listener` until `shutdown`, one task per connection.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "broker gateway: failed to accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let gateway = self.clone();
            let stop = shutdown.child_token();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = gateway.connection(stream, peer) => {}
                }
            });
        }
    }

    /// The digest of `username`'s password, if the user exists.
    async fn digest_of(&self, username: &str) -> Result<Option<String>, redis::RedisError> {
        let hget = |mut conn: redis::aio::MultiplexedConnection| async move {
            redis::cmd("HGET")
                .arg(USERS_KEY)
                .arg(username)
                .query_async::<Option<String>>(&mut conn)
                .await
        };
        let mut slot = self.lookups.lock().await;
        if let Some(conn) = slot.clone() {
            match hget(conn).await {
                Err(e) if e.is_io_error() || e.is_connection_dropped() => *slot = None,
                answer => return answer,
            }
        }
        let conn = self.admin.get_multiplexed_async_connection().await?;
        *slot = Some(conn.clone());
        drop(slot);
        hget(conn).await
    }

    fn take_slot(&self, env: Uuid) -> Option<Slot> {
        let mut map = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(env).or_default();
        if *n >= self.max_connections {
            return None;
        }
        *n += 1;
        Some(Slot {
            env,
            connections: self.connections.clone(),
        })
    }

    async fn connection(self, mut client: TcpStream, peer: SocketAddr) {
        let mut buf = BytesMut::new();
        let Ok(Some((env, digest))) =
            tokio::time::timeout(LOGIN_TIMEOUT, self.log_in(&mut client, &mut buf, peer)).await
        else {
            return;
        };
        let Some(_slot) = self.take_slot(env) else {
            tracing::warn!(%env, "broker gateway: an environment has too many connections");
            let _ = client
                .write_all(&error_reply(&format!(
                    "ERR max number of clients reached ({} per environment)",
                    self.max_connections
                )))
                .await;
            return;
        };
        let (upstream, upstream_buf) = match self.target.connect().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "broker gateway: failed to reach the platform Redis");
                let _ = client
                    .write_all(&error_reply(
                        "ERR the broker gateway failed to reach the platform Redis",
                    ))
                    .await;
                return;
            }
        };
        if client.write_all(b"+OK\r\n").await.is_err() {
            return;
        }
        let prefix = BrokerUser::for_environment(env, SecretString::from(String::new())).key_prefix;
        self.relay(client, buf, upstream, upstream_buf, env, digest, &prefix)
            .await;
    }

    /// Reads commands until a login succeeds (its environment and password digest), the
    /// client leaves (`None`), or it sends more than a login takes (`None`). Until it logs in, a
    /// connection may only log in (or leave).
    async fn log_in(
        &self,
        client: &mut TcpStream,
        buf: &mut BytesMut,
        peer: SocketAddr,
    ) -> Option<(Uuid, String)> {
        loop {
            let frame = match take_frame(buf) {
                Ok(Some(f)) => f,
                Ok(None) if buf.len() > MAX_LOGIN_BYTES => {
                    let _ = client
                        .write_all(&error_reply("ERR too much before a login"))
                        .await;
                    return None;
                }
                Ok(None) => match client.read_buf(buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => continue,
                },
                Err(e) => {
                    let _ = client.write_all(&error_reply(&e.to_string())).await;
                    return None;
                }
            };
            let args = match command_args(&frame) {
                Ok(a) => a,
                Err(e) => {
                    let _ = client.write_all(&error_reply(&e.to_string())).await;
                    return None;
                }
            };
            let cmd = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let reply: Bytes = match (cmd.as_str(), args.len()) {
                ("QUIT", _) => {
                    let _ = client.write_all(b"+OK\r\n").await;
                    return None;
                }
                ("AUTH", 3) => match self.login(&args[1], &args[2]).await {
                    Ok(Some(user)) => return Some(user),
                    Ok(None) => {
                        tracing::info!(%peer, "broker gateway: refused a login");
                        Bytes::from_static(WRONGPASS)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "broker gateway: failed to look a user up");
                        error_reply("ERR the broker gateway failed to reach the platform Redis")
                    }
                },
                ("AUTH", 2) => Bytes::from_static(WRONGPASS),
                ("HELLO", _) => error_reply("NOPROTO the broker gateway speaks RESP2 only"),
                _ => Bytes::from_static(NOAUTH),
            };
            if client.write_all(&reply).await.is_err() {
                return None;
            }
        }
    }

    /// The environment and password digest of a login, if it is right.
    async fn login(
        &self,
        username: &[u8],
        password: &[u8],
    ) -> Result<Option<(Uuid, String)>, redis::RedisError> {
        let Some(env) = environment_of(username) else {
            return Ok(None);
        };
        let Ok(password) = std::str::from_utf8(password) else {
            return Ok(None);
        };
        let given = password_digest(&SecretString::from(password.to_owned()));
        let Some(stored) = self.digest_of(&format!("env-{}", env.simple())).await? else {
            return Ok(None);
        };
        // Both are digests of the same length: comparing them reveals nothing of the password.
        Ok((stored == given).then_some((env, stored)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        client: TcpStream,
        mut client_buf: BytesMut,
        upstream: Upstream,
        upstream_buf: BytesMut,
        env: Uuid,
        digest: String,
        prefix: &str,
    ) {
        let (mut client_r, client_w) = client.into_split();
        let (upstream_r, mut upstream_w) = tokio::io::split(upstream);
        let (tx, rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT);
        let done = CancellationToken::new();
        let writer = tokio::spawn(write_replies(
            rx,
            upstream_r,
            upstream_buf,
            client_w,
            done.clone(),
        ));
        let username = format!("env-{}", env.simple());
        let mut recheck = tokio::time::interval(self.recheck);
        recheck.reset();
        let mut transaction = Transaction::None;
        let mut refusals = 0u64;
        let end = 'read: loop {
            loop {
                let frame = match take_frame(&mut client_buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Reply::Last(error_reply(&e.to_string()))).await;
                        break 'read End::Quit;
                    }
                };
                let args = match command_args(&frame) {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = tx.send(Reply::Last(error_reply(&e.to_string()))).await;
                        break 'read End::Quit;
                    }
                };
                match rules::check(&args, prefix) {
                    Verdict::Forward { replies } => {
                        let name = args[0].to_ascii_uppercase();
                        // A transaction with a refused command fails whole, as on Redis: its
                        // EXEC discards it.
                        let (frame, reply) = match (&name[..], transaction) {
                            (b"EXEC", Transaction::Failed) => (
                                Bytes::from(resp::encode_command(&[b"DISCARD"])),
                                Reply::Replace(Bytes::from_static(EXECABORT)),
                            ),
                            _ => (frame, Reply::Upstream),
                        };
                        transaction = match (&name[..], transaction) {
                            (b"MULTI", Transaction::None) => Transaction::Open,
                            (b"EXEC" | b"DISCARD", _) => Transaction::None,
                            (_, t) => t,
                        };
                        // The writer learns of the replies before they can arrive.
                        let mut owed = vec![reply];
                        owed.extend((1..replies).map(|_| Reply::Upstream));
                        for r in owed.into_iter().take(replies) {
                            if tx.send(r).await.is_err() {
                                break 'read End::Closed;
                            }
                        }
                        if upstream_w.write_all(&frame).await.is_err() {
                            break 'read End::Closed;
                        }
                    }
                    Verdict::Answer(reply) => {
                        if tx.send(Reply::Local(reply)).await.is_err() {
                            break 'read End::Closed;
                        }
                    }
                    Verdict::Refuse(message) => {
                        // The first refusal of a connection is worth an operator's eye; more
                        // would only fill the log.
                        if refusals == 0 {
                            tracing::info!(%env, %message, "broker gateway: refused a command");
                        } else {
                            tracing::debug!(%env, %message, "broker gateway: refused a command");
                        }
                        refusals += 1;
                        if transaction == Transaction::Open {
                            transaction = Transaction::Failed;
                        }
                        if tx.send(Reply::Local(error_reply(&message))).await.is_err() {
                            break 'read End::Closed;
                        }
                    }
                    Verdict::Quit => {
                        let _ = tx.send(Reply::Last(Bytes::from_static(b"+OK\r\n"))).await;
                        break 'read End::Quit;
                    }
                }
            }
            tokio::select! {
                () = done.cancelled() => break End::Closed,
                read = client_r.read_buf(&mut client_buf) => match read {
                    Ok(0) | Err(_) => break End::Closed,
                    Ok(_) => {}
                },
                _ = recheck.tick() => match self.digest_of(&username).await {
                    Ok(Some(d)) if d == digest => {}
                    Ok(_) => {
                        tracing::info!(%env, "broker gateway: closing a connection whose user is gone");
                        break End::Closed;
                    }
                    Err(e) => tracing::warn!(error = %e, "broker gateway: failed to look a user up"),
                },
            }
        };
        drop(tx);
        match end {
            End::Closed => writer.abort(),
            End::Quit => {
                let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
            }
        }
    }
}

/// Writes a connection's replies in the order of its commands: each one from upstream as it
/// comes, each answered here when every reply owed before it is written. Subscription messages
/// (which answer no command) are passed on as they come.
async fn write_replies(
    mut rx: mpsc::Receiver<Reply>,
    mut upstream: tokio::io::ReadHalf<Upstream>,
    mut buf: BytesMut,
    mut client: tokio::net::tcp::OwnedWriteHalf,
    done: CancellationToken,
) {
    let _done = done.drop_guard();
    let mut owed: VecDeque<Reply> = VecDeque::new();
    let mut commands_open = true;
    loop {
        // Take what is already known, then answer what is answered here.
        while let Ok(r) = rx.try_recv() {
            owed.push_back(r);
        }
        while let Some(Reply::Local(_) | Reply::Last(_)) = owed.front() {
            let last = matches!(owed.front(), Some(Reply::Last(_)));
            let Some(Reply::Local(b) | Reply::Last(b)) = owed.pop_front() else {
                break;
            };
            let written = client.write_all(&b).await;
            if last {
                let _ = client.shutdown().await;
                return;
            }
            if written.is_err() {
                return;
            }
        }
        if !commands_open && owed.is_empty() {
            return;
        }
        // Whole frames already read come first.
        match take_frame(&mut buf) {
            Ok(Some(frame)) => {
                while let Ok(r) = rx.try_recv() {
                    owed.push_back(r);
                }
                let written = match owed.front() {
                    Some(Reply::Upstream) => {
                        owed.pop_front();
                        client.write_all(&frame).await
                    }
                    Some(Reply::Replace(_)) => match owed.pop_front() {
                        Some(Reply::Replace(instead)) => client.write_all(&instead).await,
                        _ => Ok(()),
                    },
                    // A subscription's message, which answers no command.
                    _ => client.write_all(&frame).await,
                };
                if written.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "broker gateway: a reply from the platform Redis broke the protocol");
                let _ = client.write_all(&error_reply(&e.to_string())).await;
                return;
            }
        }
        tokio::select! {
            r = rx.recv(), if commands_open => match r {
                Some(r) => owed.push_back(r),
                None => commands_open = false,
            },
            read = upstream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = client.write_all(&error_reply("ERR the platform Redis closed the connection")).await;
                    return;
                }
                Ok(_) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests;
