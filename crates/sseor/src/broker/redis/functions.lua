#!lua name=sseor

-- Numbers an event of one target, keeps it in the target's history, and publishes it, in
-- one step: positions reach every subscriber in increasing order, and every event
-- published is in the history.
--
-- KEYS[1]: the target's sequence, a hash of its epoch `e`, number `s` and the time `t`
--          its keys' lifetimes were last extended (and the name of its channel):
--          PREFIX:{user:ID}, PREFIX:{topic:NAME} or PREFIX:{all}
-- KEYS[2]: the target's history stream, KEYS[1] .. ':history', entries SEQ-MS
-- KEYS[3]: (optional) the key that remembers the publisher's id of the event
-- ARGV[1]: the event's JSON: {"type":"...","data":{...}}
-- ARGV[2]: the most events kept (default 1000)
-- ARGV[3]: how long the history lasts after the last event, in ms (default 3600000)
-- ARGV[4]: (optional) the time of publishing, Unix ms (default: Redis's clock)
-- Returns {epoch, seq, receivers}, or the earlier event's {epoch, seq, -1} for a
-- publisher's id already seen.
local function publish(keys, args, command)
  local sequence, history, sent = keys[1], keys[2], keys[3]
  local event = args[1]
  if type(event) ~= 'string' or string.sub(event, 1, 2) ~= '{"' then
    return redis.error_reply('ERR sseor: the event must be a JSON object, {"type":...}')
  end
  if sent then
    local earlier = redis.call('GET', sent)
    if earlier then
      local epoch, seq = string.match(earlier, '^(%d+):(%d+)$')
      return {tonumber(epoch), tonumber(seq), -1}
    end
  end
  local max_events = args[2] or '1000'
  local max_age = tonumber(args[3]) or 3600000
  -- Numbers go into the entry's id and the message as the texts they came as: turning a
  -- Lua number into text costs more than the rest of a publish.
  local ms_text = args[4]
  if not ms_text then
    local now = redis.call('TIME')
    ms_text = now[1] .. string.sub(string.format('%06d', now[2]), 1, 3)
  end
  local ms = tonumber(ms_text)
  local state = redis.call('HMGET', sequence, 'e', 't')
  local epoch_text, extended = state[1], tonumber(state[2])
  local seq
  if epoch_text then
    seq = redis.call('HINCRBY', sequence, 's', 1)
  else
    -- A new sequence (or one whose epoch was lost): an epoch it never had, from the clock.
    local now = redis.call('TIME')
    epoch_text = string.format('%d', (tonumber(now[1]) * 1000000 + tonumber(now[2])) % 4294967295 + 1)
    seq = 1
    extended = nil
    redis.call('HSET', sequence, 'e', epoch_text, 's', seq)
    redis.call('DEL', history)
  end
  local seq_text = string.format('%d', seq)
  redis.call('XADD', history, 'MAXLEN', '~', max_events, seq_text .. '-' .. ms_text, 'e', event)
  -- Lifetimes are extended when half of max_age passed since they last were, by half
  -- more than that: the history lasts at least max_age after the last event, the
  -- sequence at least a day (or 24 times max_age) after it.
  if not extended or ms - extended >= max_age / 2 or ms < extended then
    redis.call('HSET', sequence, 't', ms_text)
    redis.call('PEXPIRE', history, math.floor(max_age * 3 / 2))
    redis.call('PEXPIRE', sequence, math.max(max_age * 24, 86400000) + max_age)
  end
  if sent then
    redis.call('SET', sent, epoch_text .. ':' .. seq_text, 'PX', max_age)
  end
  local payload = '{"p":[' .. epoch_text .. ',' .. seq_text .. ',' .. ms_text .. '],' .. string.sub(event, 2)
  return {tonumber(epoch_text), seq, redis.call(command, sequence, payload)}
end

local function rewound(keys, args)
  local epoch = redis.call('HGET', keys[1], 'e')
  local seq = tonumber(redis.call('HGET', keys[1], 's') or '0')
  if epoch == args[1] and seq < tonumber(args[2]) then
    local now = redis.call('TIME')
    epoch = tostring((tonumber(now[1]) * 1000000 + tonumber(now[2])) % 4294967295 + 1)
    seq = 0
    redis.call('HSET', keys[1], 'e', epoch, 's', seq)
    redis.call('DEL', keys[2])
  end
  return {tonumber(epoch or '0'), seq}
end

redis.register_function('sseor_publish', function(keys, args)
  return publish(keys, args, 'PUBLISH')
end)
redis.register_function('sseor_publish_sharded', function(keys, args)
  return publish(keys, args, 'SPUBLISH')
end)
redis.register_function('sseor_rewound', rewound)
