-- genrelay configuration (a trusted Lua file: it may read the environment).
-- Every key has a default; this file sets what `make run` needs.
--
-- With GENRELAY_SIM set (make run does it when no provider key is set), every
-- provider points at the local simulator, provsim.

local sim = os.getenv("GENRELAY_SIM")
local function base(real, path)
  if sim then return sim .. path end
  return real
end

listen     = os.getenv("GENRELAY_LISTEN") or "127.0.0.1:8080"
public_url = os.getenv("GENRELAY_PUBLIC_URL") or ("http://" .. listen)
-- "sqlite:PATH" (one instance) or a libpq URL, "postgresql://user@host:5432/db"
-- (any number of instances; docs/deploy.md). The table form adds retention:
--   store = { url = "postgresql://genrelay@db:5432/genrelay", retention_days = 30 }
-- (finished jobs, their deliveries, attempts, callbacks and events are purged
-- that many days after they finished; fractions allowed; 0 or absent: kept).
store      = os.getenv("GENRELAY_STORE") or "sqlite:genrelay.db"
scripts    = os.getenv("GENRELAY_SCRIPTS") or "scripts"
workers    = 1

-- Callback URLs carry an HMAC of the job id under the server secret. Unset,
-- genrelay generates one and keeps it in the store; set here or in
-- GENRELAY_SERVER_SECRET (this file wins), it stays out of the store. To
-- rotate: set the new one, and keep the old one as server_secret_previous
-- (or GENRELAY_SERVER_SECRET_PREVIOUS) for at least jobs.job_deadline_s, so
-- the callbacks of jobs in flight still verify. Each at least 16 bytes.
-- server_secret          = os.getenv("GENRELAY_SERVER_SECRET")
-- server_secret_previous = os.getenv("GENRELAY_SERVER_SECRET_PREVIOUS")
-- The store's files are created 0600; genrelay refuses to start on a store
-- that group or others may read or write, unless this is true.
-- store_insecure_permissions = false
-- The key of the admin surfaces (the dashboard at /ui, GET /v1/scripts,
-- /metrics, `genrelay jobs` and `genrelay deliveries`), at least 16 bytes.
-- With the simulator (make run) a demo key is set so the dashboard opens.
admin_key = os.getenv("GENRELAY_ADMIN_KEY") or (sim and "demo-admin-key-0123456789")
-- /metrics on the API listener takes `Authorization: Bearer` with the
-- admin_key or the metrics_token (which may read /metrics only: a scraper's
-- token; at least 16 bytes).
-- metrics_token = os.getenv("GENRELAY_METRICS_TOKEN")
-- An extra listener serving /metrics and /healthz without a key, and nothing
-- else: bind it to a private address only.
-- metrics_listen = "127.0.0.1:9090"
-- Logs on stderr: format "text" (default) or "json" (one object per line with
-- ts, level, msg and job_id/customer/provider/request_id when known); level
-- debug, info (default), warn or error (the older log_level is still read).
-- log = { format = "json", level = "info" }

providers = {
  fal = {
    base_url = base("https://queue.fal.run", "/fal"),
    key = os.getenv("FAL_KEY") or (sim and "sim-provider-key"),
    jwks_url = base("https://rest.alpha.fal.ai/.well-known/jwks.json", "/fal/.well-known/jwks.json"),
  },
  krea = { base_url = base("https://api.krea.ai", "/krea"), key = os.getenv("KREA_API_TOKEN") or (sim and "sim-provider-key") },
  -- queue_limit: your plan's queue (5, 10 or 15); genrelay keeps at most that
  -- many ModelsLab jobs in flight (max_inflight = N sets any provider's cap).
  -- ModelsLab and Artificial Studio call back only to an https public_url
  -- (Artificial Studio: not a private address either): without one, set
  -- callbacks = false to poll only, or jobs are refused with PROVIDER_UNAVAILABLE.
  -- provsim takes http callbacks, so the simulator setup lifts that need.
  modelslab = { base_url = base("https://modelslab.com/api/v6", "/modelslab/api/v6"),
                key = os.getenv("MODELSLAB_API_KEY") or (sim and "sim-provider-key"),
                queue_limit = 5 },
  artificialstudio = { base_url = base("https://api.artificialstudio.ai", "/artificialstudio"),
                       key = os.getenv("ARTIFICIALSTUDIO_API_KEY") or (sim and "sim-provider-key") },
  abstrakt = { base_url = base("https://api.abstrakt.one", "/abstrakt"),
               key = os.getenv("ABSTRAKT_API_KEY") or (sim and "sim-provider-key"),
               webhook_secret = os.getenv("ABSTRAKT_WEBHOOK_SECRET") or (sim and "abstrakt-sim-secret") },
  -- Any provider may take a pool of keys instead of `key` (docs/providers.md):
  --   keys = { { id = "main", key = os.getenv("FAL_KEY_MAIN"), weight = 3 },
  --            { id = "spare", key = os.getenv("FAL_KEY_SPARE") } },
  -- each job takes one by weight; a 429 cools a key down, a 401/403 retires it.
  -- Estimated costs (GET /v1/usage; budgets count them) when a provider reports none:
  --   prices = { ["fal-ai/flux/dev"] = { per_image = 0.025 } },
  -- Any provider may go through a proxy of its own (else curl's environment
  -- variables apply to provider calls): proxy = "http://egress-proxy.internal:3128",
}

if sim then
  providers.modelslab.callback_requires = false
  providers.artificialstudio.callback_requires = false
end

-- Customers can also be kept in the store, added and rotated while genrelay
-- runs: genrelay customers add NAME (docs/customers.md). Edits here take
-- effect on SIGHUP or `genrelay reload`, no restart needed.
customers = {
  demo = {
    api_key = os.getenv("GENRELAY_DEMO_KEY") or "demo-key",
    -- "whsec_" and base64 of 24 to 512 bytes (or a raw string); deliveries
    -- are always signed, a malformed secret is refused at load.
    webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    hook = "default",
    -- Token bucket over every authenticated request of the customer, per
    -- genrelay process: burst requests at once, per_s on average; past it
    -- 429 RATE_LIMITED with Retry-After. Unset: no limit.
    -- rate = { per_s = 10, burst = 20 },
    -- Spend cap per UTC month (or day, or total) over the jobs' costs (GET
    -- /v1/usage); past it runs answer 402 BUDGET_EXCEEDED. Jobs in flight
    -- finish: with N in flight the spend ends at most N jobs' cost past it.
    -- budget = { amount = 50, unit = "usd", period = "month" },
  },
}

models = {
  ["flux-dev"] = { "krea:image/bfl/flux-1-dev", "fal:fal-ai/flux/dev" },
}

jobs = {
  -- A claimed row's lease; the worker renews it every lease_s / 3 while the
  -- step runs, so a dead instance's work is picked up by the others within
  -- one lease.
  lease_s = 30,
}

webhooks = {
  retry = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 },
  timeout_s = 10,
  -- the demo receiver runs on loopback over plain HTTP
  require_https = sim == nil,
  allow_private = sim ~= nil,
  -- Deliveries ignore http_proxy / HTTPS_PROXY / ALL_PROXY; name a proxy here
  -- to send them through one (it must refuse private targets itself):
  -- proxy = "http://egress-proxy.internal:3128",
}

limits = {
  body_bytes = 1048576,           -- one request body (413 past it)
  buffered_bytes = 64 * 1048576,  -- all bodies being received at once in the process (503 past it)
  -- per_host = 64,               -- outbound requests at once per destination and worker; more wait
}
