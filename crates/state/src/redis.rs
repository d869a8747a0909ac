//! The Redis backend: facts shared by every replica. Every operation that must be atomic is one
//! Lua script; every call has a timeout; revocations are announced on a pub/sub channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncCommands, IntoConnectionInfo, Script};
use tokio::sync::Notify;

use crate::records::RecordKind;
use crate::{ExportLimits, Reservation, ReserveOutcome, StateConfig, StateError};

/// Reserves export rows in a rolling window (a sorted set of `id:rows` scored by time). One key,
/// so that it runs on Redis Cluster too. KEYS: the principal's set. ARGV: now (ms), window (ms),
/// rows (-1: all that is left), rows per window, exports per window, a new unique id.
const RESERVE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local used = 0
for _, member in ipairs(members) do
  used = used + tonumber(string.match(member, ':(%d+)$'))
end
local left = tonumber(ARGV[4]) - used
if left < 0 then left = 0 end
local rows = tonumber(ARGV[3])
if rows < 0 then rows = left end
if #members + 1 > tonumber(ARGV[5]) or rows > left or (rows == 0 and left == 0) then
  return {0, used, #members}
end
local id = ARGV[6]
redis.call('ZADD', KEYS[1], ARGV[1], id .. ':' .. rows)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, tonumber(id), rows}
";

/// Replaces reservation ARGV[1] by ARGV[2] rows (ARGV[2] = -1: removes it). KEYS: the set.
const SETTLE: &str = r"
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  if string.match(members[i], '^(%d+):') == ARGV[1] then
    redis.call('ZREM', KEYS[1], members[i])
    if tonumber(ARGV[2]) >= 0 then
      redis.call('ZADD', KEYS[1], members[i + 1], ARGV[1] .. ':' .. ARGV[2])
    end
    return 1
  end
end
return 0
";

/// A sliding-window limit (a sorted set of hits scored by time). KEYS: the set. ARGV: now (ms),
/// window (ms), limit, record (1: count this hit when under the limit), a unique member.
/// Returns 0 when under the limit, else the milliseconds until a hit leaves the window.
const LIMIT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = tonumber(oldest[2]) + tonumber(ARGV[2]) - tonumber(ARGV[1])
  if wait < 1 then wait = 1 end
  return wait
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Adds a member to an index (a set) and keeps the set for at least ARGV[2] ms. KEYS: the set.
const INDEX_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
";

/// Takes an index whole: its members, and the set deleted. KEYS: the set.
const INDEX_TAKE: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return members
";

/// How the store reaches Redis: one server, the master Sentinel names, or a Cluster.
enum Topology {
    Single(ConnectionManager),
    Sentinel {
        sentinel: tokio::sync::Mutex<SentinelClient>,
        current: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    },
    Cluster {
        client: ClusterClient,
        current: tokio::sync::Mutex<Option<ClusterConnection>>,
    },
}

impl Topology {
    /// A connection for one call: the managed one, or (Sentinel, Cluster) the cached one, made
    /// again after a failure.
    async fn conn(&self, timeout: Duration) -> Result<Conn, StateError> {
        match self {
            Topology::Single(manager) => Ok(Conn::Single(manager.clone())),
            Topology::Sentinel { sentinel, current } => {
                let mut current = current.lock().await;
                if let Some(connection) = current.as_ref() {
                    return Ok(Conn::Multiplexed(connection.clone()));
                }
                let mut sentinel = sentinel.lock().await;
                let connection = tokio::time::timeout(timeout, sentinel.get_async_connection())
                    .await
                    .map_err(|_| unavailable("Sentinel did not name a master in time"))?
                    .map_err(unavailable)?;
                *current = Some(connection.clone());
                Ok(Conn::Multiplexed(connection))
            }
            Topology::Cluster { client, current } => {
                let mut current = current.lock().await;
                if let Some(connection) = current.as_ref() {
                    return Ok(Conn::Cluster(connection.clone()));
                }
                let connection = tokio::time::timeout(timeout, client.get_async_connection())
                    .await
                    .map_err(|_| unavailable("the cluster did not answer in time"))?
                    .map_err(unavailable)?;
                *current = Some(connection.clone());
                Ok(Conn::Cluster(connection))
            }
        }
    }

    /// Forgets a cached connection after a failure (a failover may have moved the master).
    async fn forget(&self) {
        match self {
            Topology::Single(_) => {}
            Topology::Sentinel { current, .. } => *current.lock().await = None,
            Topology::Cluster { current, .. } => *current.lock().await = None,
        }
    }
}

/// One connection of any topology, for one call.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// How often a store marked down is asked whether it answers again.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The circuit breaker: after a call fails for want of Redis (no connection, no answer in
/// time), the store is marked down and every call fails at once, instead of each waiting for
/// the timeout; a background probe (`PING`, every 250 ms) marks it up again when it answers.
#[derive(Default)]
struct Breaker {
    down: AtomicBool,
    tripped: Notify,
}

impl Breaker {
    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn trip(&self, why: &str) {
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!(error = %why, "Redis is marked down: calls that need it fail at once until it answers again");
            invoiceguard_telemetry::metrics().state_up.set(0);
            self.tripped.notify_one();
        }
    }

    /// Probes the store while it is marked down, for as long as the process runs.
    fn spawn_probe(self: &Arc<Self>, topology: Arc<Topology>, timeout: Duration) {
        let breaker = self.clone();
        tokio::spawn(async move {
            loop {
                breaker.tripped.notified().await;
                while breaker.is_down() {
                    tokio::time::sleep(PROBE_EVERY).await;
                    if ping(&topology, timeout).await.is_ok() {
                        breaker.down.store(false, Ordering::SeqCst);
                        invoiceguard_telemetry::metrics().state_up.set(1);
                        tracing::info!("Redis answers again");
                    }
                }
            }
        });
    }
}

/// One `PING`, within `timeout`.
async fn ping(topology: &Topology, timeout: Duration) -> Result<(), StateError> {
    let mut conn = topology.conn(timeout).await?;
    match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => {
            topology.forget().await;
            Err(unavailable(error))
        }
        Err(_) => {
            topology.forget().await;
            Err(unavailable("no answer to PING in time"))
        }
    }
}

/// Whether an error means Redis could not be reached (rather than refusing one command).
fn is_unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
}

/// Swaps the roles last seen for a subject (a hash: `roles`, `at`). KEYS: the subject's hash.
/// ARGV: roles, the token's issue time, seconds to keep. Returns the roles before when this call
/// changed them; nothing when they are the same, seen first, or the token is older than the last
/// one seen (its roles are not news).
const ROLES_SEEN: &str = r"
local current = redis.call('HMGET', KEYS[1], 'roles', 'at')
local at = tonumber(ARGV[2])
if current[1] == ARGV[1] then
  if (tonumber(current[2]) or 0) < at then redis.call('HSET', KEYS[1], 'at', ARGV[2]) end
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return false
end
if current[1] and (tonumber(current[2]) or 0) > at then return false end
redis.call('HSET', KEYS[1], 'roles', ARGV[1], 'at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if current[1] then return current[1] end
return false
";

/// Facts in Redis.
pub struct RedisStore {
    topology: Arc<Topology>,
    breaker: Arc<Breaker>,
    prefix: String,
    timeout: Duration,
    retention: Duration,
    changes: Arc<Notify>,
    reserve: Script,
    settle: Script,
    limit: Script,
    index_add: Script,
    index_take: Script,
    roles_seen: Script,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unavailable(error: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(error.to_string())
}

/// Where revocations are announced and, without pub/sub, how often they are read again.
const REVOCATION_POLL: Duration = Duration::from_millis(500);

impl RedisStore {
    /// Connects lazily (a Redis that is down at start only makes facts unavailable until it is
    /// up) and starts following revocations: by pub/sub on one server, by reading them every
    /// half second behind Sentinel or on a Cluster.
    pub fn open(config: &StateConfig) -> Result<Self, StateError> {
        let password = match &config.password_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| unavailable(format!("cannot read `{}`: {e}", file.display())))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let root_cert = match &config.ca_file {
            Some(file) => Some(
                std::fs::read(file)
                    .map_err(|e| unavailable(format!("cannot read `{}`: {e}", file.display())))?,
            ),
            None => None,
        };
        let settings = |url: &str| -> Result<redis::ConnectionInfo, StateError> {
            let info = url
                .into_connection_info()
                .map_err(|e| unavailable(format!("`{url}`: {e}")))?;
            let mut redis_settings = info.redis_settings().clone();
            if let Some(user) = &config.username {
                redis_settings = redis_settings.set_username(user);
            }
            if let Some(password) = &password {
                redis_settings = redis_settings.set_password(password);
            }
            Ok(info.set_redis_settings(redis_settings))
        };
        let client_for = |url: &str| -> Result<redis::Client, StateError> {
            let info = settings(url)?;
            match &root_cert {
                Some(root) => redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root.clone()),
                    },
                ),
                None => redis::Client::open(info),
            }
            .map_err(unavailable)
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut pubsub_client = None;
        let topology = if let Some(url) = &config.url {
            let client = client_for(url)?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(2));
            let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                .map_err(unavailable)?;
            pubsub_client = Some(client);
            Topology::Single(manager)
        } else if !config.sentinels.is_empty() {
            let master = config.sentinel_master.clone().unwrap_or_default();
            let node_settings = settings(&config.sentinels[0])?.redis_settings().clone();
            let node =
                SentinelNodeConnectionInfo::default().set_redis_connection_info(node_settings);
            let sentinels: Vec<&str> = config.sentinels.iter().map(String::as_str).collect();
            let sentinel =
                SentinelClient::build(sentinels, master, Some(node), SentinelServerType::Master)
                    .map_err(unavailable)?;
            Topology::Sentinel {
                sentinel: tokio::sync::Mutex::new(sentinel),
                current: tokio::sync::Mutex::new(None),
            }
        } else {
            let mut builder =
                ClusterClient::builder(config.cluster_nodes.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout);
            if let Some(user) = &config.username {
                builder = builder.username(user);
            }
            if let Some(password) = &password {
                builder = builder.password(password);
            }
            let client = builder.build().map_err(unavailable)?;
            Topology::Cluster {
                client,
                current: tokio::sync::Mutex::new(None),
            }
        };
        let topology = Arc::new(topology);
        let breaker = Arc::new(Breaker::default());
        breaker.spawn_probe(topology.clone(), timeout);
        let store = Self {
            topology,
            breaker,
            prefix: config.key_prefix.clone(),
            timeout,
            retention: Duration::from_secs(config.ownership_retention_days * 86_400),
            changes: Arc::new(Notify::new()),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            limit: Script::new(LIMIT),
            index_add: Script::new(INDEX_ADD),
            index_take: Script::new(INDEX_TAKE),
            roles_seen: Script::new(ROLES_SEEN),
        };
        match pubsub_client {
            Some(client) => store.listen_for_revocations(client),
            None => store.poll_revocations(),
        }
        Ok(store)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    /// Runs one call with the store's timeout; at once an error while the store is marked down.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, StateError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.breaker.is_down() {
            return Err(unavailable("Redis is marked down after a failed call"));
        }
        let conn = match self.topology.conn(self.timeout).await {
            Ok(conn) => conn,
            Err(error) => {
                self.breaker.trip(&error.to_string());
                return Err(error);
            }
        };
        let failure = match tokio::time::timeout(self.timeout, call(conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => {
                if is_unreachable(&error) {
                    self.breaker.trip(&error.to_string());
                }
                unavailable(error)
            }
            Err(_) => {
                let why = format!("no answer within {:?}", self.timeout);
                self.breaker.trip(&why);
                unavailable(why)
            }
        };
        self.topology.forget().await;
        Err(failure)
    }

    /// Notified when a revocation changes, here or on another replica.
    pub fn changes(&self) -> Arc<Notify> {
        self.changes.clone()
    }

    /// Subscribes to the revocation channel, reconnecting after failures, for as long as the
    /// process runs.
    fn listen_for_revocations(&self, client: redis::Client) {
        let (channel, changes) = (self.key(&["revocations"]), self.changes.clone());
        tokio::spawn(async move {
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            // Anything may have changed while we were not listening.
                            changes.notify_waiters();
                            let mut messages = pubsub.into_on_message();
                            while messages.next().await.is_some() {
                                changes.notify_waiters();
                            }
                            tracing::warn!("revocation channel closed; resubscribing");
                        }
                        Err(error) => tracing::warn!(%error, "cannot subscribe to revocations"),
                    },
                    Err(error) => tracing::debug!(%error, "revocation channel unavailable"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Without pub/sub: announces a change every half second, so every replica reads the set.
    fn poll_revocations(&self) {
        let changes = Arc::downgrade(&self.changes);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REVOCATION_POLL).await;
                match changes.upgrade() {
                    Some(changes) => changes.notify_waiters(),
                    None => return,
                }
            }
        });
    }

    /// Asks the store itself, even while it is marked down (readiness).
    pub(crate) async fn ping(&self) -> Result<(), StateError> {
        ping(&self.topology, self.timeout).await
    }

    pub(crate) async fn record_owner(
        &self,
        invoice: &str,
        creator: &str,
    ) -> Result<(), StateError> {
        let (key, retention) = (self.key(&["owner", invoice]), self.retention.as_secs());
        self.call(|mut c| async move { c.set_ex::<_, _, ()>(key, creator, retention).await })
            .await
    }

    pub(crate) async fn owner(&self, invoice: &str) -> Result<Option<String>, StateError> {
        let key = self.key(&["owner", invoice]);
        self.call(|mut c| async move { c.get(key).await }).await
    }

    pub(crate) async fn reserve_export(
        &self,
        principal: &str,
        rows: Option<u64>,
        limits: ExportLimits,
        window: Duration,
    ) -> Result<ReserveOutcome, StateError> {
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .key(self.key(&["exports", principal]))
            .arg(now_ms())
            .arg(window.as_millis() as u64)
            .arg(rows.map_or(-1, |r| i64::try_from(r).unwrap_or(i64::MAX)))
            .arg(limits.rows_per_day)
            .arg(limits.exports_per_day)
            .arg(unique_id());
        let answer: Vec<u64> = self
            .call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        match answer.as_slice() {
            [1, id, rows] => Ok(ReserveOutcome::Reserved(Reservation {
                principal: principal.to_owned(),
                id: *id,
                rows: *rows,
            })),
            [0, rows_used, exports_used] => Ok(ReserveOutcome::OverLimit {
                rows_used: *rows_used,
                exports_used: *exports_used,
            }),
            other => Err(unavailable(format!(
                "unexpected reservation answer {other:?}"
            ))),
        }
    }

    pub(crate) async fn settle_export(
        &self,
        reservation: &Reservation,
        rows: Option<u64>,
    ) -> Result<(), StateError> {
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .key(self.key(&["exports", &reservation.principal]))
            .arg(reservation.id)
            .arg(rows.map_or(-1, |r| i64::try_from(r).unwrap_or(i64::MAX)));
        self.call(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await
            .map(|_| ())
    }

    /// Writes the change, then announces it (a lost announcement is caught by the replicas'
    /// periodic reading).
    pub(crate) async fn revoke(&self, subject: &str, until_unix: u64) -> Result<(), StateError> {
        let key = self.key(&["revoked"]);
        self.call(|mut c| async move { c.hset::<_, _, _, ()>(key, subject, until_unix).await })
            .await?;
        self.announce(subject).await;
        Ok(())
    }

    pub(crate) async fn lift(&self, subject: &str) -> Result<(), StateError> {
        let key = self.key(&["revoked"]);
        self.call(|mut c| async move { c.hdel::<_, _, ()>(key, subject).await })
            .await?;
        self.announce(subject).await;
        Ok(())
    }

    async fn announce(&self, subject: &str) {
        let channel = self.key(&["revocations"]);
        if let Err(error) = self
            .call(|mut c| async move { c.publish::<_, _, ()>(channel, subject).await })
            .await
        {
            tracing::warn!(%error, "revocation not announced; replicas read it within seconds");
        }
        self.changes.notify_waiters();
    }

    pub(crate) async fn revocations(&self) -> Result<HashMap<String, u64>, StateError> {
        let key = self.key(&["revoked"]);
        self.call(|mut c| async move { c.hgetall(key).await }).await
    }

    pub(crate) async fn limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        record: bool,
    ) -> Result<Option<Duration>, StateError> {
        let now = now_ms();
        let mut invocation = self.limit.prepare_invoke();
        invocation
            .key(self.key(&["limit", key]))
            .arg(now)
            .arg(window.as_millis() as u64)
            .arg(limit)
            .arg(if record { "1" } else { "0" })
            .arg(format!("{now}-{}", unique_id()));
        let wait_ms: u64 = self
            .call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }
}

impl RedisStore {
    fn record_key(&self, kind: RecordKind, id: &str) -> String {
        self.key(&[kind.prefix(), id])
    }

    pub(crate) async fn put_record(
        &self,
        kind: RecordKind,
        id: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let key = self.record_key(kind, id);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    pub(crate) async fn get_record(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StateError> {
        let key = self.record_key(kind, id);
        self.call(|mut c| async move { c.get(key).await }).await
    }

    pub(crate) async fn take_record(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StateError> {
        let key = self.record_key(kind, id);
        self.call(|mut c| async move { c.get_del(key).await }).await
    }

    pub(crate) async fn delete_record(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<bool, StateError> {
        let key = self.record_key(kind, id);
        let deleted: u64 = self.call(|mut c| async move { c.del(key).await }).await?;
        Ok(deleted > 0)
    }

    pub(crate) async fn first_use(
        &self,
        kind: RecordKind,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let key = self.record_key(kind, id);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let set: Option<String> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg("")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    pub(crate) async fn index_add(
        &self,
        index: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let mut invocation = self.index_add.prepare_invoke();
        invocation
            .key(self.record_key(RecordKind::Index, index))
            .arg(member)
            .arg(ttl.as_millis().max(1) as u64);
        self.call(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await
            .map(|_| ())
    }

    pub(crate) async fn index_members(&self, index: &str) -> Result<Vec<String>, StateError> {
        let key = self.record_key(RecordKind::Index, index);
        self.call(|mut c| async move { c.smembers(key).await })
            .await
    }

    pub(crate) async fn index_remove(&self, index: &str, member: &str) -> Result<(), StateError> {
        let key = self.record_key(RecordKind::Index, index);
        self.call(|mut c| async move { c.srem::<_, _, ()>(key, member).await })
            .await
    }

    pub(crate) async fn index_take(&self, index: &str) -> Result<Vec<String>, StateError> {
        let mut invocation = self.index_take.prepare_invoke();
        invocation.key(self.record_key(RecordKind::Index, index));
        self.call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }
}

impl RedisStore {
    /// Writes a table's field, then announces it like a revocation.
    pub(crate) async fn table_put(
        &self,
        table: crate::Table,
        field: &str,
        value: &str,
    ) -> Result<(), StateError> {
        let key = self.key(&["table", table.name()]);
        self.call(|mut c| async move { c.hset::<_, _, _, ()>(key, field, value).await })
            .await?;
        self.announce(field).await;
        Ok(())
    }

    /// Removes a table's field: whether this call removed it (of two replicas removing the same
    /// field at once, one does).
    pub(crate) async fn table_remove(
        &self,
        table: crate::Table,
        field: &str,
    ) -> Result<bool, StateError> {
        let key = self.key(&["table", table.name()]);
        let removed: u64 = self
            .call(|mut c| async move { c.hdel(key, field).await })
            .await?;
        if removed > 0 {
            self.announce(field).await;
        }
        Ok(removed > 0)
    }

    pub(crate) async fn table_all(
        &self,
        table: crate::Table,
    ) -> Result<HashMap<String, String>, StateError> {
        let key = self.key(&["table", table.name()]);
        self.call(|mut c| async move { c.hgetall(key).await }).await
    }

    pub(crate) async fn roles_of(&self, subject: &str) -> Result<Option<String>, StateError> {
        let key = self.key(&["seen", subject]);
        self.call(|mut c| async move { c.hget(key, "roles").await })
            .await
    }

    pub(crate) async fn roles_seen(
        &self,
        subject: &str,
        roles: &str,
        at: u64,
    ) -> Result<Option<String>, StateError> {
        let mut invocation = self.roles_seen.prepare_invoke();
        invocation
            .key(self.key(&["seen", subject]))
            .arg(roles)
            .arg(at)
            .arg(self.retention.as_secs().max(1));
        self.call(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }
}

/// An id unique across replicas: time, process and a counter (below 2^53, so Lua keeps it exact).
fn unique_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let count = NEXT.fetch_add(1, Ordering::Relaxed) & 0x3ff;
    let process = u64::from(std::process::id()) & 0x3ff;
    ((now_ms() & 0x7fff_ffff) << 20 | process << 10 | count) & ((1 << 53) - 1)
}
