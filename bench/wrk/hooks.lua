-- The delivery ceiling: POST pre-signed webhook bodies (Standard Webhooks
-- headers, the acme secret) straight to the receiver, cycling through them.
--   wrk ... -s bench/wrk/hooks.lua URL/hook/acme -- SIGNED_FILE
-- SIGNED_FILE: one request per line, "webhook-id<TAB>timestamp<TAB>signature<TAB>body".
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

local reqs, i = {}, 0
function init(args)
  for _, line in ipairs(common.read_lines(args[1])) do
    local id, ts, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["webhook-id"] = id,
      ["webhook-timestamp"] = ts,
      ["webhook-signature"] = sig,
    }, body)
  end
  assert(#reqs > 0, "no signed requests in " .. tostring(args[1]))
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

function done(summary, latency, requests)
  common.report(summary, latency)
end
