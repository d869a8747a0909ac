//! The Redis backend: facts shared by every replica. Every operation that must be atomic is one
//! Lua script; every call has a timeout; revocations are announced on a pub/sub channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo, Script};
use tokio::sync::Notify;

use crate::{ExportLimits, Reservation, ReserveOutcome, StateConfig, StateError};

/// Reserves export rows in a rolling window (a sorted set of `id:rows` scored by time).
/// KEYS: the principal's set, the id sequence. ARGV: now (ms), window (ms), rows (-1: all that
/// is left), rows per window, exports per window.
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
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[1], id .. ':' .. rows)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, id, rows}
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

/// Facts in Redis.
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    retention: Duration,
    changes: Arc<Notify>,
    reserve: Script,
    settle: Script,
    limit: Script,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisStore {
    /// Connects lazily (a Redis that is down at start only makes facts unavailable until it is
    /// up) and starts listening for revocations.
    pub fn open(config: &StateConfig) -> Result<Self, StateError> {
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| StateError::Unavailable("no `state.url`".to_owned()))?;
        let mut info = url
            .into_connection_info()
            .map_err(|e| StateError::Unavailable(format!("state.url: {e}")))?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &config.username {
            settings = settings.set_username(user);
        }
        if let Some(file) = &config.password_file {
            let password = std::fs::read_to_string(file).map_err(|e| {
                StateError::Unavailable(format!("cannot read `{}`: {e}", file.display()))
            })?;
            settings = settings.set_password(password.trim());
        }
        info = info.set_redis_settings(settings);
        let client =
            redis::Client::open(info).map_err(|e| StateError::Unavailable(e.to_string()))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| StateError::Unavailable(e.to_string()))?;
        let store = Self {
            client,
            connection,
            prefix: config.key_prefix.clone(),
            timeout,
            retention: Duration::from_secs(config.ownership_retention_days * 86_400),
            changes: Arc::new(Notify::new()),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            limit: Script::new(LIMIT),
        };
        store.listen_for_revocations();
        Ok(store)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    /// Runs one call with the store's timeout.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StateError::Unavailable(error.to_string())),
            Err(_) => Err(StateError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Notified when a revocation changes, here or on another replica.
    pub fn changes(&self) -> Arc<Notify> {
        self.changes.clone()
    }

    /// Subscribes to the revocation channel, reconnecting after failures, for as long as the
    /// process runs.
    fn listen_for_revocations(&self) {
        let (client, channel, changes) = (
            self.client.clone(),
            self.key(&["revocations"]),
            self.changes.clone(),
        );
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

    pub(crate) async fn ping(&self) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        self.call(redis::cmd("PING").query_async::<String>(&mut connection))
            .await
            .map(|_| ())
    }

    pub(crate) async fn record_owner(
        &self,
        invoice: &str,
        creator: &str,
    ) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let key = self.key(&["owner", invoice]);
        self.call(connection.set_ex::<_, _, ()>(key, creator, self.retention.as_secs()))
            .await
    }

    pub(crate) async fn owner(&self, invoice: &str) -> Result<Option<String>, StateError> {
        let mut connection = self.connection.clone();
        self.call(connection.get(self.key(&["owner", invoice])))
            .await
    }

    pub(crate) async fn reserve_export(
        &self,
        principal: &str,
        rows: Option<u64>,
        limits: ExportLimits,
        window: Duration,
    ) -> Result<ReserveOutcome, StateError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .key(self.key(&["exports", principal]))
            .key(self.key(&["export-seq"]))
            .arg(now_ms())
            .arg(window.as_millis() as u64)
            .arg(rows.map_or(-1, |r| i64::try_from(r).unwrap_or(i64::MAX)))
            .arg(limits.rows_per_day)
            .arg(limits.exports_per_day);
        let answer: Vec<u64> = self.call(invocation.invoke_async(&mut connection)).await?;
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
            other => Err(StateError::Unavailable(format!(
                "unexpected reservation answer {other:?}"
            ))),
        }
    }

    pub(crate) async fn settle_export(
        &self,
        reservation: &Reservation,
        rows: Option<u64>,
    ) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .key(self.key(&["exports", &reservation.principal]))
            .arg(reservation.id)
            .arg(rows.map_or(-1, |r| i64::try_from(r).unwrap_or(i64::MAX)));
        self.call(invocation.invoke_async::<i64>(&mut connection))
            .await
            .map(|_| ())
    }

    pub(crate) async fn revoke(&self, subject: &str, until_unix: u64) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.key(&["revoked"]), subject, until_unix)
            .ignore()
            .publish(self.key(&["revocations"]), subject)
            .ignore();
        self.call(pipe.query_async::<()>(&mut connection)).await
    }

    pub(crate) async fn lift(&self, subject: &str) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.key(&["revoked"]), subject)
            .ignore()
            .publish(self.key(&["revocations"]), subject)
            .ignore();
        self.call(pipe.query_async::<()>(&mut connection)).await
    }

    pub(crate) async fn revocations(&self) -> Result<HashMap<String, u64>, StateError> {
        let mut connection = self.connection.clone();
        self.call(connection.hgetall(self.key(&["revoked"]))).await
    }

    pub(crate) async fn limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        record: bool,
    ) -> Result<Option<Duration>, StateError> {
        let mut connection = self.connection.clone();
        let now = now_ms();
        let mut invocation = self.limit.prepare_invoke();
        invocation
            .key(self.key(&["limit", key]))
            .arg(now)
            .arg(window.as_millis() as u64)
            .arg(limit)
            .arg(if record { "1" } else { "0" })
            .arg(format!("{now}-{}", rand_suffix()));
        let wait_ms: u64 = self.call(invocation.invoke_async(&mut connection)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }
}

/// A per-process counter making sliding-window members unique within one millisecond.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ u64::from(std::process::id()) << 32
}
