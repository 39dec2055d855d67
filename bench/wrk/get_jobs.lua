-- GET /v1/jobs/{id} for ids drawn at random from a file of known ids (all
-- belonging to the customer whose key is given).
--   wrk ... -s bench/wrk/get_jobs.lua URL -- IDS_FILE [API_KEY] [RATE_PER_S]
-- RATE_PER_S > 0 paces the requests (all connections together) at that rate
-- (run with -t1: the pace is per thread).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

local ids, auth, rate, next_t = {}, nil, 0, nil
function init(args)
  ids = common.read_lines(args[1])
  assert(#ids > 0, "no ids in " .. tostring(args[1]))
  auth = "Bearer " .. (args[2] or "acme-key")
  rate = tonumber(args[3] or "0") or 0
  math.randomseed(os.time() + math.floor(common.mono() * 1e6) % 100000)
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/jobs/" .. id, { ["Authorization"] = auth })
end

function delay()
  if rate <= 0 then return 0 end
  local now = common.mono()
  next_t = math.max((next_t or now) + 1 / rate, now - 0.05)
  local d = (next_t - now) * 1000
  return d > 0 and math.floor(d) or 0
end

function done(summary, latency, requests)
  common.report(summary, latency)
end
