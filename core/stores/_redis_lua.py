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

Numbers: Lua numbers are doubles and Redis converts number arguments of ``redis.call`` with
%.17g, so the arithmetic below is the same IEEE arithmetic as ``cachemux.policies`` (each
expression is written in the same order) and nothing is rounded through 14-digit ``tostring``.
A script never raises after its first write (Redis does not roll scripts back).
"""

from __future__ import annotations

from cachemux.stores._policy import FORGET_BELOW, RESCALE_AT

__all__ = ["CHANGES", "CHECK", "CLEAR", "DELETE", "FORMAT", "GET", "INIT", "PUT", "STATE_FIELDS"]

FORMAT = "cachemux-redis"
STATE_FIELDS = ("clock", "used", "count", "seq", "inc", "total", "epoch", "logseq", "trimmed",
                "hits", "misses", "admissions", "rejections", "evictions", "deletes", "replaced")
TRIM_EVERY = 1000

_PRELUDE = """
local K_CFG, K_ST, K_V, K_M, K_Z, K_H, K_LOG = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local FIELDS = {%(fields)s}
local RESCALE_AT = %(rescale_at)r
local FORGET_BELOW = %(forget_below)r
local TRIM_EVERY = %(trim_every)d

local cv = redis.call('HMGET', K_CFG, 'format', 'family', 'capacity', 'hit_moves', 'use_freq',
                      'use_cost', 'history', 'admission', 'growth', 'log_size')
if cv[1] ~= '%(format)s' then
  if not cv[1] then return redis.error_reply('CACHEMUX_MISSING store configuration is missing') end
  return redis.error_reply('CACHEMUX_FOREIGN ' .. K_CFG .. ' is not a cachemux store configuration')
end
local C = {family = cv[2], capacity = tonumber(cv[3]), hit_moves = cv[4] == '1',
           use_freq = cv[5] == '1', use_cost = cv[6] == '1', history = cv[7] == '1',
           admission = cv[8] == '1', growth = tonumber(cv[9]), log_size = tonumber(cv[10])}

local st = {}
do
  local vals = redis.call('HMGET', K_ST, unpack(FIELDS))
  for i, f in ipairs(FIELDS) do
    st[f] = tonumber(vals[i])
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

local function meta_get(key)
  local s = redis.call('HGET', K_M, key)
  if not s then return nil end
  local t = {}
  for w in string.gmatch(s, '%%S+') do t[#t + 1] = tonumber(w) end
  return {size = t[1], cost = t[2], n = t[3], base = t[4], prio = t[5], seq = t[6], ins = t[7]}
end

-- write an entry's state and its place in the eviction order (the caller removed the old one)
local function meta_put(key, e)
  redis.call('HSET', K_M, key, fmt(e.size) .. ' ' .. fmt(e.cost) .. ' ' .. fmt(e.n) .. ' ' ..
             fmt(e.base) .. ' ' .. fmt(e.prio) .. ' ' .. fmt(e.seq) .. ' ' .. fmt(e.ins))
  redis.call('ZADD', K_Z, e.prio, member(e.seq, key))
end

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

-- FrequencyEstimator._rescale + FrequencyPolicy._rescaled: scale every count by f, forget the
-- negligible ones, re-rank cached keys in admission order (rare: every ~500 half-lives)
local function rescale(f)
  local h = redis.call('HGETALL', K_H)
  for i = 1, #h, 2 do
    local v = tonumber(h[i + 1]) * f
    if v > FORGET_BELOW then redis.call('HSET', K_H, h[i], v) else redis.call('HDEL', K_H, h[i]) end
  end
  st.total = st.total * f
  st.epoch = st.epoch + 1
  for _, e in ipairs(entries_by_insertion()) do
    redis.call('ZREM', K_Z, member(e.seq, e.key))
    e.n = e.n * f
    e.prio = score(e.n, e.cost, e.size)
    st.seq = st.seq + 1
    e.seq = st.seq
    meta_put(e.key, e)
  end
end

-- FrequencyEstimator.observe: one request of key; the weight grows by 2^(1/half_life)
local function observe(key)
  local inc = st.inc
  local c = (tonumber(redis.call('HGET', K_H, key)) or 0) + inc
  redis.call('HSET', K_H, key, c)
  st.total = st.total + inc
  if C.growth ~= 1 then
    local nxt = inc * C.growth
    if nxt > RESCALE_AT then
      local f = 1.0 / inc
      rescale(f)
      c = c * f
      nxt = C.growth
    end
    st.inc = nxt
  end
  return c
end

local function new_count(key)  -- FrequencyPolicy._new_count
  if not C.history then return 1.0 end
  local c = tonumber(redis.call('HGET', K_H, key)) or 0
  if c == 0 then return st.inc end
  return c
end

local function on_hit(key, e)
  if C.family == 'recency' then
    if not C.hit_moves then return end  -- FIFO
    redis.call('ZREM', K_Z, member(e.seq, key))
    st.seq = st.seq + 1
    e.seq = st.seq
    e.prio = st.seq
    meta_put(key, e)
    return
  end
  if C.family == 'greedy-dual' then
    -- GDSF._on_hit: F += 1; H = clock + F * C / S
    e.n = e.n + 1
    local f = 1
    if C.use_freq then f = e.n end
    e.prio = st.clock + f * e.cost / e.size
    e.base = st.clock
  else
    if C.history then
      local epoch = st.epoch
      local n = observe(key)
      if st.epoch ~= epoch then e = meta_get(key) end  -- the rescale re-ranked it
      e.n = n
    else
      e.n = e.n + 1.0
    end
    e.prio = score(e.n, e.cost, e.size)
  end
  redis.call('ZREM', K_Z, member(e.seq, key))
  st.seq = st.seq + 1
  e.seq = st.seq
  meta_put(key, e)
end

-- online LEC's admission step: strictly more valuable than every entry it would evict
local function should_admit(key, cost, size)
  if not C.admission or st.used + size <= C.capacity then return true end
  local mine = score(new_count(key), cost, size)
  local used = st.used
  local taken = 0
  local start = 0
  while true do
    local batch = redis.call('ZRANGE', K_Z, start, start + 31, 'WITHSCORES')
    if #batch == 0 then return true end
    for i = 1, #batch, 2 do
      if taken > 0 and not (used + size > C.capacity) then return true end
      if taken >= st.count then return true end
      taken = taken + 1
      if tonumber(batch[i + 1]) >= mine then return false end
      used = used - meta_get(string.sub(batch[i], 17)).size
    end
    start = start + 32
  end
end

-- Policy._place: admit if wanted, evicting the lowest priorities until the entry fits
local function place(key, cost, size)
  local evicted = {}
  if size > C.capacity or not should_admit(key, cost, size) then return false, evicted end
  while st.used + size > C.capacity do
    local v = redis.call('ZRANGE', K_Z, 0, 0, 'WITHSCORES')
    if #v == 0 then break end  -- cannot happen with consistent state (used is 0 when empty)
    local vkey = string.sub(v[1], 17)
    local ve = meta_get(vkey)
    redis.call('ZREM', K_Z, v[1])
    redis.call('HDEL', K_M, vkey)
    redis.call('HDEL', K_V, vkey)
    st.used = st.used - ve.size
    st.count = st.count - 1
    if st.count == 0 then st.used = 0.0 end
    if C.family == 'greedy-dual' then st.clock = tonumber(v[2]) end  -- L := H(victim)
    st.evictions = st.evictions + 1
    evicted[#evicted + 1] = vkey
    log('del', vkey)
  end
  st.seq = st.seq + 1
  local e = {size = size, cost = cost, seq = st.seq, ins = st.seq, base = 0.0}
  if C.family == 'recency' then
    e.n = 1.0
    e.prio = st.seq
  elseif C.family == 'greedy-dual' then
    e.n = 1.0
    e.base = st.clock
    e.prio = st.clock + 1 * cost / size
  else
    e.n = new_count(key)
    e.prio = score(e.n, cost, size)
  end
  meta_put(key, e)
  st.used = st.used + size
  st.count = st.count + 1
  return true, evicted
end

-- Policy.remove
local function remove(key)
  local e = meta_get(key)
  if not e then return false end
  redis.call('ZREM', K_Z, member(e.seq, key))
  redis.call('HDEL', K_M, key)
  redis.call('HDEL', K_V, key)
  st.count = st.count - 1
  if st.count > 0 then st.used = st.used - e.size else st.used = 0.0 end
  log('del', key)
  return true
end
""" % {"fields": ", ".join(f"'{f}'" for f in STATE_FIELDS), "rescale_at": RESCALE_AT,
       "forget_below": FORGET_BELOW, "trim_every": TRIM_EVERY, "format": FORMAT}

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

# ARGV: key, value, cost, size -> {admitted 0/1, evicted keys...}
PUT = _PRELUDE + """
local key, value, cost, size = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if remove(key) then st.replaced = st.replaced + 1 end  -- re-offering a cached key replaces it
local admitted, evicted = place(key, cost, size)
local out = {0}
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

# a consistent snapshot of everything check_invariants looks at
CHECK = _PRELUDE + """
local z = redis.call('ZRANGE', K_Z, 0, -1, 'WITHSCORES')
local h = {}
if C.history then h = redis.call('HGETALL', K_H) end
return {redis.call('HGETALL', K_ST), redis.call('HGETALL', K_M), z,
        redis.call('HGETALL', K_V), h}
"""

# ARGV: field, value, ... of the configuration; start of the change ids.
# Creates the store if absent; returns the stored configuration either way.
INIT = """
local K_CFG, K_ST = KEYS[1], KEYS[2]
if redis.call('EXISTS', K_CFG) == 1 then return redis.call('HGETALL', K_CFG) end
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]) > 0 then
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
