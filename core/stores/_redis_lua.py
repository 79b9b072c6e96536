"""The Lua scripts of ``RedisStore``: every operation is one script, so Redis runs it atomically.

KEYS (all under one ``{namespace}`` hash tag, so the scripts also run on Redis Cluster):
  1 cfg  hash   format, version, policy parameters, capacity, log size
  2 st   hash   clock, used, count, seq, inc, total, epoch, logseq, trimmed, counters
  3 v    hash   key -> Entry.to_json() text
  4 m    hash   key -> "size cost n base prio seq ins" (%.17g: doubles round-trip exactly)
  5 z    zset   member = %016x(seq) .. key, score = priority: the eviction order. Equal scores
                sort by member, i.e. by seq: the entry whose priority was set first goes first,
                as in ``LazyHeap``.
  6 h    hash   key -> request count of every key seen (LEC / LFU with history)
  7 log  stream change log, ids 0-<logseq>, fields op, k
  8 x    zset   key -> Entry.expires, for the entries that have one: a full store removes those
                whose time passed (oldest first) before any policy victim
  9 p    hash   with shares only: part -> "used count clock" of each capacity share
 10 kp   hash   with shares only: key -> its part ("=" + namespace, or "*" for the rest)

With ``shares`` (configuration field ``shares``, JSON; ``cap:<part>`` the capacity of each part)
the eviction order and the expiry order are kept per part, in ``z:<part>`` and ``x:<part>``
(the same hash tag, so still one slot), and a newcomer evicts only within its part, as
``DiskStore(shares=...)`` does; the request history stays store-wide.

Numbers: Lua numbers are doubles and Redis converts number arguments of ``redis.call`` with
%.17g, so the arithmetic below and in ``_redis_lua_policy`` is the same IEEE arithmetic as
``cachemux.policies`` (each expression is written in the same order) and nothing is rounded
through 14-digit ``tostring``.
A script never raises after its first write (Redis does not roll scripts back).

Every script but ``INIT`` starts with ``_PRELUDE``: the keys, configuration, state, entry
state, shares and change log here, then the policy's steps (``_redis_lua_policy.POLICY``).
"""

from __future__ import annotations

from cachemux.estimators.frequency import FORGET_BELOW, RESCALE_AT
from cachemux.stores._redis_lua_policy import POLICY

__all__ = ["CHANGES", "CHECK", "CLEAR", "DELETE", "FORMAT", "GET", "INIT", "PUT", "STATE_FIELDS"]

FORMAT = "cachemux-redis"
STATE_FIELDS = ("clock", "used", "count", "seq", "inc", "total", "epoch", "logseq", "trimmed",
                "hits", "misses", "admissions", "rejections", "evictions", "deletes", "replaced", "expired")
OPTIONAL_FIELDS = ("expired",)  # absent in namespaces made before them: read as 0
TRIM_EVERY = 1000

_PRELUDE = ("""
local K_CFG, K_ST, K_V, K_M, K_Z, K_H, K_LOG = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local K_X, K_P, K_KP = KEYS[8], KEYS[9], KEYS[10]
local FIELDS = {%(fields)s}
local OPTIONAL = {%(optional)s}
local RESCALE_AT = %(rescale_at)r
local FORGET_BELOW = %(forget_below)r
local TRIM_EVERY = %(trim_every)d

local cv = redis.call('HMGET', K_CFG, 'format', 'family', 'capacity', 'hit_moves', 'use_freq',
                      'use_cost', 'history', 'admission', 'growth', 'log_size', 'shares')
if cv[1] ~= '%(format)s' then
  if not cv[1] then return redis.error_reply('CACHEMUX_MISSING store configuration is missing') end
  return redis.error_reply('CACHEMUX_FOREIGN ' .. K_CFG .. ' is not a cachemux store configuration')
end
local C = {family = cv[2], capacity = tonumber(cv[3]), hit_moves = cv[4] == '1',
           use_freq = cv[5] == '1', use_cost = cv[6] == '1', history = cv[7] == '1',
           admission = cv[8] == '1', growth = tonumber(cv[9]), log_size = tonumber(cv[10]),
           shares = cv[11] ~= false and cv[11] ~= ''}

local st = {}
do
  local vals = redis.call('HMGET', K_ST, unpack(FIELDS))
  for i, f in ipairs(FIELDS) do
    st[f] = tonumber(vals[i])
    if st[f] == nil and OPTIONAL[f] then st[f] = 0 end
    if st[f] == nil then return redis.error_reply('CACHEMUX_DAMAGED state field ' .. f .. ' is missing') end
  end
end

local function save_state()
  local args = {}
  for _, f in ipairs(FIELDS) do args[#args + 1] = f; args[#args + 1] = st[f] end
  redis.call('HSET', K_ST, unpack(args))
end

local function fmt(x) return string.format('%%.17g', x) end
local function member(seq, key) return string.format('%%016x', seq) .. key end

-- the eviction order and the expiry order of a part (without shares: the store's)
local function zkey(part) if C.shares then return K_Z .. ':' .. part end return K_Z end
local function xkey(part) if C.shares then return K_X .. ':' .. part end return K_X end

-- state "size cost n base prio seq ins [expires]" (.part: with shares, its part)
local function meta_get(key)
  local s = redis.call('HGET', K_M, key)
  if not s then return nil end
  local t = {}
  for w in string.gmatch(s, '%%S+') do t[#t + 1] = tonumber(w) end
  local part = '*'
  if C.shares then part = redis.call('HGET', K_KP, key) or '*' end
  return {size = t[1], cost = t[2], n = t[3], base = t[4], prio = t[5], seq = t[6], ins = t[7],
          exp = t[8], part = part}
end

-- write an entry's state and its place in the eviction order (the caller removed the old one)
local function meta_put(key, e)
  local s = fmt(e.size) .. ' ' .. fmt(e.cost) .. ' ' .. fmt(e.n) .. ' ' .. fmt(e.base) .. ' ' ..
            fmt(e.prio) .. ' ' .. fmt(e.seq) .. ' ' .. fmt(e.ins)
  if e.exp then s = s .. ' ' .. fmt(e.exp) end
  redis.call('HSET', K_M, key, s)
  redis.call('ZADD', zkey(e.part), e.prio, member(e.seq, key))
end

-- the used size, count, clock and capacity eviction works within: the store's own (st) without
-- shares, else those of the part (saved by save_part); nil for a part the configuration lacks
local function part_state(part)
  if not C.shares then
    st.cap, st.part = C.capacity, '*'
    return st
  end
  local cap = tonumber(redis.call('HGET', K_CFG, 'cap:' .. part))
  if not cap then return nil end
  local p = {part = part, cap = cap, used = 0.0, count = 0, clock = 0.0}
  local s = redis.call('HGET', K_P, part)
  if s then
    local t = {}
    for w in string.gmatch(s, '%%S+') do t[#t + 1] = tonumber(w) end
    p.used, p.count, p.clock = t[1], t[2], t[3]
  end
  return p
end

local function save_part(p)
  if p ~= st then redis.call('HSET', K_P, p.part, fmt(p.used) .. ' ' .. fmt(p.count) .. ' ' .. fmt(p.clock)) end
end

local function accounts(p) if p == st then return {st} end return {st, p} end

local function score(n, cost, size)  -- FrequencyPolicy._score
  if C.use_cost then return n * cost / size end
  return n / size
end

local function log(op, key)
  st.logseq = st.logseq + 1
  redis.call('XADD', K_LOG, '0-' .. string.format('%%d', st.logseq), 'op', op, 'k', key)
  if st.logseq - st.trimmed >= C.log_size + TRIM_EVERY then
    st.trimmed = st.logseq - C.log_size
    redis.call('XTRIM', K_LOG, 'MAXLEN', C.log_size)  -- ids are contiguous: exact cut
  end
end

-- drop a cached entry (value, state, orders) and its size from the accounts of its part p
local function unlink(key, e, p)
  redis.call('ZREM', zkey(e.part), member(e.seq, key))
  redis.call('HDEL', K_M, key)
  redis.call('HDEL', K_V, key)
  if e.exp then redis.call('ZREM', xkey(e.part), key) end
  if C.shares then redis.call('HDEL', K_KP, key) end
  for _, a in ipairs(accounts(p)) do
    a.count = a.count - 1
    if a.count > 0 then a.used = a.used - e.size else a.used = 0.0 end
  end
  log('del', key)
end

-- every cached entry's state (with .key), oldest admission first
local function entries_by_insertion()
  local m = redis.call('HGETALL', K_M)
  local items = {}
  for i = 1, #m, 2 do
    local e = meta_get(m[i]); e.key = m[i]; items[#items + 1] = e
  end
  table.sort(items, function(a, b) return a.ins < b.ins end)
  return items
end

""" + POLICY) % {"fields": ", ".join(f"'{f}'" for f in STATE_FIELDS), "rescale_at": RESCALE_AT,
                 "forget_below": FORGET_BELOW, "trim_every": TRIM_EVERY, "format": FORMAT,
                 "optional": ", ".join(f"{f} = true" for f in OPTIONAL_FIELDS)}

# ARGV: key -> {1, value} on a hit, {0} on a miss
GET = _PRELUDE + """
local key = ARGV[1]
local e = meta_get(key)
if not e then
  st.misses = st.misses + 1
  if C.history then observe(key) end  -- LEC counts misses of uncached keys too
  save_state()
  return {0}
end
local value = redis.call('HGET', K_V, key)
if not value then return redis.error_reply('CACHEMUX_DAMAGED entry has state but no value') end
st.hits = st.hits + 1
on_hit(key, e)
save_state()
return {1, value}
"""

# ARGV: key, value, cost, size, part, expires ('' = never), now
#   -> {admitted 0/1, how many evicted had expired, evicted keys...}
PUT = _PRELUDE + """
local key, value, cost, size = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local part, exp, now = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
if not part_state(part) then return redis.error_reply('CACHEMUX_CONFIG no capacity share ' .. part) end
if remove(key) then st.replaced = st.replaced + 1 end  -- re-offering a cached key replaces it
local admitted, evicted, expired = place(key, cost, size, part_state(part), exp, now)
local out = {0, expired}
if admitted then
  redis.call('HSET', K_V, key, value)
  st.admissions = st.admissions + 1
  log('add', key)
  out[1] = 1
else
  st.rejections = st.rejections + 1
end
for _, k in ipairs(evicted) do out[#out + 1] = k end
save_state()
return out
"""

# ARGV: key -> 1 if it was cached
DELETE = _PRELUDE + """
if remove(ARGV[1]) then
  st.deletes = st.deletes + 1
  save_state()
  return 1
end
return 0
"""

# remove every entry; the clock and the request history stay (as MemoryStore.clear)
CLEAR = _PRELUDE + """
local items = entries_by_insertion()
for _, e in ipairs(items) do
  remove(e.key)
  st.deletes = st.deletes + 1
end
save_state()
return #items
"""

# ARGV: since -> {head, 'reset'} or {head, op, key, op, key, ...}
CHANGES = _PRELUDE + """
local since = tonumber(ARGV[1])
local head = string.format('%d', st.logseq)
if since < st.trimmed or since > st.logseq then return {head, 'reset'} end
local out = {head}
if since == st.logseq then return out end
local rows = redis.call('XRANGE', K_LOG, '0-' .. string.format('%d', since + 1), '+')
for _, r in ipairs(rows) do
  local f = r[2]
  local op, k
  for i = 1, #f, 2 do
    if f[i] == 'op' then op = f[i + 1] elseif f[i] == 'k' then k = f[i + 1] end
  end
  out[#out + 1] = op
  out[#out + 1] = k
end
return out
"""

# a consistent snapshot of everything check_invariants looks at; ARGV: the parts (with shares)
CHECK = _PRELUDE + """
local z, x = {}, {}
local parts = {'*'}
if C.shares then parts = ARGV end
for i, part in ipairs(parts) do  -- per part: its eviction order and its expiry order
  z[i] = redis.call('ZRANGE', zkey(part), 0, -1, 'WITHSCORES')
  x[i] = redis.call('ZRANGE', xkey(part), 0, -1, 'WITHSCORES')
end
local h = {}
if C.history then h = redis.call('HGETALL', K_H) end
return {redis.call('HGETALL', K_ST), redis.call('HGETALL', K_M), z,
        redis.call('HGETALL', K_V), h, x, redis.call('HGETALL', K_P), redis.call('HGETALL', K_KP)}
"""

# ARGV: field, value, ... of the configuration; start of the change ids.
# Creates the store if absent; returns the stored configuration either way.
INIT = """
local K_CFG, K_ST = KEYS[1], KEYS[2]
if redis.call('EXISTS', K_CFG) == 1 then return redis.call('HGETALL', K_CFG) end
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]) > 0 then
  return redis.error_reply('CACHEMUX_FOREIGN keys of this namespace exist without a cachemux configuration')
end
local start = ARGV[1]
local cfg = {}
for i = 2, #ARGV do cfg[#cfg + 1] = ARGV[i] end
redis.call('HSET', K_CFG, unpack(cfg))
local st = {}
for _, f in ipairs({%(fields)s}) do st[#st + 1] = f; st[#st + 1] = '0' end
redis.call('HSET', K_ST, unpack(st))
redis.call('HSET', K_ST, 'inc', '1', 'logseq', start, 'trimmed', start)
return redis.call('HGETALL', K_CFG)
""" % {"fields": ", ".join(f"'{f}'" for f in STATE_FIELDS)}
