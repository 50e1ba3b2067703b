
local ms = redis.call('HGET', KEYS[1], 'ms')
if not ms then
  local now = redis.call('TIME')
  ms = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
  redis.call('HSET', KEYS[1], 'ms', ms)
end
return {epoch, ms, redis.call('HGET', KEYS[1], 'seq') or '0'}
