-- POST a realistic run request (about 200 bytes of input, webhook_url,
-- track_id) as fast as the connections allow.
--   wrk ... -s bench/wrk/run.lua URL/v1/models/fal-ai/flux/dev/run -- BODY_FILE [API_KEY]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

function init(args)
  wrk.method = "POST"
  wrk.body = common.read_file(args[1])
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (args[2] or "acme-key")
end

function done(summary, latency, requests)
  common.report(summary, latency)
end
