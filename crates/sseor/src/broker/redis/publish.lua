
if ARGV[6] ~= '' then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then return {earlier, -1} end
end
local max_events = math.max(tonumber(ARGV[4]), tonumber(redis.call('GET', KEYS[6]) or '0'))
local max_age = math.max(tonumber(ARGV[5]), tonumber(redis.call('GET', KEYS[7]) or '0'))
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[1], 'ms') or '0')
if ms < last then ms = last end
redis.call('HSET', KEYS[1], 'ms', string.format('%d', ms))
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local position = epoch .. '-' .. string.format('%d', ms) .. '-' .. seq
local payload = '{"id":"' .. position .. '",' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[3], string.format('%d', ms) .. '-' .. seq, 'e', payload)
-- Trim exactly, and remember the newest event trimmed, so that a client whose position
-- is older than that is told it missed events.
local trimmed = nil
local excess = redis.call('XLEN', KEYS[3]) - max_events
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', excess)
  trimmed = gone[#gone][1]
end
local oldest = ms - max_age
if oldest > 0 then
  local old = redis.call('XREVRANGE', KEYS[3], '(' .. string.format('%d', oldest) .. '-0', '-', 'COUNT', 1)
  if #old > 0 then
    local seq_of = function(id) return tonumber(string.match(id, '-(%d+)$')) end
    if trimmed == nil or seq_of(old[1][1]) > seq_of(trimmed) then trimmed = old[1][1] end
  end
end
local age = string.format('%d', max_age)
if trimmed then
  local trimmed_ms, trimmed_seq = string.match(trimmed, '^(%d+)-(%d+)$')
  redis.call('XTRIM', KEYS[3], 'MINID', trimmed_ms .. '-' .. (tonumber(trimmed_seq) + 1))
  redis.call('SET', KEYS[5], trimmed, 'PX', age)
end
redis.call('PEXPIRE', KEYS[3], age)
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[4], position, 'PX', age)
end
return {position, redis.call('PUBLISH', ARGV[2], payload)}
