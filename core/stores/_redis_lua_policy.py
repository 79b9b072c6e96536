"""The eviction policy of ``RedisStore`` in Lua, step by step as ``cachemux.policies`` decides in
memory: counting requests and rescaling counts, a hit, admission, placing a newcomer (expired
entries first, then the lowest priorities) and removing an entry.

``POLICY`` is one part of the prelude every script of ``_redis_lua`` starts with: it uses that
prelude's keys, configuration ``C``, state ``st`` and helpers (``meta_get``, ``meta_put``,
``part_state``, ``unlink``, ``log``, ...), and writes no ``%`` (the prelude is %-formatted).
"""

from __future__ import annotations

POLICY = """-- FrequencyEstimator._rescale + FrequencyPolicy._rescaled: scale every count by f, forget the
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
    redis.call('ZREM', zkey(e.part), member(e.seq, e.key))
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
    redis.call('ZREM', zkey(e.part), member(e.seq, key))
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
    local clock = part_state(e.part).clock  -- with shares: the share's own clock
    e.prio = clock + f * e.cost / e.size
    e.base = clock
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
  redis.call('ZREM', zkey(e.part), member(e.seq, key))
  st.seq = st.seq + 1
  e.seq = st.seq
  meta_put(key, e)
end

-- online LEC's admission step: strictly more valuable than every entry it would evict
local function should_admit(p, key, cost, size)
  if not C.admission or p.used + size <= p.cap then return true end
  local mine = score(new_count(key), cost, size)
  local used = p.used
  local taken = 0
  local start = 0
  while true do
    local batch = redis.call('ZRANGE', zkey(p.part), start, start + 31, 'WITHSCORES')
    if #batch == 0 then return true end
    for i = 1, #batch, 2 do
      if taken > 0 and not (used + size > p.cap) then return true end
      if taken >= p.count then return true end
      taken = taken + 1
      if tonumber(batch[i + 1]) >= mine then return false end
      used = used - meta_get(string.sub(batch[i], 17)).size
    end
    start = start + 32
  end
end

-- entries of part p whose expiry passed before now leave first, oldest first, while the
-- newcomer does not fit (one sorted-set lookup per entry removed)
local function drop_expired(p, size, now, evicted)
  local xk = xkey(p.part)
  while p.used + size > p.cap do
    local x = redis.call('ZRANGEBYSCORE', xk, '-inf', '(' .. fmt(now), 'LIMIT', 0, 1)
    if #x == 0 then return end
    local e = meta_get(x[1])
    if e then
      unlink(x[1], e, p)
      st.expired = st.expired + 1
      evicted[#evicted + 1] = x[1]
    else
      redis.call('ZREM', xk, x[1])  -- (cannot happen with consistent state)
    end
  end
end

-- Policy._place: admit if wanted, evicting the lowest priorities of part p until the entry fits
-- -> admitted, evicted keys, how many of them had expired
local function place(key, cost, size, p, exp, now)
  local evicted = {}
  if size > p.cap then return false, evicted, 0 end
  if p.used + size > p.cap then drop_expired(p, size, now, evicted) end
  local expired = #evicted
  if not should_admit(p, key, cost, size) then
    save_part(p)
    return false, evicted, expired
  end
  while p.used + size > p.cap do
    local v = redis.call('ZRANGE', zkey(p.part), 0, 0, 'WITHSCORES')
    if #v == 0 then break end  -- cannot happen with consistent state (used is 0 when empty)
    local vkey = string.sub(v[1], 17)
    unlink(vkey, meta_get(vkey), p)
    if C.family == 'greedy-dual' then p.clock = tonumber(v[2]) end  -- L := H(victim)
    st.evictions = st.evictions + 1
    evicted[#evicted + 1] = vkey
  end
  st.seq = st.seq + 1
  local e = {size = size, cost = cost, seq = st.seq, ins = st.seq, base = 0.0, exp = exp, part = p.part}
  if C.family == 'recency' then
    e.n = 1.0
    e.prio = st.seq
  elseif C.family == 'greedy-dual' then
    e.n = 1.0
    e.base = p.clock
    e.prio = p.clock + 1 * cost / size
  else
    e.n = new_count(key)
    e.prio = score(e.n, cost, size)
  end
  meta_put(key, e)
  if exp then redis.call('ZADD', xkey(p.part), exp, key) end
  if C.shares then redis.call('HSET', K_KP, key, p.part) end
  for _, a in ipairs(accounts(p)) do
    a.used = a.used + size
    a.count = a.count + 1
  end
  save_part(p)
  return true, evicted, expired
end

-- Policy.remove
local function remove(key)
  local e = meta_get(key)
  if not e then return false end
  local p = part_state(e.part)
  unlink(key, e, p)
  save_part(p)
  return true
end
"""
