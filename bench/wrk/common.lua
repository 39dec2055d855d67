-- Shared by the bench wrk scripts: a monotonic clock, file reading, and a
-- done() that prints one machine-readable line for bench/run.js:
--   WRKJSON {"requests":N,"duration_s":S,"rps":R,"errors":{...},"latency_us":{...}}
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *ts);
int open(const char *path, int flags, ...);
int close(int fd);
void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
]]

local M = {}
local ts = ffi.new("bench_timespec")

-- Seconds on CLOCK_MONOTONIC (the clock the receiver stamps arrivals with).
function M.mono()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

function M.read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local s = f:read("*a")
  f:close()
  return s
end

function M.read_lines(path)
  local t = {}
  for line in io.lines(path) do
    if #line > 0 then t[#t + 1] = line end
  end
  return t
end

-- A read-only view of the int64 the receiver keeps at the start of path.
function M.map_counter(path)
  local fd = ffi.C.open(path, 0) -- O_RDONLY
  assert(fd >= 0, "cannot open counter file " .. tostring(path))
  local p = ffi.C.mmap(nil, 4096, 1, 1, fd, 0) -- PROT_READ, MAP_SHARED
  ffi.C.close(fd)
  assert(p ~= ffi.cast("void *", -1), "cannot map " .. path)
  local v = ffi.cast("volatile int64_t *", p)
  return function() return tonumber(v[0]) end
end

local function esc(s)
  return (tostring(s):gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

-- Call from the script's done(summary, latency, requests). extra: a table of
-- numbers/strings merged into the output line.
function M.report(summary, latency, extra)
  local e = summary.errors
  local d = summary.duration / 1e6
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_s":%.6f', d),
    string.format('"rps":%.1f', summary.requests / d),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}',
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max),
  }
  for k, v in pairs(extra or {}) do
    if type(v) == "number" then
      parts[#parts + 1] = string.format('"%s":%s', esc(k), string.format("%.6g", v))
    else
      parts[#parts + 1] = string.format('"%s":"%s"', esc(k), esc(v))
    end
  end
  io.write("WRKJSON {" .. table.concat(parts, ",") .. "}\n")
end

return M
