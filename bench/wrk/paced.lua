-- POST one body at a paced rate, optionally throttled so that the jobs sent
-- but not yet delivered (per the receiver's counter file) stay near a window.
--   wrk -t1 ... -s bench/wrk/paced.lua URL -- BODY_FILE RATE [WINDOW COUNTER_FILE [AUTHORIZATION]]
-- RATE: requests/s for all connections together (the starting and maximum
-- rate when throttled). With WINDOW > 0 the rate adapts every 100 ms: down
-- 15 % while more than WINDOW jobs are outstanding, up 5 % while fewer than
-- WINDOW/2 are: the run settles at what the whole pipeline sustains.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

local max_rate, window, delivered, auth
local next_t, last_adj
sent, rate, min_rate_seen = 0, 0, 1e9

function init(args)
  wrk.method = "POST"
  wrk.body = common.read_file(args[1])
  wrk.headers["Content-Type"] = "application/json"
  max_rate = tonumber(args[2]) or 1000
  rate = max_rate
  window = tonumber(args[3] or "0") or 0
  if window > 0 then delivered = common.map_counter(args[4]) end
  if args[5] and #args[5] > 0 then wrk.headers["Authorization"] = args[5] end
end

function delay()
  local now = common.mono()
  if window > 0 and (not last_adj or now - last_adj >= 0.1) then
    local backlog = sent - delivered()
    if backlog > window then
      rate = math.max(rate * 0.85, 50)
    elseif backlog < window / 2 then
      rate = math.min(rate * 1.05, max_rate)
    end
    if last_adj and rate < min_rate_seen then min_rate_seen = rate end
    last_adj = now
  end
  -- Slots 1/rate apart; a connection that fell behind does not build up
  -- more than 50 ms of debt.
  next_t = math.max((next_t or now) + 1 / rate, now - 0.05)
  sent = sent + 1
  local d = (next_t - now) * 1000
  return d > 0 and math.floor(d) or 0
end

function done(summary, latency, requests)
  local t = threads[1]
  common.report(summary, latency, { sent = t and t:get("sent") or 0, final_rate = t and t:get("rate") or 0 })
end
