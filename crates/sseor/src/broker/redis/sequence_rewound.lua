
if redis.call('GET', KEYS[2]) == ARGV[1]
  and tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
end
