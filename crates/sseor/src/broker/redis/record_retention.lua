
local kept = {}
for i = 1, 2 do
  local recorded = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tonumber(ARGV[i]) >= recorded then
    redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[3])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
