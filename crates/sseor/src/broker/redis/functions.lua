#!lua name=sseor

-- Numbers an event of one target, keeps it in the target's history, and publishes it, in
-- one step: positions reach every subscriber in increasing order, and every event
-- published is in the history.
--
-- KEYS[1]: the target's sequence, a hash: `e` the text DEADLINE:EPOCH (DEADLINE, 13
--          digits, the Unix ms after which the lifetimes of the target's keys are
--          extended again), and the number of its last event under the field named by
--          its epoch; also the name of its channel:
--          PREFIX:{user:ID}, PREFIX:{topic:NAME} or PREFIX:{all}
-- KEYS[2]: the target's history, KEYS[1] .. ':history', a list of the messages
--          published, oldest first
-- KEYS[3]: (optional) the key that remembers the publisher's id of the event
-- ARGV[1]: the event's JSON: {"type":"...","data":{...}}
-- ARGV[2]: the most events kept (default 1000; up to 15 more may be)
-- ARGV[3]: how long the history lasts after the last event, in ms (default 3600000)
-- ARGV[4]: (optional) the time of publishing, Unix ms (default: Redis's clock)
-- Publishes {"p":[EPOCH,SEQ,MS],"type":...} on the channel. Returns the text
-- "EPOCH-SEQ RECEIVERS", or "EPOCH-SEQ -1" (the earlier event's) for a publisher's id
-- already seen.
--
-- The work is counted in microseconds per publish. This library remembers the epoch and
-- deadline of the sequences it numbered, so that a publish makes three calls (HINCRBY,
-- RPUSH, PUBLISH). What it remembers is checked by each publish, not trusted: the number
-- is kept under the field named by the epoch, and a sequence holds no other, so a
-- remembered epoch that is not the sequence's own finds no number (the sequence was lost,
-- renewed, or changed on another node, such as a slot that moved and came back).

local DEFAULT_MAX_AGE = '3600000'

-- The texts of small numbers (the receivers of a publish, the first numbers of a
-- sequence): Lua turns a number into text with printf, slower than the rest of a step.
-- (Made with `..`: the string library is not there while the library loads.)
local small = {}
for n = -1, 1023 do
  small[n] = n .. ''
end

-- Whether `value` is absent or a whole number; the values seen valid are remembered, as
-- the retention a publisher gives rarely changes (a few dozen at most, forgotten all at
-- once beyond, so that callers that vary them cannot make the table grow).
local WHOLE_REMEMBERED_MOST = 64
local whole, whole_count = {}, 0
local function absent_or_whole(value)
  if value == nil or whole[value] then
    return true
  end
  if string.find(value, '^%d+$') then
    if whole_count >= WHOLE_REMEMBERED_MOST then
      whole, whole_count = {}, 0
    end
    whole[value], whole_count = true, whole_count + 1
    return true
  end
  return false
end

-- Redis's clock, Unix ms, as text.
local function clock_ms()
  local now = redis.call('TIME')
  return now[1] .. string.sub(string.format('%06d', now[2]), 1, 3)
end

-- An epoch a sequence never had: from the clock, in 1..2^32-1.
local function new_epoch()
  local now = redis.call('TIME')
  return string.format('%d', (tonumber(now[1]) * 1000000 + tonumber(now[2])) % 4294967295 + 1)
end

-- The epoch and the deadline in a sequence's `e`; no deadline (extend now) in the older
-- form, the epoch alone.
local function state_of(e)
  if e and string.byte(e, 14) == 58 then
    return string.sub(e, 15), string.sub(e, 1, 13)
  end
  return e, nil
end

-- What this library remembers of sequences: their epoch and deadline, by key; forgotten
-- all at once when it holds too many.
local REMEMBERED_MOST = 65536
local epochs, deadlines, remembered = {}, {}, 0

local function remember(sequence, epoch, deadline)
  if not epochs[sequence] then
    if remembered >= REMEMBERED_MOST then
      epochs, deadlines, remembered = {}, {}, 0
    end
    remembered = remembered + 1
  end
  epochs[sequence], deadlines[sequence] = epoch, deadline
end

-- Extends the lifetimes of a target's keys from `ms`: the history lasts at least max_age
-- after the last event, the sequence at least a day (or 24 times max_age) after it. The
-- next extension is due when half of max_age has passed.
local function extend(sequence, history, epoch, ms, max_age)
  local deadline = string.format('%013d', ms + math.floor(max_age / 2))
  redis.call('HSET', sequence, 'e', deadline .. ':' .. epoch)
  redis.call('PEXPIRE', history, math.floor(max_age * 3 / 2))
  redis.call('PEXPIRE', sequence, math.max(max_age * 24, 86400000) + max_age)
  remember(sequence, epoch, deadline)
end

-- Reads a sequence's epoch and deadline from Redis. A sequence without one (new, or lost)
-- gets an epoch it never had, and an empty history; one of the older form (fields `e`
-- the epoch, `s` the number, its history a stream) is turned into this one.
local function load(sequence, history)
  if redis.call('TYPE', history)['ok'] == 'stream' then
    redis.call('DEL', history)
  end
  local e = redis.call('HGET', sequence, 'e')
  local epoch, deadline = state_of(e)
  if not deadline then
    local seq = e and redis.call('HGET', sequence, 's')
    redis.call('DEL', sequence)
    if seq then
      redis.call('HSET', sequence, epoch, seq)
    else
      epoch = new_epoch()
      redis.call('DEL', history)
    end
    deadline = '0000000000000'
    redis.call('HSET', sequence, 'e', deadline .. ':' .. epoch)
  end
  remember(sequence, epoch, deadline)
  return epoch, deadline
end

-- The next number of a sequence, with its epoch and deadline.
local function next_number(sequence, history)
  local epoch = epochs[sequence]
  if epoch then
    local seq = redis.call('HINCRBY', sequence, epoch, '1')
    if seq > 1 then
      return seq, epoch, deadlines[sequence]
    end
    -- The first number of the remembered epoch: the sequence may be another one now.
    redis.call('HDEL', sequence, epoch)
  end
  local deadline
  epoch, deadline = load(sequence, history)
  return redis.call('HINCRBY', sequence, epoch, '1'), epoch, deadline
end

local NOT_AN_EVENT = 'ERR sseor: the event must be a JSON object, {"type":...}'
local NOT_NUMBERS = 'ERR sseor: the most events, the lifetime (ms) and the time (Unix ms) must be whole numbers'

local function is_event(event)
  local open, quote = string.byte(event or '', 1, 2)
  return open == 123 and quote == 34
end

-- Whether the retention and time given are whole numbers (or absent). Checked, as the
-- event is, before anything is written: a number taken and not published would be a gap.
local function numbers_given(max_events, max_age_text, ms_text)
  return absent_or_whole(max_events) and absent_or_whole(max_age_text)
    and (ms_text == nil or string.find(ms_text, '^%d+$') ~= nil)
end

-- Numbers, keeps and publishes one event; its answer "EPOCH-SEQ RECEIVERS".
local function publish_one(sequence, history, sent, event, max_events, max_age_text, ms_text, command)
  local seq, epoch, deadline = next_number(sequence, history)
  local seq_text = small[seq] or string.format('%d', seq)
  local message = '{"p":[' .. epoch .. ',' .. seq_text .. ',' .. ms_text .. '],' .. string.sub(event, 2)
  redis.call('RPUSH', history, message)
  if seq % 16 == 0 then
    local most = math.max(tonumber(max_events or '1000'), 1)
    redis.call('LTRIM', history, -most, -1)
  end
  -- Timestamps of 13 digits compare as texts.
  if #ms_text ~= 13 or ms_text >= deadline then
    extend(sequence, history, epoch, tonumber(ms_text), math.max(tonumber(max_age_text or DEFAULT_MAX_AGE), 1))
  end
  if sent then
    redis.call('SET', sent, epoch .. '-' .. seq_text, 'PX', max_age_text or DEFAULT_MAX_AGE)
  end
  local receivers = redis.call(command, sequence, message)
  return epoch .. '-' .. seq_text .. ' ' .. (small[receivers] or string.format('%d', receivers))
end

local function publish(keys, args, command)
  local sequence, history, sent = keys[1], keys[2], keys[3]
  local event, max_events, max_age_text, ms_text = args[1], args[2], args[3], args[4]
  if not is_event(event) then
    return redis.error_reply(NOT_AN_EVENT)
  end
  if not numbers_given(max_events, max_age_text, ms_text) then
    return redis.error_reply(NOT_NUMBERS)
  end
  if sent then
    local earlier = redis.call('GET', sent)
    if earlier then
      return earlier .. ' -1'
    end
  end
  return publish_one(sequence, history, sent, event, max_events, max_age_text, ms_text or clock_ms(), command)
end

-- Publishes several events, as many calls of the function above would, in one: what a
-- call costs Redis is shared.
-- KEYS: for each event, its target's sequence and history.
-- ARGV: the events' JSON, one per pair of keys, then the most events kept, how long the
--       history lasts (ms) and the time of publishing (Unix ms).
-- Returns the answers, "EPOCH-SEQ RECEIVERS", one line each, in the order of the events.
-- Nothing is written when any argument is wrong.
local function publish_batch(keys, args)
  local count = #keys / 2
  if count < 1 or #keys % 2 ~= 0 or #args ~= count + 3 then
    return redis.error_reply('ERR sseor: a batch needs two keys per event, and its events followed by three numbers')
  end
  local max_events, max_age_text, ms_text = args[count + 1], args[count + 2], args[count + 3]
  if not numbers_given(max_events, max_age_text, ms_text) then
    return redis.error_reply(NOT_NUMBERS)
  end
  for k = 1, count do
    if not is_event(args[k]) then
      return redis.error_reply(NOT_AN_EVENT)
    end
  end
  local answers = {}
  for k = 1, count do
    answers[k] = publish_one(keys[2 * k - 1], keys[2 * k], nil, args[k], max_events, max_age_text, ms_text, 'PUBLISH')
  end
  return table.concat(answers, '\n')
end

-- The messages of a history numbered ARGV[1] and later (from its oldest entry when
-- ARGV[1] is older).
-- KEYS[1]: the history.
local function history(keys, args)
  local from = tonumber(args[1])
  if not from then
    return redis.error_reply('ERR sseor: the first number wanted must be a whole number')
  end
  local oldest = redis.pcall('LINDEX', keys[1], 0)
  if type(oldest) ~= 'string' then
    return {} -- None, or a history of an older form.
  end
  -- An entry that cannot be read is returned first, for the caller to see.
  local first = tonumber(string.match(oldest, '^{"p":%[%d+,(%d+),')) or from
  return redis.call('LRANGE', keys[1], math.max(from - first, 0), -1)
end

-- Gives a sequence a new epoch when its number went back (Redis failed over, or restarted
-- from an older snapshot): ARGV[1] the epoch and ARGV[2] the number an instance saw.
-- KEYS[1]: the sequence, KEYS[2]: the history. Returns {epoch, seq} as they are now.
local function rewound(keys, args)
  local epoch = state_of(redis.call('HGET', keys[1], 'e'))
  local seq = tonumber(epoch and redis.call('HGET', keys[1], epoch) or '0') or 0
  if epoch == args[1] and seq < tonumber(args[2]) then
    epoch = new_epoch()
    seq = 0
    redis.call('DEL', keys[1], keys[2])
    redis.call('HSET', keys[1], 'e', '0000000000000:' .. epoch)
    remember(keys[1], epoch, '0000000000000')
  end
  return {tonumber(epoch or '0'), seq}
end

-- Lifecycles: which instances hold streams of a user or a topic.
-- KEYS[1]: the target's holders, a set of instance ids: PREFIX:{user:ID}:holders or
--          PREFIX:{topic:NAME}:holders
-- ARGV[1]: the instance
-- `sseor_hold` returns 1 when the instance is now the only holder (the target's first
-- stream anywhere), `sseor_release` 1 when it was the last one; else 0, also when the
-- instance already held it (or did not): so a call made again changes nothing.
local function hold(keys, args)
  if redis.call('SADD', keys[1], args[1]) == 1 and redis.call('SCARD', keys[1]) == 1 then
    return 1
  end
  return 0
end

local function release(keys, args)
  if redis.call('SREM', keys[1], args[1]) == 1 and redis.call('EXISTS', keys[1]) == 0 then
    return 1
  end
  return 0
end

-- Claims, for one caller alone, the instances whose presence expired, so that it releases
-- what they held: each is moved from the live instances to the departed ones, scored by
-- when the claim ends; a claim that ended (its claimer died too) is claimed again.
-- KEYS[1]: the live instances (scored by when their presence expires, Unix ms)
-- KEYS[2]: the departed instances (scored by when their claim ends)
-- ARGV[1]: now (Unix ms), ARGV[2]: when this claim ends, ARGV[3]: the caller, never
--          claimed. Returns the instances claimed, at most 16 a call.
local function claim_departed(keys, args)
  local claimed = {}
  for _, key in ipairs(keys) do
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. args[1], 'LIMIT', 0, 16)
    for _, instance in ipairs(due) do
      if instance ~= args[3] and #claimed < 16 then
        redis.call('ZREM', key, instance)
        redis.call('ZADD', keys[2], args[2], instance)
        claimed[#claimed + 1] = instance
      end
    end
  end
  return claimed
end

redis.register_function('sseor_publish', function(keys, args)
  return publish(keys, args, 'PUBLISH')
end)
redis.register_function('sseor_publish_sharded', function(keys, args)
  return publish(keys, args, 'SPUBLISH')
end)
redis.register_function('sseor_publish_batch', publish_batch)
redis.register_function{
  function_name = 'sseor_history',
  callback = history,
  flags = {'no-writes'},
}
redis.register_function('sseor_rewound', rewound)
redis.register_function('sseor_hold', hold)
redis.register_function('sseor_release', release)
redis.register_function('sseor_claim_departed', claim_departed)
