-- TechEmpower's pipelining for wrk (`wrk -s scripts/wrk-pipeline16.lua`): each write carries 16 requests.
-- Used by bench-e2e.sh and benchmarks/UringProbe/bench.sh.
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil) end
  req = table.concat(r)
end
request = function() return req end
