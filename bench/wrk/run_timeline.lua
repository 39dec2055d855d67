-- run.lua plus a timeline: 2xx and non-2xx responses per 250 ms bucket,
-- printed as "buckets_2xx" / "buckets_other" (comma-separated counts).
--   wrk -t1 ... -s bench/wrk/run_timeline.lua URL -- BODY_FILE [API_KEY]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

local t0, ok, other = nil, {}, {}
non2xx, ok_s, other_s, last_b = 0, "", "", nil
function init(args)
  wrk.method = "POST"
  wrk.body = common.read_file(args[1])
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (args[2] or "acme-key")
end

function response(status, headers, body)
  local now = common.mono()
  t0 = t0 or now
  local b = math.floor((now - t0) * 4) + 1
  if status >= 200 and status < 300 then
    ok[b] = (ok[b] or 0) + 1
  else
    other[b] = (other[b] or 0) + 1
    non2xx = non2xx + 1
  end
  -- done() reads the timeline as strings (thread:get copies globals), so it
  -- is rendered when a bucket starts; the last bucket is partial anyway.
  if b ~= last_b then
    local a, c = {}, {}
    for i = 1, b do a[i] = ok[i] or 0; c[i] = other[i] or 0 end
    ok_s, other_s, last_b = table.concat(a, ","), table.concat(c, ","), b
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  common.report(summary, latency, {
    non2xx = t and t:get("non2xx") or 0,
    buckets_2xx = t and t:get("ok_s") or "",
    buckets_other = t and t:get("other_s") or "",
  })
end
